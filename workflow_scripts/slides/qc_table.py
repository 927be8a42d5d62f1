"""The slide QC table: the one owner of qc/slides/{slide_id}.tsv (one row) and qc/slides.tsv (the cohort).

Contract (columns QC_COLUMNS, in this order, one row per slide, sorted by slide_id in qc/slides.tsv):
- ``slide_id``, ``patient_id``: text ids, as in the slide table.
- ``status``: exactly ``pass`` or ``fail``; any other value is an error when the table is read.
- ``reason``: why a slide failed ('' when it passed; ``excluded by config`` for slides.exclude entries).
- ``mpp``, ``objective_power``, ``width``, ``height``: the slide's resolution (um/px at level 0), objective and
  level-0 size; empty when the slide could not be opened.
- ``tissue_fraction``, ``pen_fraction``, ``blur_fraction``: fractions of the thumbnail that is tissue, of tissue
  tiles dropped for pen ink, and of tissue tiles dropped as out of focus.
- ``n_tiles``: tiles written to the slide's tile store (0 for a failed slide).

Every stage downstream of tiling decides "passed QC" through `passed_slides`, so that decision exists once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from workflow_scripts.common.tables import read_text_table, write_tsv

QC_COLUMNS = (
    "slide_id",
    "patient_id",
    "status",
    "reason",
    "mpp",
    "objective_power",
    "width",
    "height",
    "tissue_fraction",
    "pen_fraction",
    "blur_fraction",
    "n_tiles",
)
STATUSES = ("pass", "fail")
NUMERIC_COLUMNS = ("mpp", "objective_power", "width", "height", "tissue_fraction", "pen_fraction", "blur_fraction")
EXCLUDED_REASON = "excluded by config"


def write_qc_row(path: str | os.PathLike, row: Mapping[str, object]) -> Path:
    """Write one slide's QC row (a one-row qc/slides/{slide_id}.tsv); missing values are left empty."""
    values = {column: _cell(row.get(column)) for column in QC_COLUMNS}
    write_tsv(pd.DataFrame([values], columns=list(QC_COLUMNS)), path)
    return Path(path)


def _cell(value: object) -> object:
    """None and NaN become empty cells, so a slide that could not be opened has blank measurements."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def read_qc_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a QC row file or qc/slides.tsv with validation: every column present, status pass or fail."""
    table = read_text_table(path, QC_COLUMNS)
    return _parse(table, path)


def _parse(table: pd.DataFrame, path: str | os.PathLike) -> pd.DataFrame:
    """Typed QC table: numbers as floats (NaN when empty), n_tiles as int, unknown statuses rejected."""
    unknown = sorted(set(table["status"]) - set(STATUSES))
    if unknown:
        raise ValueError(f"{path}: QC column status has value(s) {unknown}; expected pass or fail")
    table = table[list(QC_COLUMNS)].copy()
    for column in NUMERIC_COLUMNS:
        table[column] = pd.to_numeric(table[column].replace({"": None, "NaN": None}), errors="raise").astype(float)
    try:
        table["n_tiles"] = table["n_tiles"].astype(int)
    except ValueError as error:
        raise ValueError(f"{path}: QC column n_tiles must hold whole numbers ({error})") from None
    duplicated = sorted(set(table["slide_id"][table["slide_id"].duplicated()]))
    if duplicated:
        raise ValueError(f"{path}: slide_id appears in more than one QC row: {duplicated}")
    return table


def passed_slides(qc: pd.DataFrame) -> pd.DataFrame:
    """The slides that passed QC (slide_id, patient_id, n_tiles), sorted by slide_id: the one 'passed QC' rule."""
    unknown = sorted(set(qc["status"]) - set(STATUSES))
    if unknown:
        raise ValueError(f"QC table has status value(s) {unknown}; expected pass or fail")
    passed = qc.loc[qc["status"] == "pass", ["slide_id", "patient_id", "n_tiles"]]
    return passed.sort_values("slide_id", kind="stable").reset_index(drop=True)


def read_passed_slides(path: str | os.PathLike) -> pd.DataFrame:
    """`passed_slides` of a qc/slides.tsv file."""
    return passed_slides(read_qc_table(path))


def is_excluded(slide_id: str, exclude: Sequence[str]) -> bool:
    """True when the config lists this slide by slide_id or by file name (slide_id plus one extension)."""
    return any(entry == slide_id or entry.rsplit(".", 1)[0] == slide_id for entry in map(str, exclude))


def summarise_qc(rows: Sequence[str | os.PathLike], exclude: Sequence[str], path: str | os.PathLike) -> pd.DataFrame:
    """Concatenate per-slide QC rows into qc/slides.tsv sorted by slide_id, marking config-excluded slides failed."""
    frames = [read_text_table(row_path, QC_COLUMNS)[list(QC_COLUMNS)] for row_path in rows]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(QC_COLUMNS))
    table = _parse(table, "QC rows " + ", ".join(map(str, rows[:3])) + (" ..." if len(rows) > 3 else ""))
    excluded = table["slide_id"].map(lambda slide_id: is_excluded(slide_id, exclude)).astype(bool)
    table.loc[excluded, "status"] = "fail"
    table.loc[excluded, "reason"] = EXCLUDED_REASON
    table = table.sort_values("slide_id", kind="stable").reset_index(drop=True)
    write_qc_table(table, path)
    return table


def write_qc_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a cohort QC table (qc/slides.tsv) after checking it against the contract."""
    write_tsv(_parse(table.astype({"n_tiles": int}), path), path)
