"""Patient-level test/train/val splits: disjoint, reproducible, and independent of the traits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qc_rows import qc_frame
from workflow_scripts.learning.labels import LabelSettings, label_trait, trait_slide_sets
from workflow_scripts.learning.splits import (
    SplitSettings,
    draw_splits,
    held_out_count,
    held_out_patients,
    make_splits_file,
    passing_patients,
    read_splits,
)
from workflow_scripts.slides.qc_table import write_qc_table


def qc_table(n_patients: int, slides_per_patient: int = 2) -> pd.DataFrame:
    """A QC slide table; every patient's second slide fails, and patient P003 has only failing slides."""
    rows = []
    for index in range(n_patients):
        patient = f"P{index:03d}"
        for slide in range(slides_per_patient):
            status = "fail" if slide == 1 or patient == "P003" else "pass"
            rows.append({"slide_id": f"{patient}-S{slide}", "patient_id": patient, "status": status, "reason": ""})
    return qc_frame(rows)


def test_held_out_counts_round_half_up_with_at_least_one_from_ten():
    assert [held_out_count(0.1, n) for n in (1, 4, 5, 9, 10, 14, 15, 761)] == [0, 0, 1, 1, 1, 1, 2, 76]
    assert held_out_count(0.01, 10) == 1 and held_out_count(0.01, 9) == 0
    assert held_out_count(0.0, 100) == 0


def test_passing_patients_need_one_passing_slide():
    qc = qc_table(6)
    assert passing_patients(qc) == ["P000", "P001", "P002", "P004", "P005"]
    with pytest.raises(ValueError, match="status value"):
        passing_patients(qc.assign(status="ok"))
    with pytest.raises(KeyError, match="status"):
        passing_patients(qc.drop(columns="status"))


@pytest.mark.parametrize("n", [10, 23, 101, 761])
def test_sets_are_disjoint_and_test_is_fixed_across_splits(n):
    patients = [f"TCGA-{index:06d}" for index in range(n)]
    table = draw_splits(patients, SplitSettings(), seed=42)
    split_columns = [f"split_{k}" for k in range(5)]
    assert list(table.columns) == ["patient_id", "test", *split_columns]
    assert table["patient_id"].tolist() == sorted(patients)
    n_test, n_val = held_out_count(0.1, n), held_out_count(0.1, n)
    assert table["test"].sum() == n_test
    for column in split_columns:
        roles = table[column]
        assert ((roles == "test") == table["test"]).all()  # identical test set in every split
        assert (roles == "val").sum() == n_val and (roles == "train").sum() == n - n_test - n_val
        assert set(roles) <= {"train", "val", "test"}  # one role per patient row, so sets never share a patient
    vals = [frozenset(table.loc[table[column] == "val", "patient_id"]) for column in split_columns]
    if n > 100:
        assert len(set(vals)) == 5  # different validation patients per split


def test_same_seed_same_splits_other_seed_other_splits_and_prefix_stable():
    patients = [f"P{index:03d}" for index in range(200)]
    first = draw_splits(patients, SplitSettings(), seed=1)
    assert first.equals(draw_splits(list(reversed(patients)), SplitSettings(), seed=1))
    assert not first.equals(draw_splits(patients, SplitSettings(), seed=2))
    more = draw_splits(patients, SplitSettings(n_splits=8), seed=1)
    assert more[first.columns].equals(first)


def test_splits_refuse_bad_settings_and_too_few_patients():
    with pytest.raises(ValueError, match="must be < 1"):
        SplitSettings(0.6, 0.5)
    with pytest.raises(ValueError, match="positive integer"):
        SplitSettings(n_splits=0)
    with pytest.raises(ValueError, match="unknown setting"):
        SplitSettings.from_config({"folds": 3})
    with pytest.raises(ValueError, match="leave no training patient"):
        draw_splits(["A", "B"], SplitSettings(0.5, 0.4), seed=0)


def test_file_is_byte_identical_for_the_same_seed_and_readable(tmp_path):
    qc = qc_table(40)
    write_qc_table(qc, tmp_path / "qc.tsv")
    config = {"test_fraction": 0.1, "val_fraction": 0.1, "n_splits": 3}
    make_splits_file(tmp_path / "qc.tsv", config, 42, tmp_path / "a.tsv")
    make_splits_file(tmp_path / "qc.tsv", config, 42, tmp_path / "b.tsv")
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    table = read_splits(tmp_path / "a.tsv")
    assert table["test"].dtype == bool and table["test"].sum() == 4  # round(0.1 * 39) = 4
    assert "P003" not in set(table["patient_id"]) and len(table) == 39
    header = (tmp_path / "a.tsv").read_text().splitlines()[0]
    assert header == "patient_id\ttest\tsplit_0\tsplit_1\tsplit_2"


def test_traits_do_not_change_the_splits(tmp_path):
    """Splits come from the QC table alone; every trait's slide sets share the same test patients."""
    qc = qc_table(50)
    write_qc_table(qc, tmp_path / "qc.tsv")
    config = {"test_fraction": 0.1, "val_fraction": 0.1, "n_splits": 2}
    splits = make_splits_file(tmp_path / "qc.tsv", config, 7, tmp_path / "splits.tsv")
    rng = np.random.default_rng(0)
    patients = passing_patients(qc)
    labels = pd.concat(
        [
            label_trait(pd.Series(rng.normal(size=len(patients)), index=patients), trait, LabelSettings())
            for trait in ("A", "B", "C")
        ],
        ignore_index=True,
    )
    test_set = set(splits.loc[splits["test"], "patient_id"])
    for trait in ("A", "B", "C"):
        for split in (0, 1):
            sets = trait_slide_sets(labels, splits, qc, trait, split)
            in_test = set(sets.loc[sets["role"] == "test", "patient_id"])
            assert in_test <= test_set
            trained = set(sets.loc[sets["role"].isin(["train", "val"]), "patient_id"])
            assert not trained & test_set
    make_splits_file(tmp_path / "qc.tsv", config, 7, tmp_path / "again.tsv")
    assert (tmp_path / "again.tsv").read_bytes() == (tmp_path / "splits.tsv").read_bytes()


def test_read_splits_is_strict_and_test_patients_needs_parsed_flags(tmp_path):
    path = tmp_path / "splits.tsv"
    path.write_text("patient_id\ttest\tsplit_0\n007\tTrue\ttest\nP2\tFalse\ttrain\nP3\tFalse\tval\n")
    table = read_splits(path)
    assert held_out_patients(table) == {"007"}
    with pytest.raises(TypeError, match="read_splits"):
        held_out_patients(table.astype({"test": str}))
    for bad, message in (
        ("007\tyes\ttest", "value\\(s\\) \\['yes'\\]"),
        ("007\tTrue\tval", "disagrees"),
        ("007\tTrue\ttest\n007\tTrue\ttest", "repeat"),
        ("007\tTrue\tholdout", "holdout"),
    ):
        path.write_text("patient_id\ttest\tsplit_0\n" + bad + "\n")
        with pytest.raises(ValueError, match=message):
            read_splits(path)
