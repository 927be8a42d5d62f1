"""The one reader and writer of the workflow's TSV tables, so every table has the same text form.

Contract of every TSV this workflow writes: tab-separated, a header row, no index column, ``\\n`` line ends,
floats with FLOAT_FORMAT (10 significant digits: deterministic, and no precision a downstream rank or test
could notice), missing values as ``NaN``. Readers get id columns (ID_COLUMNS) as text, so barcodes such as
``TCGA-A1-0001`` or numeric-looking local ids are never parsed as numbers, and a missing required column is
an error that names the file. The format owners (slides.qc, learning.labels, learning.splits, ...) build on
these two functions and add their own column checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from workflow_scripts.common.atomic import atomic_path

FLOAT_FORMAT = "%.10g"
NA_REP = "NaN"
ID_COLUMNS = ("patient_id", "slide_id", "sample_id", "file_id", "file_name", "trait")


def read_table(path: str | os.PathLike, required: Iterable[str] = (), text: Iterable[str] = ()) -> pd.DataFrame:
    """Read a TSV with id columns (and `text` columns) as strings; fail naming the file when a column is missing."""
    as_text = dict.fromkeys((*ID_COLUMNS, *text), str)  # pandas ignores the columns a file does not have
    return _require(pd.read_csv(path, sep="\t", dtype=as_text), required, path)


def read_text_table(path: str | os.PathLike, required: Iterable[str] = ()) -> pd.DataFrame:
    """Read a TSV with every cell as text and empty cells as '' (for tables whose owners parse each column)."""
    return _require(pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False), required, path)


def _require(frame: pd.DataFrame, required: Iterable[str], path: str | os.PathLike) -> pd.DataFrame:
    """The frame, or an error naming the file and the required columns it lacks."""
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (has {list(frame.columns)})")
    return frame


def write_tsv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table atomically in the one TSV form (see the module docstring), so reruns are byte-identical."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, sep="\t", index=False, float_format=FLOAT_FORMAT, na_rep=NA_REP, lineterminator="\n")
