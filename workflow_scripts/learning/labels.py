"""Per-trait high/low labels from bulk expression percentiles, and the slide sets each trait trains and tests on.

Definitions (one trait, over the cohort: patients in the slide table that have a value for the trait):

- Thresholds are numpy.percentile(values, p) with numpy's default linear interpolation, p in percent.
- label 1 when value >= q(high), label 0 when value <= q(low); both form the set `train_pool`.
- Between them the patient is out of distribution: `ood_near` when q(low) < value <= q(low + near_width)
  or q(high - near_width) <= value < q(high); `ood_far` for the rest of the band. The label is missing (NaN).
- median_label = 1 when value > q(50) (numpy.median) else 0: the reference label for OOD evaluation.
- percentile = 100 * (r - 1) / (n - 1), r the rank of the value among the n cohort values (average rank for
  ties). For an untied value this is the p at which numpy.percentile returns exactly that value, so
  percentile >= high <=> label 1 and percentile <= low <=> label 0. Labels compare values, not ranks, so
  tied patients always share a label.

Contract of labels/{trait}.tsv and labels/labels.tsv (this module writes and reads them): columns LABEL_COLUMNS,
one row per cohort patient and trait; `label` 1, 0 or missing (NaN) for out-of-distribution patients; `set` one
of SETS; `median_label` 0 or 1; `value` the expression value and `percentile` its percentile in the cohort.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from workflow_scripts.common.tables import read_table, write_tsv
from workflow_scripts.inputs.expression import read_trait_expression
from workflow_scripts.inputs.slidetable import read_slide_table
from workflow_scripts.slides.qc_table import passed_slides

LABEL_COLUMNS = ["patient_id", "trait", "value", "percentile", "label", "set", "median_label"]
SETS = ("train_pool", "ood_near", "ood_far")
SLIDE_SET_COLUMNS = ["slide_id", "patient_id", "label", "median_label", "role"]


@dataclass(frozen=True)
class LabelSettings:
    """Percentile cut-offs (in percent) that turn expression into high/low labels."""

    low_percentile: float = 20.0
    high_percentile: float = 80.0
    near_width: float = 10.0

    def __post_init__(self) -> None:
        """Reject cut-offs that do not leave a low, an out-of-distribution and a high band."""
        if not 0 <= self.low_percentile < self.high_percentile <= 100:
            raise ValueError(
                f"labels: need 0 <= low_percentile < high_percentile <= 100, got "
                f"{self.low_percentile} and {self.high_percentile}"
            )
        if self.near_width < 0:
            raise ValueError(f"labels: near_width must be >= 0, got {self.near_width}")

    @classmethod
    def from_config(cls, config: Mapping[str, float]) -> LabelSettings:
        """Build the settings from the `labels:` config block, rejecting unknown keys."""
        unknown = set(config) - {"low_percentile", "high_percentile", "near_width"}
        if unknown:
            raise ValueError(f"labels: unknown setting(s) {sorted(unknown)}")
        return cls(**{key: float(value) for key, value in config.items()})


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Percentile rank 100*(r-1)/(n-1) with average ranks for ties: where each value sits in the cohort."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        raise ValueError(f"percentile ranks need at least 2 values, got {values.size}")
    return 100.0 * (rankdata(values, method="average") - 1.0) / (values.size - 1)


def label_trait(expression: pd.Series, trait: str, settings: LabelSettings) -> pd.DataFrame:
    """Label one trait's cohort (patient id -> value, NaN dropped) by expression percentile, in LABEL_COLUMNS."""
    present = expression.dropna().sort_index()
    if present.index.has_duplicates:
        raise ValueError(
            f"trait {trait!r}: duplicate patient ids {sorted(set(present.index[present.index.duplicated()]))}"
        )
    if len(present) < 2:
        raise ValueError(f"trait {trait!r}: {len(present)} patient(s) with expression; percentiles need at least 2")
    values = present.to_numpy(dtype=float)

    def quantile(percent: float) -> float:
        return float(np.percentile(values, percent))

    low, high = quantile(settings.low_percentile), quantile(settings.high_percentile)
    near_low = quantile(min(settings.low_percentile + settings.near_width, 100.0))
    near_high = quantile(max(settings.high_percentile - settings.near_width, 0.0))
    median = quantile(50.0)
    is_high = values >= high
    is_low = values <= low
    if np.any(is_high & is_low):
        raise ValueError(
            f"trait {trait!r}: value {float(values[is_high & is_low][0])!r} is tied across the "
            f"{settings.low_percentile:g}th and {settings.high_percentile:g}th percentiles; the trait cannot be split "
            f"into high and low"
        )
    near = ((values > low) & (values <= near_low)) | ((values >= near_high) & (values < high))
    labels = pd.array(np.where(is_high, 1, 0), dtype="Int64")
    labels[~(is_high | is_low)] = pd.NA
    return pd.DataFrame(
        {
            "patient_id": present.index.astype(str),
            "trait": trait,
            "value": values,
            "percentile": percentile_ranks(values),
            "label": labels,
            "set": np.where(is_high | is_low, "train_pool", np.where(near, "ood_near", "ood_far")),
            "median_label": (values > median).astype(int),
        },
        columns=LABEL_COLUMNS,
    )


def cohort_expression(expression: pd.Series, slides: pd.DataFrame) -> pd.Series:
    """Restrict a trait's values to patients in the slide table: the cohort whose percentiles define labels."""
    if "patient_id" not in slides.columns:
        raise ValueError("slide table has no 'patient_id' column")
    patients = set(slides["patient_id"].astype(str))
    return expression[expression.index.isin(patients)].dropna()


def build_trait_labels(
    matrix: str | os.PathLike,
    slides: pd.DataFrame,
    trait: Mapping[str, str],
    settings: LabelSettings,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Read one configured trait ({name, source, id}) from its matrix and label the slide table's patients."""
    missing = [key for key in ("name", "source", "id") if key not in trait]
    if missing:
        raise ValueError(f"trait {dict(trait)} lacks key(s) {missing}")
    expression = read_trait_expression(matrix, trait["id"], trait["source"], log)
    cohort = cohort_expression(expression, slides)
    if log is not None:
        n_slide_patients = slides["patient_id"].nunique()
        log.info(
            "trait %s: %d of %d slide-table patients have expression (%d expression patients lack slides)",
            trait["name"],
            len(cohort),
            n_slide_patients,
            len(expression) - len(cohort),
        )
    table = label_trait(cohort, trait["name"], settings)
    if log is not None:
        log.info("trait %s: sets %s", trait["name"], table["set"].value_counts().to_dict())
    return table


def write_labels(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a labels table (per trait or concatenated) in the columns LABEL_COLUMNS."""
    missing = [column for column in LABEL_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"labels table for {path} lacks column(s) {missing}")
    write_tsv(table[LABEL_COLUMNS], path)


def read_labels(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Read one or more labels TSVs (long form) with ids as text, `label` as nullable int, `median_label` as int."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no label files given")
    tables = []
    for path in paths:
        table = read_table(path, LABEL_COLUMNS, text=("set",))
        try:
            table["label"] = table["label"].astype("Int64")
            table["median_label"] = table["median_label"].astype(int)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: columns label and median_label must hold 0, 1 or nothing ({error})") from None
        unknown = sorted(set(table["set"]) - set(SETS))
        if unknown:
            raise ValueError(f"{path}: column set has value(s) {unknown}; expected one of {list(SETS)}")
        tables.append(table[LABEL_COLUMNS])
    return pd.concat(tables, ignore_index=True)


def _slides_per_patient(slides: pd.DataFrame) -> pd.Series:
    """Number of slides of each patient in the slide table."""
    return slides.groupby(slides["patient_id"].astype(str))["slide_id"].nunique()


def summarise_labels(labels: pd.DataFrame, slides: pd.DataFrame, traits: Sequence[str] | None = None) -> pd.DataFrame:
    """Count patients and slides per trait, set and label, so training-set sizes can be checked against the paper."""
    per_patient = _slides_per_patient(slides)
    order = list(traits) if traits is not None else list(dict.fromkeys(labels["trait"]))
    rows = []
    for trait in order:
        table = labels[labels["trait"] == trait]
        n_slides = table["patient_id"].map(per_patient).fillna(0).astype(int)
        row: dict[str, object] = {"trait": trait, "patients": len(table), "slides": int(n_slides.sum())}
        for name in SETS:
            chosen = table["set"] == name
            row[f"patients_{name}"] = int(chosen.sum())
            row[f"slides_{name}"] = int(n_slides[chosen].sum())
        for value in (1, 0):
            chosen = (table["label"] == value).fillna(False).to_numpy(dtype=bool)
            row[f"patients_label_{value}"] = int(chosen.sum())
            row[f"slides_label_{value}"] = int(n_slides[chosen].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def trait_slide_sets(
    labels: pd.DataFrame, splits: pd.DataFrame, qc: pd.DataFrame, trait: str, split: int
) -> pd.DataFrame:
    """Slides of one trait and split with their role (train|val|test|ood_near|ood_far) and their patient's label.

    Train-pool patients take their role from column split_{split} of the splits table; out-of-distribution
    patients take their set as role whatever their split, since no model of the trait trains on them. Slides
    inherit their patient's label, so all slides of a patient share one role. Only the slides of the QC table
    `qc` that `slides.qc_table.passed_slides` keeps are used. Patients absent from the splits table (no passing
    slide) are left out.
    """
    column = f"split_{split}"
    if column not in splits.columns:
        raise ValueError(f"splits table has no column {column!r} (columns: {list(splits.columns)})")
    trait_labels = labels[labels["trait"] == trait]
    if trait_labels.empty:
        raise ValueError(f"no labels for trait {trait!r} (traits present: {sorted(set(labels['trait']))})")
    merged = (
        passed_slides(qc)[["slide_id", "patient_id"]]
        .astype({"slide_id": str, "patient_id": str})
        .merge(trait_labels[["patient_id", "label", "set", "median_label"]], on="patient_id", how="inner")
        .merge(splits[["patient_id", column]].astype({"patient_id": str}), on="patient_id", how="inner")
    )
    merged["role"] = np.where(merged["set"] == "train_pool", merged[column], merged["set"])
    merged["label"] = merged["label"].astype("Int64")
    return merged[SLIDE_SET_COLUMNS].sort_values("slide_id", kind="stable").reset_index(drop=True)


def make_trait_labels_file(
    matrix: str | os.PathLike,
    slides_path: str | os.PathLike,
    trait: Mapping[str, str],
    label_config: Mapping[str, float],
    output: str | os.PathLike,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Rule `labels_trait`: label one configured trait for the slide table's patients and write labels/{trait}.tsv."""
    table = build_trait_labels(
        matrix, read_slide_table(slides_path), trait, LabelSettings.from_config(label_config), log
    )
    write_labels(table, output)
    if log is not None:
        log.info("trait %s: wrote %d patients to %s", trait["name"], len(table), output)
    return table


def make_labels_summary_files(
    label_paths: Sequence[str | os.PathLike],
    slides_path: str | os.PathLike,
    labels_output: str | os.PathLike,
    summary_output: str | os.PathLike,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Rule `labels_summary`: concatenate per-trait labels (labels.tsv) and write their counts (summary.tsv)."""
    labels = read_labels(label_paths)
    traits = list(dict.fromkeys(labels["trait"]))
    summary = summarise_labels(labels, read_slide_table(slides_path), traits)
    write_labels(labels, labels_output)
    write_tsv(summary, summary_output)
    if log is not None:
        for row in summary.itertuples(index=False):
            log.info(
                "trait %s: %d patients; train pool %d patients / %d slides (label 1: %d, label 0: %d); "
                "ood_near %d, ood_far %d patients",
                row.trait,
                row.patients,
                row.patients_train_pool,
                row.slides_train_pool,
                row.patients_label_1,
                row.patients_label_0,
                row.patients_ood_near,
                row.patients_ood_far,
            )
    return summary
