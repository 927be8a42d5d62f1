"""Overall survival and clinical covariates per patient, from a cBioPortal patient table or the TCGA-CDR table.

This module owns survival/clinical.tsv: `write_clinical` writes it (the one TSV form of common.tables, sorted
by patient_id) and `read_clinical_table` reads it back with its columns checked. Columns: patient_id,
os_months (float), os_event (1 = died, 0 = censored), age (float, NaN when unknown), stage, subtype, er_status
pr_status, her2_status (text, empty when unknown); only patients with both survival status and time are written.
Covariates from further tables (clinical.covariates) are merged in by inputs/covariates.py, which reads them
with `read_cbioportal_table` and `read_delimited_table` here. Base sources:
- cBioPortal (`data_clinical_patient.txt`): leading `#` rows, then a tab-separated header row with
  PATIENT_ID, OS_STATUS (`1:DECEASED`/`0:LIVING` or plain `DECEASED`/`LIVING`), OS_MONTHS, AGE,
  AJCC_PATHOLOGIC_TUMOR_STAGE, SUBTYPE and, in some studies, an ER status column.
- TCGA-CDR (Liu et al. 2018, Cell; TSV, CSV or the published xlsx): bcr_patient_barcode, OS (0/1),
  OS.time in days (months = days / 30.4375), age_at_initial_pathologic_diagnosis, ajcc_pathologic_tumor_stage,
  Redaction (`Redacted` for the patients TCGA withdrew; left out by default, and counted in the log).
Stage is upper-cased (`Stage IIA` -> `STAGE IIA`) so both sources agree; ER, PR and HER2 status (ER_COLUMNS,
PR_COLUMNS, HER2_COLUMNS, when the table has one) are lower-cased positive/negative/indeterminate, anything else
(Equivocal, missing markers) empty. Patients without survival status or time are left out and counted.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workflow_scripts.common.tables import read_table, write_tsv

CLINICAL_COLUMNS = [
    "patient_id", "os_months", "os_event", "age", "stage", "subtype", "er_status", "pr_status", "her2_status"
]
DAYS_PER_MONTH = 30.4375
MISSING_MARKERS = frozenset(
    {
        "",
        "na",
        "nan",
        "n/a",
        "#n/a",
        "none",
        "null",
        "[not available]",
        "[not applicable]",
        "[unknown]",
        "[discrepancy]",
        "[not evaluated]",
        "[not reported]",
        "[completed]",
    }
)
EVENT_WORDS = {"1": 1, "deceased": 1, "dead": 1, "0": 0, "living": 0, "alive": 0}
ER_VALUES = {"positive": "positive", "negative": "negative", "indeterminate": "indeterminate"}
ER_COLUMNS = (
    "ER_STATUS_BY_IHC",
    "ER_STATUS",
    "ER_STATUS_IHC",
    "BREAST_CARCINOMA_ESTROGEN_RECEPTOR_STATUS",
    "ESTROGEN_RECEPTOR_STATUS",
)
PR_COLUMNS = ("PR_STATUS_BY_IHC", "PR_STATUS", "BREAST_CARCINOMA_PROGESTERONE_RECEPTOR_STATUS")
HER2_COLUMNS = (
    "IHC_HER2", "HER2_STATUS", "HER2_STATUS_BY_IHC", "LAB_PROC_HER2_NEU_IMMUNOHISTOCHEMISTRY_RECEPTOR_STATUS"
)
FORMATS = ("cbioportal", "cdr")
REDACTION_COLUMN = "Redaction"
# Leading bytes of files that are not text: xlsx/zip archives and old binary Excel (OLE2) workbooks.
BINARY_SIGNATURES = {b"PK\x03\x04": "an xlsx workbook or zip archive", b"\xd0\xcf\x11\xe0": "a binary Excel workbook"}
TEXT_COLUMNS = ("stage", "subtype", "er_status", "pr_status", "her2_status")


@dataclass(frozen=True)
class SourceColumns:
    """A source table's columns for each output column, and how its survival time converts to months."""

    patient_id: pd.Series
    os_status: pd.Series
    os_time: pd.Series
    time_to_months: Callable[[float], float]
    age: pd.Series | None = None
    stage: pd.Series | None = None
    subtype: pd.Series | None = None
    er_status: pd.Series | None = None
    pr_status: pd.Series | None = None
    her2_status: pd.Series | None = None


def is_missing(text: str) -> bool:
    """True for an empty cell or one of the TCGA / spreadsheet missing-value markers."""
    return text.strip().lower() in MISSING_MARKERS


def parse_os_event(text: str, where: str) -> float:
    """1 for death, 0 for censored, NaN for missing; accepts `1:DECEASED`, `DECEASED`, `0`, `Alive`, ..."""
    if is_missing(text):
        return math.nan
    value = text.strip()
    code, _, word = value.partition(":")
    candidates = [code, word] if word else [value]
    events = {EVENT_WORDS.get(candidate.strip().lower()) for candidate in candidates}
    if len(events) != 1 or None in events:
        raise ValueError(f"{where}: survival status {text!r} is neither deceased (1) nor living (0)")
    return float(events.pop())


def parse_number(text: str, where: str) -> float:
    """A float, NaN for missing markers; raise naming the cell otherwise."""
    if is_missing(text):
        return math.nan
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None


def normalise_stage(text: str) -> str:
    """Upper-case AJCC stage (`Stage IIA` -> `STAGE IIA`); empty when missing."""
    return "" if is_missing(text) else " ".join(text.strip().upper().split())


def normalise_er(text: str) -> str:
    """ER, PR or HER2 status as positive / negative / indeterminate; empty for anything else (missing, equivocal)."""
    return ER_VALUES.get(text.strip().lower(), "")


def _column(table: pd.DataFrame, name: str, path: Path) -> pd.Series:
    """A required column, or an error naming it and the file."""
    if name not in table.columns:
        raise ValueError(f"{path}: clinical table lacks column {name!r} (has {list(table.columns)[:12]} ...)")
    return table[name]


def _optional_column(table: pd.DataFrame, names: tuple[str, ...]) -> pd.Series | None:
    """The first of the given columns present, matching names case-insensitively."""
    by_upper = {column.upper(): column for column in table.columns}
    for name in names:
        if name.upper() in by_upper:
            return table[by_upper[name.upper()]]
    return None


CBIOPORTAL_HINT = "for the TCGA-CDR xlsx set clinical format 'cdr', otherwise export the sheet as TSV"


def check_text_file(path: Path, what: str = "clinical format 'cbioportal'", hint: str = CBIOPORTAL_HINT) -> None:
    """Raise naming the file when a text table is an xlsx/zip, a binary workbook or not UTF-8 text."""
    with open(path, "rb") as handle:
        start = handle.read(8192)
    kind = next((name for magic, name in BINARY_SIGNATURES.items() if start.startswith(magic)), None)
    if kind is None and b"\x00" in start:
        kind = "a binary file"
    if kind is None:
        try:
            with open(path, encoding="utf-8") as handle:
                for _ in handle:
                    pass
        except UnicodeDecodeError as error:
            kind = f"not UTF-8 text (byte {error.start} cannot be decoded)"
    if kind is not None:
        raise ValueError(
            f"{path}: {what} expects a delimited text file, but this is {kind}; {hint}"
        )


def read_cbioportal_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a cBioPortal clinical file as text, skipping its `#` metadata rows."""
    path = Path(path)
    check_text_file(path)
    with open(path, encoding="utf-8") as handle:
        n_comment_rows = 0
        for line in handle:
            if not line.startswith("#"):
                break
            n_comment_rows += 1
    return pd.read_csv(path, sep="\t", skiprows=n_comment_rows, dtype=str, keep_default_na=False)


def read_delimited_table(path: str | os.PathLike, separator: str) -> pd.DataFrame:
    """Read a user's tab- or comma-separated table as text (empty cells ''), checking it is UTF-8 text."""
    path = Path(path)
    check_text_file(path, "a covariate table", "export the sheet as TSV or CSV")
    return pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False)


def read_cdr_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read the TCGA-CDR table as text from xlsx (first sheet), CSV or TSV."""
    path = Path(path)
    if path.suffix.lower() in {".xlsx", ".xls"}:
        table = pd.read_excel(path, sheet_name=0, dtype=str, keep_default_na=False)
    else:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline()
        separator = "\t" if "\t" in header else ","
        table = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False)
    unnamed = [column for column in table.columns if str(column).startswith("Unnamed:")]
    return table.drop(columns=unnamed).fillna("")


def _standardise(path: Path, source: SourceColumns) -> pd.DataFrame:
    """Assemble the output columns from source columns, checking ids and survival values."""
    ids = source.patient_id.astype(str).str.strip()
    empty = ids == ""
    if empty.any():
        raise ValueError(f"{path}: {int(empty.sum())} row(s) without a patient id")
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise ValueError(f"{path}: patient id(s) listed twice: {duplicated[:10]}")
    months = [
        source.time_to_months(parse_number(value, f"{path}: patient {patient} survival time"))
        for patient, value in zip(ids, source.os_time)
    ]
    for patient, value in zip(ids, months):
        if value < 0:
            raise ValueError(f"{path}: patient {patient} has negative survival time {value}")

    def text(column: pd.Series | None) -> pd.Series:
        """An optional column as text; a column the source lacks reads as all empty."""
        return column.astype(str) if column is not None else pd.Series([""] * len(ids), index=ids.index)

    return pd.DataFrame(
        {
            "patient_id": ids.to_numpy(),
            "os_months": months,
            "os_event": [
                parse_os_event(value, f"{path}: patient {patient}") for patient, value in zip(ids, source.os_status)
            ],
            "age": [
                parse_number(value, f"{path}: patient {patient} age") for patient, value in zip(ids, text(source.age))
            ],
            "stage": [normalise_stage(value) for value in text(source.stage)],
            "subtype": ["" if is_missing(value) else value.strip() for value in text(source.subtype)],
            "er_status": [normalise_er(value) for value in text(source.er_status)],
            "pr_status": [normalise_er(value) for value in text(source.pr_status)],
            "her2_status": [normalise_er(value) for value in text(source.her2_status)],
        },
        columns=CLINICAL_COLUMNS,
    )


def clinical_from_cbioportal(table: pd.DataFrame, path: str | os.PathLike = "cBioPortal table") -> pd.DataFrame:
    """Standard clinical columns from a cBioPortal patient table (all patients, survival possibly NaN)."""
    path = Path(path)
    return _standardise(path, SourceColumns(
        patient_id=_column(table, "PATIENT_ID", path),
        os_status=_column(table, "OS_STATUS", path),
        os_time=_column(table, "OS_MONTHS", path),
        time_to_months=lambda months: months,
        age=_optional_column(table, ("AGE",)),
        stage=_optional_column(table, ("AJCC_PATHOLOGIC_TUMOR_STAGE",)),
        subtype=_optional_column(table, ("SUBTYPE",)),
        er_status=_optional_column(table, ER_COLUMNS),
        pr_status=_optional_column(table, PR_COLUMNS),
        her2_status=_optional_column(table, HER2_COLUMNS),
    ))


def clinical_from_cdr(table: pd.DataFrame, path: str | os.PathLike = "TCGA-CDR table") -> pd.DataFrame:
    """Standard clinical columns from the TCGA-CDR table, OS.time converted from days to months."""
    path = Path(path)
    return _standardise(path, SourceColumns(
        patient_id=_column(table, "bcr_patient_barcode", path),
        os_status=_column(table, "OS", path),
        os_time=_column(table, "OS.time", path),
        time_to_months=lambda days: days / DAYS_PER_MONTH,
        age=_optional_column(table, ("age_at_initial_pathologic_diagnosis",)),
        stage=_optional_column(table, ("ajcc_pathologic_tumor_stage",)),
        subtype=_optional_column(table, ("subtype", "Subtype_mRNA", "PAM50")),
        er_status=_optional_column(table, ER_COLUMNS),
        pr_status=_optional_column(table, PR_COLUMNS),
        her2_status=_optional_column(table, HER2_COLUMNS),
    ))


def split_redacted(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Split a raw TCGA-CDR table into rows not marked `Redacted` and the redacted patients' ids."""
    if REDACTION_COLUMN not in table.columns:
        return table, []
    redacted = table[REDACTION_COLUMN].astype(str).str.strip().str.lower() == "redacted"
    ids = table.loc[redacted, "bcr_patient_barcode"].astype(str).str.strip().tolist() if redacted.any() else []
    return table[~redacted], ids


def read_cdr_patients(
    path: str | os.PathLike, log: logging.Logger | None = None, exclude_redacted: bool = True
) -> pd.DataFrame:
    """Standard clinical columns from a TCGA-CDR file, without the redacted patients unless told to keep them."""
    raw = read_cdr_table(path)
    kept, redacted = split_redacted(raw)
    if log is not None:
        action = "excluded" if exclude_redacted else "kept (clinical exclude_redacted is off)"
        listed = f" ({redacted[:20]}{' ...' if len(redacted) > 20 else ''})" if redacted else ""
        log.info("%s: %d patients marked Redacted, %s%s", path, len(redacted), action, listed)
    return clinical_from_cdr(kept if exclude_redacted else raw, path)


def read_clinical(
    path: str | os.PathLike, format: str, log: logging.Logger | None = None, exclude_redacted: bool = True
) -> pd.DataFrame:
    """Read either format and drop patients without survival status or time, logging how many were dropped.

    exclude_redacted (TCGA-CDR only): leave out the patients whose Redaction cell is `Redacted`.
    """
    if format == "cbioportal":
        table = clinical_from_cbioportal(read_cbioportal_table(path), path)
    elif format == "cdr":
        table = read_cdr_patients(path, log, exclude_redacted)
    else:
        raise ValueError(f"clinical format {format!r} is not one of {FORMATS}")
    result, excluded = exclude_missing_survival(table)
    if log is not None:
        log.info(
            "%s: %d patients, %d excluded for missing survival status or time%s",
            path,
            len(table),
            len(excluded),
            f" ({excluded[:20]}{' ...' if len(excluded) > 20 else ''})" if excluded else "",
        )
    return result


def exclude_missing_survival(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Split off patients lacking survival status or time (unusable for Kaplan-Meier); return kept and dropped ids."""
    usable = table["os_months"].notna() & table["os_event"].notna()
    excluded = table.loc[~usable, "patient_id"].tolist()
    result = table[usable].copy()
    result["os_event"] = result["os_event"].astype(int)
    return result.sort_values("patient_id", kind="stable").reset_index(drop=True), excluded


def write_clinical(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write survival/clinical.tsv (see the module docstring) atomically."""
    write_tsv(table[CLINICAL_COLUMNS], path)


def read_clinical_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read survival/clinical.tsv back: ids, stage, subtype and ER status as text ('' when unknown), checked columns."""
    table = read_table(path, CLINICAL_COLUMNS, text=TEXT_COLUMNS)
    table[list(TEXT_COLUMNS)] = table[list(TEXT_COLUMNS)].fillna("")
    return table.astype({"os_months": float, "os_event": int, "age": float})


def make_clinical_file(
    source: str | os.PathLike,
    format: str,
    output: str | os.PathLike,
    log: logging.Logger | None = None,
    exclude_redacted: bool = True,
) -> pd.DataFrame:
    """Rule `clinical`: read the clinical source and write survival/clinical.tsv."""
    table = read_clinical(source, format, log, exclude_redacted)
    write_clinical(table, output)
    if log is not None:
        log.info("wrote %d patients (%d deaths) to %s", len(table), int(table["os_event"].sum()), output)
    return table
