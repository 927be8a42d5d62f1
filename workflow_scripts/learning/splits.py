"""Patient-level test and train/validation splits, drawn once before any trait is looked at.

Rule: the patients are every patient with at least one slide whose QC status is `pass`, sorted by id. A
numpy default_rng(seed) permutation takes round(test_fraction * n) of them as the held-out test set (at
least 1 when n >= 10); then, for k = 0..n_splits-1 in turn, a further permutation of the remaining patients
(sorted) takes round(val_fraction * n) of them as validation for split k (at least 1 when n >= 10; the
fraction is of ALL patients, as in the paper); the rest train. Rounding is half up. The same generator is
used in sequence, so the first k splits do not change when n_splits grows, and no trait enters the draw, so
every trait uses the same splits.

Contract of splits/splits.tsv (this module writes it and is its one reader, `read_splits`): columns `patient_id`,
`test` (True/False) and `split_<k>` for k = 0..n_splits-1 holding train, val or test (test exactly where `test` is
True); one row per patient with a passing slide.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workflow_scripts.common.tables import read_text_table, write_tsv
from workflow_scripts.slides.qc_table import passed_slides, read_qc_table

MIN_PATIENTS_FOR_AT_LEAST_ONE = 10
ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSettings:
    """Fractions of all patients held out for test and for each split's validation, and the number of splits."""

    test_fraction: float = 0.1
    val_fraction: float = 0.1
    n_splits: int = 5

    def __post_init__(self) -> None:
        """Reject fractions outside [0, 1) and a non-positive number of splits."""
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"splits: {name} must be in [0, 1), got {value}")
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError(
                f"splits: test_fraction + val_fraction must be < 1, got {self.test_fraction} + {self.val_fraction}"
            )
        if int(self.n_splits) != self.n_splits or self.n_splits < 1:
            raise ValueError(f"splits: n_splits must be a positive integer, got {self.n_splits}")

    @classmethod
    def from_config(cls, config: Mapping[str, float]) -> SplitSettings:
        """Build the settings from the `splits:` config block, rejecting unknown keys."""
        unknown = set(config) - {"test_fraction", "val_fraction", "n_splits"}
        if unknown:
            raise ValueError(f"splits: unknown setting(s) {sorted(unknown)}")
        values = dict(config)
        if "n_splits" in values:
            values["n_splits"] = int(values["n_splits"])
        return cls(**values)


def held_out_count(fraction: float, n_patients: int) -> int:
    """Patients to hold out: fraction * n rounded half up, at least 1 once there are 10 patients."""
    count = math.floor(fraction * n_patients + 0.5)
    if n_patients >= MIN_PATIENTS_FOR_AT_LEAST_ONE and fraction > 0:
        count = max(count, 1)
    return count


def passing_patients(qc: pd.DataFrame) -> list[str]:
    """Sorted ids of patients with at least one slide that passed QC (`slides.qc_table.passed_slides`)."""
    return sorted(set(passed_slides(qc)["patient_id"].astype(str)))


def draw_splits(patient_ids: Sequence[str], settings: SplitSettings, seed: int) -> pd.DataFrame:
    """Assign each patient to test, or to train/val in each split, reproducibly from the seed."""
    patients = sorted(set(patient_ids))
    if len(patients) != len(patient_ids):
        raise ValueError("draw_splits: patient ids must be unique")
    n = len(patients)
    n_test = held_out_count(settings.test_fraction, n)
    n_val = held_out_count(settings.val_fraction, n)
    if n - n_test - n_val < 1:
        raise ValueError(
            f"splits: {n} patient(s) leave no training patient after {n_test} test and {n_val} validation patients"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    test = {patients[index] for index in order[:n_test]}
    rest = [patient for patient in patients if patient not in test]
    table = pd.DataFrame({"patient_id": patients, "test": [patient in test for patient in patients]})
    for split in range(settings.n_splits):
        val = {rest[index] for index in rng.permutation(len(rest))[:n_val]}
        table[f"split_{split}"] = [
            "test" if patient in test else "val" if patient in val else "train" for patient in patients
        ]
    return table


def read_splits(path: str | os.PathLike) -> pd.DataFrame:
    """Read splits.tsv strictly: ids as text, `test` True or False, each split_<k> train, val or test."""
    table = read_text_table(path, ["patient_id", "test"])
    bad = sorted(set(table["test"]) - {"True", "False"})
    if bad:
        raise ValueError(f"{path}: column test has value(s) {bad}; expected True or False")
    table["test"] = table["test"] == "True"
    for column in [name for name in table.columns if name.startswith("split_")]:
        roles = set(table[column])
        if not roles <= set(ROLES):
            raise ValueError(
                f"{path}: column {column} has value(s) {sorted(roles - set(ROLES))}; expected {list(ROLES)}"
            )
        if (table.loc[table["test"], column] != "test").any() or (table.loc[~table["test"], column] == "test").any():
            raise ValueError(f"{path}: column {column} disagrees with column test about the held-out patients")
    if table["patient_id"].duplicated().any():
        raise ValueError(
            f"{path}: patient ids repeat: {sorted(set(table['patient_id'][table['patient_id'].duplicated()]))}"
        )
    return table


def held_out_patients(splits: pd.DataFrame) -> set[str]:
    """The held-out test patients of a splits table read by `read_splits`."""
    if splits["test"].dtype != bool:
        raise TypeError("splits table: column test must be bool; read the file with read_splits")
    return set(splits.loc[splits["test"], "patient_id"].astype(str))


def write_splits(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write splits.tsv in the one TSV form."""
    write_tsv(table, path)


def make_splits_file(
    qc_path: str | os.PathLike,
    split_config: Mapping[str, float],
    seed: int,
    output: str | os.PathLike,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Rule `splits`: draw the splits over patients with a passing slide in qc/slides.tsv and write splits.tsv."""
    qc = read_qc_table(qc_path)
    patients = passing_patients(qc)
    table = draw_splits(patients, SplitSettings.from_config(split_config), int(seed))
    write_splits(table, output)
    if log is not None:
        log.info(
            "%s: %d of %d patients have a passing slide; %d test patients; per split: %s",
            qc_path,
            len(patients),
            qc["patient_id"].nunique(),
            int(table["test"].sum()),
            {column: table[column].value_counts().to_dict() for column in table.columns if column.startswith("split_")},
        )
    return table
