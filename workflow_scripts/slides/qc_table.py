"""The slide QC table: the one owner of qc/slides/{slide_id}.tsv (one row) and qc/slides.tsv (the cohort).

Contract (columns QC_COLUMNS, in this order, one row per slide, sorted by slide_id in qc/slides.tsv):
- ``slide_id``, ``patient_id``: text ids, as in the slide table.
- ``status``: exactly ``pass`` or ``fail``; any other value is an error when the table is read.
- ``reason``: why a slide failed ('' when it passed; ``excluded by config`` for slides.exclude entries, the
  sample-type reason for slides of another sample type, ``download failed: ...`` for a slide the GDC never gave).
- ``mpp``, ``objective_power``, ``width``, ``height``: the slide's resolution (um/px at level 0), objective and
  level-0 size; empty when the slide could not be opened.
- ``tissue_fraction``, ``pen_fraction``, ``blur_fraction``: fractions of the thumbnail that is tissue, of tissue
  tiles dropped for pen ink, and of tissue tiles dropped as out of focus.
- ``n_tiles``: tiles written to the slide's tile store (0 for a failed slide).

Every stage downstream of tiling decides "passed QC" through `passed_slides`, so that decision exists once.

Also owned here: qc/failures.tsv (FAILURE_COLUMNS: slide_id, patient_id, stage, reason; sorted by slide_id), every
slide of the cohort's sources that is not analysed and why; stage is ``excluded`` (left out by the slide table),
``download`` (the download failed for good) or ``qc`` (tiling or QC failed).
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
DOWNLOAD_FAILED = "download failed: "
FAILURE_COLUMNS = ("slide_id", "patient_id", "stage", "reason")
FAILURE_STAGES = ("download", "qc", "excluded")


def download_failure_row(slide_id: str, patient_id: str, reason: str) -> dict[str, object]:
    """The QC row of a slide whose download failed for good: fail, the download's reason, no measurements."""
    return {"slide_id": slide_id, "patient_id": patient_id, "status": "fail", "reason": DOWNLOAD_FAILED + reason,
            "n_tiles": 0}


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
    _check_statuses(table, path)
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


def _check_statuses(table: pd.DataFrame, where: str | os.PathLike) -> None:
    """Reject any status other than pass or fail, naming the file or table."""
    unknown = sorted(set(table["status"]) - set(STATUSES))
    if unknown:
        raise ValueError(f"{where}: unknown QC status value(s) {unknown}; expected pass or fail")


def passed_slides(qc: pd.DataFrame) -> pd.DataFrame:
    """The slides that passed QC (slide_id, patient_id, n_tiles), sorted by slide_id: the one 'passed QC' rule."""
    _check_statuses(qc, "QC table")
    passed = qc.loc[qc["status"] == "pass", ["slide_id", "patient_id", "n_tiles"]]
    return passed.sort_values("slide_id", kind="stable").reset_index(drop=True)


def read_passed_slides(path: str | os.PathLike) -> pd.DataFrame:
    """`passed_slides` of a qc/slides.tsv file."""
    return passed_slides(read_qc_table(path))


def is_excluded(slide_id: str, exclude: Sequence[str]) -> bool:
    """True when the config lists this slide by slide_id or by file name (slide_id plus one extension)."""
    return any(entry == slide_id or entry.rsplit(".", 1)[0] == slide_id for entry in map(str, exclude))


def summarise_qc(
    rows: Sequence[str | os.PathLike],
    exclude: Sequence[str],
    path: str | os.PathLike,
    excluded: pd.DataFrame | None = None,
    failures_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Concatenate per-slide QC rows into qc/slides.tsv sorted by slide_id, marking config-excluded slides failed
    and adding a fail row (no measurements, 0 tiles) per slide the slide table left out (`excluded`: slide_id,
    patient_id, reason); with `failures_path`, also write qc/failures.tsv."""
    frames = [read_text_table(row_path, QC_COLUMNS)[list(QC_COLUMNS)] for row_path in rows]
    if excluded is not None and len(excluded):
        left_out = pd.DataFrame({column: "" for column in QC_COLUMNS}, index=range(len(excluded)))
        left_out["slide_id"] = list(excluded["slide_id"])
        left_out["patient_id"] = list(excluded["patient_id"])
        left_out["reason"] = list(excluded["reason"])
        left_out["status"], left_out["n_tiles"] = "fail", "0"
        frames.append(left_out)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(QC_COLUMNS))
    table = _parse(table, "QC rows " + ", ".join(map(str, rows[:3])) + (" ..." if len(rows) > 3 else ""))
    is_listed = table["slide_id"].map(lambda slide_id: is_excluded(slide_id, exclude)).astype(bool)
    table.loc[is_listed, "status"] = "fail"
    table.loc[is_listed, "reason"] = EXCLUDED_REASON
    table = table.sort_values("slide_id", kind="stable").reset_index(drop=True)
    write_qc_table(table, path)
    if failures_path is not None:
        left_out_ids = set() if excluded is None else set(excluded["slide_id"])
        write_failures(failures(table, left_out_ids), failures_path)
    return table


def failures(qc: pd.DataFrame, left_out: set[str] = frozenset()) -> pd.DataFrame:
    """Every failed slide of a QC table with its stage: excluded (in `left_out`, or excluded by config), download
    (reason starts with DOWNLOAD_FAILED) or qc; columns FAILURE_COLUMNS, sorted by slide_id."""
    failed = qc.loc[qc["status"] == "fail", ["slide_id", "patient_id", "reason"]].copy()

    def stage(row: pd.Series) -> str:
        if row["slide_id"] in left_out or row["reason"] == EXCLUDED_REASON:
            return "excluded"
        return "download" if row["reason"].startswith(DOWNLOAD_FAILED) else "qc"

    failed["stage"] = [stage(row) for _, row in failed.iterrows()] if len(failed) else []
    return failed[list(FAILURE_COLUMNS)].sort_values("slide_id", kind="stable").reset_index(drop=True)


def write_failures(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write qc/failures.tsv (FAILURE_COLUMNS), atomically, after checking every stage is known."""
    _check_stages(table, path)
    write_tsv(table[list(FAILURE_COLUMNS)].astype(str), path)


def read_failures(path: str | os.PathLike) -> pd.DataFrame:
    """Read qc/failures.tsv as text, checking its columns and stages; errors name the file."""
    table = read_text_table(path, FAILURE_COLUMNS)[list(FAILURE_COLUMNS)]
    _check_stages(table, path)
    return table


def _check_stages(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Reject a failure stage other than FAILURE_STAGES, naming the file."""
    unknown = sorted(set(table["stage"]) - set(FAILURE_STAGES))
    if unknown:
        raise ValueError(f"{path}: failure stage(s) {unknown}; expected one of {list(FAILURE_STAGES)}")


def write_qc_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a cohort QC table (qc/slides.tsv) after checking it against the contract."""
    write_tsv(_parse(table.astype({"n_tiles": int}), path), path)
