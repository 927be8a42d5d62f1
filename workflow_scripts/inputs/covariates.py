"""Clinical covariates from further tables (config `clinical.covariates`), merged by patient into clinical.tsv.

This module owns the covariate tables: which formats are read, how their rows become one value per patient, and
the precedence of the merge. Formats (`format`) and their default key column (`key`):
- `cbioportal_patient` (cBioPortal data_clinical_patient.txt: `#` metadata rows, then a tab-separated header),
  key PATIENT_ID;
- `cbioportal_sample` (data_clinical_sample.txt, same layout), key SAMPLE_ID;
- `tsv` and `csv` (a user's own table, tab- or comma-separated, one header row), key patient_id.
The files are parsed by inputs/clinical.py (`read_cbioportal_table`, `read_delimited_table`). `columns` maps
covariates (COVARIATES: er_status, pr_status, her2_status, subtype (PAM50), stage) to the table's columns.

Keys that are TCGA sample or aliquot barcodes (TCGA-A1-A0SB-01A...) are reduced to patients by the rule the
expression matrices use (inputs/expression.primary_aliquots): only primary-tumour samples (01) count, and of
several the first by vial, portion, then barcode; other sample types (06 metastatic, 11 normal, ...) are left
out. Any other key (a patient barcode, a local cohort's own id) is the patient id as it is; a patient listed twice
is an error. Values are normalised as in the base table: ER/PR/HER2 to positive/negative/indeterminate (anything
else empty), stage upper-cased, subtype stripped, missing markers empty.

Precedence: the base table (clinical.path) first, then each covariate table in the order listed; a non-empty
value a table has for a patient of the base table replaces the value before it, and an empty one leaves it.
Patients missing from the base table (no survival) are not added. The log counts, per table and covariate, the
values it supplied and how many of those replaced a different value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workflow_scripts.inputs.clinical import (
    is_missing,
    normalise_er,
    normalise_stage,
    read_cbioportal_table,
    read_clinical,
    read_delimited_table,
    write_clinical,
)
from workflow_scripts.inputs.expression import primary_aliquots

COVARIATES = ("er_status", "pr_status", "her2_status", "subtype", "stage")
DEFAULT_KEYS = {"cbioportal_patient": "PATIENT_ID", "cbioportal_sample": "SAMPLE_ID", "tsv": "patient_id",
                "csv": "patient_id"}
RECEPTORS = ("er_status", "pr_status", "her2_status")


@dataclass(frozen=True)
class CovariateSource:
    """One covariate table: its local file, format, key column and covariate -> column mapping."""

    path: Path
    format: str
    key: str
    columns: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, path: str | os.PathLike, entry: Mapping) -> CovariateSource:
        """A source from a `clinical.covariates` entry (its format, key, columns) and the file's local path."""
        fmt = str(entry.get("format", ""))
        if fmt not in DEFAULT_KEYS:
            raise ValueError(f"{path}: covariate format {fmt!r} is not one of {sorted(DEFAULT_KEYS)}")
        columns = dict(entry.get("columns") or {})
        unknown = sorted(set(columns) - set(COVARIATES))
        if unknown or not columns:
            raise ValueError(f"{path}: covariate columns {unknown or '{}'} are not among {list(COVARIATES)}")
        return cls(Path(path), fmt, str(entry.get("key") or DEFAULT_KEYS[fmt]), columns)


def read_source_table(source: CovariateSource) -> pd.DataFrame:
    """The raw covariate table as text, read by its format."""
    if source.format.startswith("cbioportal"):
        return read_cbioportal_table(source.path)
    return read_delimited_table(source.path, "," if source.format == "csv" else "\t")


def _check_columns(table: pd.DataFrame, source: CovariateSource) -> None:
    """Raise naming the file and column when the key or a mapped column is not in the table."""
    if source.key not in table.columns:
        raise ValueError(
            f"{source.path}: covariate table ({source.format}) has no key column {source.key!r} "
            f"(has {list(table.columns)[:12]} ...); set key in clinical.covariates"
        )
    for covariate, column in source.columns.items():
        if column not in table.columns:
            raise ValueError(
                f"{source.path}: covariate {covariate} maps to column {column!r}, which the table lacks "
                f"(has {list(table.columns)[:12]} ...)"
            )


def _normalise(covariate: str, text: str) -> str:
    """One covariate value in the form of clinical.tsv ('' when missing or not a recognised status)."""
    if covariate in RECEPTORS:
        return normalise_er(text)
    if covariate == "stage":
        return normalise_stage(text)
    return "" if is_missing(text) else text.strip()


def patient_rows(keys: pd.Series, path: Path) -> dict[str, int]:
    """Row position of each patient's row: primary-tumour sample barcodes reduced as for expression, others as is."""
    keys = keys.astype(str).str.strip()
    if (keys == "").any():
        raise ValueError(f"{path}: {int((keys == '').sum())} row(s) without a key")
    repeated = sorted(set(keys[keys.duplicated()]))
    if repeated:
        raise ValueError(f"{path}: key(s) listed twice: {repeated[:10]}")
    kept, _ = primary_aliquots(list(keys), path)
    position = {key: index for index, key in enumerate(keys)}
    return {patient: position[key] for key, patient in kept.items()}


def covariate_values(source: CovariateSource, log: logging.Logger | None = None) -> pd.DataFrame:
    """One row per patient with the mapped covariates normalised (patient_id first), from one covariate table."""
    table = read_source_table(source)
    _check_columns(table, source)
    rows = patient_rows(table[source.key], source.path)
    patients = sorted(rows)
    picked = table.iloc[[rows[patient] for patient in patients]]
    values = pd.DataFrame({"patient_id": patients})
    for covariate, column in source.columns.items():
        values[covariate] = [_normalise(covariate, str(text)) for text in picked[column]]
    if log is not None:
        log.info("%s (%s, key %s): %d rows, %d patients", source.path, source.format, source.key, len(table),
                 len(patients))
    return values


def merge_covariates(
    base: pd.DataFrame, values: pd.DataFrame, label: str, log: logging.Logger | None = None
) -> pd.DataFrame:
    """The base table with a covariate table's non-empty values replacing its own (see the module docstring)."""
    merged = base.copy()
    lookup = values.set_index("patient_id")
    present = merged["patient_id"].isin(lookup.index)
    for covariate in [column for column in values.columns if column != "patient_id"]:
        new = merged.loc[present, "patient_id"].map(lookup[covariate]).fillna("")
        supplied = new != ""
        old = merged.loc[new.index[supplied], covariate].fillna("")
        changed = int(((old != "") & (old != new[supplied])).sum())
        merged.loc[new.index[supplied], covariate] = new[supplied]
        if log is not None:
            log.info("%s: supplied %s for %d of %d patients (%d replaced a different value)", label, covariate,
                     int(supplied.sum()), len(merged), changed)
    if log is not None:
        outside = len(set(lookup.index) - set(merged["patient_id"]))
        log.info("%s: %d patients of the table are not in the base table (no survival) and are left out", label,
                 outside)
    return merged


def apply_covariates(
    base: pd.DataFrame, sources: Sequence[CovariateSource], log: logging.Logger | None = None
) -> pd.DataFrame:
    """Merge every covariate table into the base clinical table, in order (later tables win)."""
    for source in sources:
        base = merge_covariates(base, covariate_values(source, log), str(source.path), log)
    return base


def make_clinical_file(
    source: str | os.PathLike,
    format: str,
    output: str | os.PathLike,
    covariates: Sequence[CovariateSource] = (),
    log: logging.Logger | None = None,
    exclude_redacted: bool = True,
) -> pd.DataFrame:
    """Rule `clinical`: read the base table, merge the covariate tables, write survival/clinical.tsv."""
    table = apply_covariates(read_clinical(source, format, log, exclude_redacted), covariates, log)
    write_clinical(table, output)
    if log is not None:
        counts = ", ".join(f"{column} {int((table[column] != '').sum())}" for column in COVARIATES)
        log.info("wrote %d patients (%d deaths) to %s; covariates known: %s", len(table),
                 int(table["os_event"].sum()), output, counts)
    return table
