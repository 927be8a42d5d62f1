"""The survival job called directly: its tables equal the package's numbers and every figure is written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_survival import _cohort
from workflow_scripts.analysis.evaluation_tables import TABLE1_COLUMNS
from workflow_scripts.analysis.survival import cox_models, logrank_table, survival_cohort
from workflow_scripts.analysis.survival_figures import threshold_name
from workflow_scripts.analysis.survival_outputs import SurvivalOutputs, read_traits, write_chosen_traits, write_survival
from workflow_scripts.common.tables import read_table, write_tsv
from workflow_scripts.learning.labels import write_labels
from workflow_scripts.learning.splits import write_splits

THRESHOLDS = [{"low_max": 0.5, "high_min": 0.5}, {"low_max": 0.3, "high_min": 0.7}]


def _inputs(tmp_path, n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """HTI, clinical, labels, splits and traits files of a small cohort; returns the cohort and the labels."""
    cohort = _cohort(n)
    write_tsv(cohort[["slide_id", "patient_id", "hti"]], tmp_path / "hti.tsv")
    write_tsv(cohort.drop(columns=["slide_id", "hti"]), tmp_path / "clinical.tsv")
    rng = np.random.default_rng(5)
    rows = []
    for trait in ("A", "B"):
        percentile = rng.permutation(np.linspace(1, 99, n))
        for index, patient in enumerate(cohort["patient_id"]):
            train = index % 4 == 0
            rows.append({"patient_id": patient, "trait": trait, "value": percentile[index],
                         "percentile": percentile[index], "label": int(percentile[index] >= 50) if train else np.nan,
                         "set": "train_pool" if train else "ood_near", "median_label": int(percentile[index] >= 50)})
    labels = pd.DataFrame(rows)
    for trait in ("A", "B"):
        write_labels(labels[labels["trait"] == trait], tmp_path / f"{trait}.tsv")
    write_splits(pd.DataFrame({"patient_id": cohort["patient_id"], "test": [index % 8 == 0 for index in range(n)]}),
                 tmp_path / "splits.tsv")
    write_tsv(pd.DataFrame({"trait": ["A", "B"]}), tmp_path / "traits.tsv")
    return cohort, labels


def test_write_survival_tables_and_figures(tmp_path):
    cohort, labels = _inputs(tmp_path)
    out = tmp_path / "survival"
    outputs = SurvivalOutputs(out / "logrank.tsv", out / "cox.tsv", out / "cohort.tsv", out / "figures")
    table = write_survival(tmp_path / "traits.tsv", tmp_path / "hti.tsv", tmp_path / "clinical.tsv",
                           [tmp_path / "A.tsv", tmp_path / "B.tsv"], tmp_path / "splits.tsv", THRESHOLDS, outputs)
    # patients: every index % 4 != 0 is OOD for both traits, plus the test patients (index % 8 == 0)
    patients = {patient for index, patient in enumerate(cohort["patient_id"]) if index % 4 or index % 8 == 0}
    expected = survival_cohort(cohort[["slide_id", "patient_id", "hti"]], cohort.drop(columns=["slide_id", "hti"]),
                               patients)
    written = read_table(outputs.cohort)
    assert sorted(written["patient_id"]) == sorted(patients)
    hti_rows = read_table(outputs.logrank).query("comparison == 'hti'").reset_index(drop=True)
    direct = logrank_table(expected, ["A", "B"], THRESHOLDS)
    np.testing.assert_allclose(hti_rows["p_value"], direct["p_value"])
    np.testing.assert_allclose(hti_rows["test_statistic"], direct["test_statistic"])
    assert (table["comparison"] == "expression_label").sum() == 2 and table["traits"].tolist()[-2:] == ["A", "B"]
    cox = read_table(outputs.cox)
    assert cox["hr"].to_numpy() == pytest.approx(cox_models(expected)["hr"].to_numpy())
    figures = {path.name for path in (out / "figures").iterdir()}
    assert figures == {f"km_hti_{threshold_name(t['low_max'], t['high_min'])}.png" for t in THRESHOLDS} | {
        "figure5a_A.png", "figure5a_B.png", "figure5b.png", "figure6.png"}


def test_write_chosen_traits(tmp_path):
    table1 = pd.DataFrame({column: 0.5 for column in TABLE1_COLUMNS[1:]}, index=range(3))
    write_tsv(table1.assign(trait=["A", "B", "C"], test_auc_ensemble=[0.6, 0.9, 0.8]), tmp_path / "table1.tsv")
    assert write_chosen_traits(tmp_path / "table1.tsv", None, 2, tmp_path / "traits.tsv") == ["B", "C"]
    assert read_traits(tmp_path / "traits.tsv") == ["B", "C"]
    assert write_chosen_traits(tmp_path / "table1.tsv", ["C", "A"], 2, tmp_path / "traits.tsv") == ["C", "A"]
