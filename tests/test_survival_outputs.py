"""The survival job called directly: its tables equal the package's numbers and every figure is written."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from lifelines.statistics import logrank_test

from test_survival import _cohort, clinical_columns
from workflow_scripts.analysis.cox import cox_models
from workflow_scripts.analysis.ensemble import MEMBER_COLUMNS, write_members
from workflow_scripts.analysis.evaluation_tables import TABLE1_COLUMNS
from workflow_scripts.analysis.survival import SurvivalSettings, logrank_table, survival_cohort
from workflow_scripts.analysis.survival_figures import threshold_name
from workflow_scripts.analysis.survival_outputs import SurvivalOutputs, read_traits, write_chosen_traits, write_survival
from workflow_scripts.common.tables import read_table, write_tsv
from workflow_scripts.inputs.clinical import write_clinical
from workflow_scripts.learning.labels import write_labels
from workflow_scripts.learning.splits import write_splits

THRESHOLDS = [(0.5, 0.5), (0.3, 0.7)]


def _inputs(tmp_path, n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """HTI, clinical, labels, splits and traits files of a small cohort; returns the cohort and the labels."""
    cohort = _cohort(n)
    write_tsv(cohort[["slide_id", "patient_id", "hti"]], tmp_path / "hti.tsv")
    write_clinical(clinical_columns(cohort), tmp_path / "clinical.tsv")
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


def _write(tmp_path, settings: SurvivalSettings = SurvivalSettings(THRESHOLDS)) -> tuple[pd.DataFrame, SurvivalOutputs]:
    """Run the survival job on the files of _inputs; returns the log-rank table and where it wrote."""
    out = tmp_path / "survival"
    outputs = SurvivalOutputs(out / "logrank.tsv", out / "cox.tsv", out / "cohort.tsv", out / "figures",
                              out / "group_tests.tsv")
    table = write_survival(tmp_path / "traits.tsv", tmp_path / "hti.tsv", tmp_path / "clinical.tsv",
                           [tmp_path / "A.tsv", tmp_path / "B.tsv"], tmp_path / "splits.tsv", settings, outputs)
    return table, outputs


def test_write_survival_tables_and_figures(tmp_path):
    cohort, labels = _inputs(tmp_path)
    table, outputs = _write(tmp_path)
    # patients: every index % 4 != 0 is OOD for both traits, plus the test patients (index % 8 == 0)
    patients = {patient for index, patient in enumerate(cohort["patient_id"]) if index % 4 or index % 8 == 0}
    expected = survival_cohort(cohort[["slide_id", "patient_id", "hti"]], cohort.drop(columns=["slide_id", "hti"]),
                               patients)
    written = read_table(outputs.cohort)
    assert sorted(written["patient_id"]) == sorted(patients)
    assert {"expression_A", "median_label_A", "expression_B", "median_label_B"} <= set(written.columns)
    logrank = read_table(outputs.logrank)
    hti_rows = logrank.query("comparison == 'hti'").reset_index(drop=True)
    direct = logrank_table(expected, ["A", "B"], THRESHOLDS)
    np.testing.assert_allclose(hti_rows["p_value"], direct["p_value"])
    np.testing.assert_allclose(hti_rows["test_statistic"], direct["test_statistic"])
    assert (table["comparison"] == "expression_median").sum() == 2 and table["traits"].tolist()[-2:] == ["A", "B"]
    assert set(logrank["cohort"]) == {"hti_survival"}
    assert logrank["role"].tolist() == ["secondary", "secondary", "reference", "reference"]
    cox = read_table(outputs.cox)
    assert cox["hr"].to_numpy() == pytest.approx(cox_models(expected)["hr"].to_numpy())
    assert cox.loc[cox["model"] == "hti", "role"].tolist() == ["primary"]
    groups = read_table(outputs.group_tests)
    assert groups["panel"].tolist() == ["HTI by A expression", "HTI by B expression", "HTI by ER status",
                                        "HTI by PAM50 subtype"]
    er = groups.set_index("panel").loc["HTI by ER status"]
    er_counts = expected["er_status"].str.lower().value_counts()
    assert er["n_per_group"] == f"{er_counts['negative']};{er_counts['positive']}" and er["test"] == "mann_whitney_u"
    figures = {path.name for path in (outputs.figures).iterdir()}
    assert figures == {f"km_hti_{threshold_name(low, high)}.png" for low, high in THRESHOLDS} | {
        "figure5a_A.png", "figure5a_B.png", "figure5b.png", "figure6.png"}


def test_figure5a_cohort_is_the_hti_survival_cohort(tmp_path):
    """Bulk-expression log-rank rows count exactly the HTI cohort's patients, split by their median label."""
    cohort, labels = _inputs(tmp_path)
    _, outputs = _write(tmp_path)
    written = read_table(outputs.cohort)
    logrank = read_table(outputs.logrank).set_index("traits")
    for trait in ("A", "B"):
        row = logrank.loc[trait]
        assert row["n_low"] + row["n_high"] == len(written)
        mine = labels[(labels["trait"] == trait) & labels["patient_id"].isin(written["patient_id"])]
        assert (row["n_low"], row["n_high"]) == ((mine["median_label"] == 0).sum(), (mine["median_label"] == 1).sum())
        assert row["expression_median"] == pytest.approx(np.median(labels.loc[labels["trait"] == trait, "value"]))
        low = written[written[f"median_label_{trait}"] == 0]
        high = written[written[f"median_label_{trait}"] == 1]
        expected = logrank_test(low["os_months"], high["os_months"], low["os_event"], high["os_event"])
        assert row["p_value"] == pytest.approx(expected.p_value)


def test_switches_censor_and_drop_zero_hti_in_the_job(tmp_path, caplog):
    cohort, _ = _inputs(tmp_path)
    hti = cohort[["slide_id", "patient_id", "hti"]].copy()
    hti.loc[[1, 2, 3], "hti"] = 0.0  # three OOD patients with HTI exactly 0
    write_tsv(hti, tmp_path / "hti.tsv")
    cap = float(np.median(cohort["os_months"]))
    with caplog.at_level(logging.INFO):
        _, outputs = _write(tmp_path, SurvivalSettings(THRESHOLDS, max_months=cap, drop_zero_hti=True))
    written = read_table(outputs.cohort).set_index("patient_id")
    assert not {"p1", "p2", "p3"} & set(written.index) and "drop_zero_hti left out 3 patient(s)" in caplog.text
    source = cohort.set_index("patient_id").loc[written.index]
    over = source["os_months"] > cap  # the TSV keeps 10 significant digits: compare times approximately
    assert over.sum() > 3 and written.loc[over, "os_months"].to_numpy() == pytest.approx(np.full(over.sum(), cap))
    assert (written.loc[over, "os_event"] == 0).all()
    assert written.loc[~over, "os_months"].to_numpy() == pytest.approx(source.loc[~over, "os_months"].to_numpy())
    assert (written.loc[~over, "os_event"] == source.loc[~over, "os_event"]).all()
    assert f"{int(over.sum())} patient(s) censored at max_months" in caplog.text


def _members(rows: list[tuple[str, int, float, bool]]) -> pd.DataFrame:
    """An ensemble_members table of (trait, split, best_val_slide_auc, chosen) rows, other columns filled in."""
    frame = pd.DataFrame(rows, columns=["trait", "split", "best_val_slide_auc", "chosen"])
    frame["rank"] = frame.groupby("trait")["best_val_slide_auc"].rank(ascending=False, method="first").astype(int)
    filler = {"val_loss_at_best": 0.5, "decided_by": "val_slide_auc"}
    return frame.assign(**{column: filler[column] for column in MEMBER_COLUMNS if column not in frame})


def test_write_chosen_traits(tmp_path):
    table1 = pd.DataFrame({column: 0.5 for column in TABLE1_COLUMNS[1:]}, index=range(3))
    write_tsv(table1.assign(trait=["A", "B", "C"], test_auc_ensemble=[0.6, 0.9, 0.8]), tmp_path / "table1.tsv")
    # validation AUCs: mean over chosen members A (0.9+0.8)/2 = 0.85, B 0.7 (0.99 not chosen), C (0.8+0.7)/2 = 0.75
    write_members(_members([("A", 0, 0.9, True), ("A", 1, 0.8, True), ("B", 0, 0.7, True), ("B", 1, 0.99, False),
                            ("C", 0, 0.8, True), ("C", 1, 0.7, True)]), tmp_path / "members.tsv")
    paths = (tmp_path / "table1.tsv", tmp_path / "members.tsv")
    assert write_chosen_traits(*paths, None, 2, "test_auc", tmp_path / "traits.tsv") == ["B", "C"]
    assert read_traits(tmp_path / "traits.tsv") == ["B", "C"]
    assert write_chosen_traits(*paths, None, 2, "validation_auc", tmp_path / "traits.tsv") == ["A", "C"]
    written = read_table(tmp_path / "traits.tsv")
    assert written["score"].tolist() == pytest.approx([0.85, 0.75]) and set(written["choose_by"]) == {"validation_auc"}
    assert write_chosen_traits(*paths, ["C", "A"], 2, "validation_auc", tmp_path / "traits.tsv") == ["C", "A"]
    assert set(read_table(tmp_path / "traits.tsv")["choose_by"]) == {"configured"}
    with pytest.raises(ValueError, match="choose_by"):
        write_chosen_traits(*paths, None, 2, "auc", tmp_path / "traits.tsv")
