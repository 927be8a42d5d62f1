"""Survival statistics a reviewer checks: censoring and HTI = 0 switches, categorical-stage Cox with its PH test,
group rank tests against scipy, Figure 6 on the real cBioPortal BRCA patient table, trait choice by validation AUC."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import proportional_hazard_test
from scipy.stats import kruskal, mannwhitneyu

from test_survival import _cohort
from workflow_scripts.analysis.cox import cox_models, pooled_stages, stage_category
from workflow_scripts.analysis.group_tests import Panel, clinical_panels, group_test, group_test_table
from workflow_scripts.analysis.survival import (
    SurvivalSettings,
    analysis_cohort,
    censor_at,
    choose_by_score,
    drop_zero_hti,
    validation_scores,
)
from workflow_scripts.analysis.survival_figures import plot_distributions, tick_labels
from workflow_scripts.inputs.clinical import clinical_from_cbioportal, read_cbioportal_table

BRCA_PATIENTS = "tcga/brca_tcga_pan_can_atlas_2018.data_clinical_patient.txt"


def test_censor_at_the_cap_hand_computed():
    cohort = pd.DataFrame({"os_months": [5.0, 10.0, 120.0, 130.0, 200.0, 119.9], "os_event": [1, 0, 1, 1, 0, 1]})
    censored = censor_at(cohort, 120.0)
    # t > 120 becomes 120 and censored; t = 120 keeps its death; shorter times are untouched
    assert censored["os_months"].tolist() == [5.0, 10.0, 120.0, 120.0, 120.0, 119.9]
    assert censored["os_event"].tolist() == [1, 0, 1, 0, 0, 1]
    assert cohort["os_months"].tolist()[3] == 130.0  # the input is not modified


def test_drop_zero_hti_drops_exactly_the_zero_patients(caplog):
    cohort = pd.DataFrame({"patient_id": ["a", "b", "c", "d", "e"], "hti": [0.0, 1e-9, 0.0, 0.5, np.nan],
                           "os_months": [1.0, 2.0, 3.0, 4.0, 5.0], "os_event": [1, 0, 1, 0, 1]})
    kept, dropped = drop_zero_hti(cohort)
    assert dropped == ["a", "c"] and kept["patient_id"].tolist() == ["b", "d", "e"]
    with caplog.at_level(logging.INFO):
        result = analysis_cohort(cohort, SurvivalSettings(drop_zero_hti=True))
    assert result["patient_id"].tolist() == ["b", "d"]  # e has no HTI at all
    assert "drop_zero_hti left out 2 patient(s)" in caplog.text and "1 patient(s) without an HTI" in caplog.text
    assert analysis_cohort(cohort, SurvivalSettings())["patient_id"].tolist() == ["a", "b", "c", "d"]


def test_settings_from_config_check_their_keys():
    settings = SurvivalSettings.from_config({"thresholds": [{"low_max": 0.3, "high_min": 0.7}], "max_months": 120,
                                             "drop_zero_hti": True})
    assert settings == SurvivalSettings(((0.3, 0.7),), 120.0, True)
    assert SurvivalSettings.from_config({}).thresholds == ((0.5, 0.5), (0.3, 0.7))
    with pytest.raises(ValueError, match="max_month"):
        SurvivalSettings.from_config({"max_month": 120})
    with pytest.raises(ValueError, match="max_months"):
        SurvivalSettings(max_months=0)
    with pytest.raises(ValueError, match="high_min 0.4 is below low_max 0.6"):
        SurvivalSettings(((0.6, 0.4),))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Stage IIB", "II"), ("STAGE IIIC", "III"), ("Stage I", "I"), ("IA", "I"), ("STAGE IV", "IV"), ("Stage X", ""),
     ("", ""), (np.nan, ""), (3, "III"), ("stage 2", "II"), ("Stage Tis", "")],
)
def test_stage_is_collapsed_to_four_categories(value, expected):
    assert stage_category(value) == expected


def test_sparse_stages_are_pooled_towards_the_middle():
    # I: 2 patients, II: 6, III: 5, IV: 1 -> I joins II (first sparse level), then IV joins III
    stage = pd.Series(["I"] * 2 + ["II"] * 6 + ["III"] * 5 + ["IV"] + [""])
    pooled, notes = pooled_stages(stage, 5)
    assert pooled.tolist() == ["I-II"] * 8 + ["III-IV"] * 6 + [""]
    assert notes == ["stage I (2 patients) pooled with II", "stage IV (1 patients) pooled with III"]
    # a middle level goes to its smaller neighbour: II (3) between I (9) and III (6) joins III
    pooled, _ = pooled_stages(pd.Series(["I"] * 9 + ["II"] * 3 + ["III"] * 6), 5)
    assert pooled.tolist() == ["I"] * 9 + ["II-III"] * 9


def test_adjusted_cox_with_one_stage_iv_patient_fits_the_pooled_model():
    cohort = _cohort(60, seed=5)
    cohort["stage"] = ["Stage I"] * 20 + ["Stage IIA"] * 20 + ["Stage IIIB"] * 19 + ["Stage IV"]
    adjusted = cox_models(cohort).set_index(["model", "covariate"]).loc["hti+age+stage"]
    assert set(adjusted.index) == {"hti", "age", "stage_II", "stage_III-IV"}
    assert adjusted["exclusions"].iloc[0] == "stage IV (1 patients) pooled with III"
    frame = pd.DataFrame({"os_months": cohort["os_months"], "os_event": cohort["os_event"],
                          "hti": cohort["hti"], "age": cohort["age"].astype(float),
                          "stage_II": [0.0] * 20 + [1.0] * 20 + [0.0] * 20,
                          "stage_III-IV": [0.0] * 40 + [1.0] * 20})
    fitter = CoxPHFitter().fit(frame, "os_months", "os_event")
    assert adjusted.loc["stage_III-IV", "hr"] == pytest.approx(np.exp(fitter.params_["stage_III-IV"]), rel=1e-5)
    assert adjusted.loc["hti", "hr"] == pytest.approx(np.exp(fitter.params_["hti"] / 10), rel=1e-5)


def test_adjusted_cox_uses_stage_categories_and_excludes_unknown_stage():
    cohort = _cohort(120, seed=4)
    cohort.loc[:9, "stage"] = ["Stage X"] * 4 + [""] * 6  # 10 unknown stages
    cohort.loc[10:12, "age"] = np.nan  # 3 unknown ages
    cox = cox_models(cohort).set_index(["model", "covariate"])
    adjusted = cox.loc["hti+age+stage"]
    assert set(adjusted.index) == {"hti", "age", "stage_II", "stage_III", "stage_IV"}
    assert (adjusted["n"] == 107).all() and (adjusted["excluded"] == 13).all()
    assert adjusted["exclusions"].iloc[0] == "age unknown: 3; stage unknown: 10"
    # the same model by hand: complete cases, per-unit HTI, stage I as reference
    data = cohort.iloc[13:].reset_index(drop=True)
    stage = data["stage"].str.extract(r"(IV|III|II|I)", expand=False)
    frame = pd.DataFrame({"os_months": data["os_months"], "os_event": data["os_event"], "hti": data["hti"],
                          "age": data["age"].astype(float)})
    for level in ("II", "III", "IV"):
        frame[f"stage_{level}"] = (stage == level).astype(float)
    fitter = CoxPHFitter().fit(frame, "os_months", "os_event")
    assert adjusted.loc["hti", "hr"] == pytest.approx(np.exp(fitter.params_["hti"] / 10), rel=1e-5)
    assert adjusted.loc["stage_IV", "hr"] == pytest.approx(np.exp(fitter.params_["stage_IV"]), rel=1e-5)
    assert adjusted.loc["age", "p"] == pytest.approx(fitter.summary.loc["age", "p"], rel=1e-5)
    assert adjusted.loc["hti", "concordance"] == pytest.approx(fitter.concordance_index_)
    assert adjusted.loc["hti", "events"] == frame["os_event"].sum()
    primary = cox.loc[("hti", "hti")]
    assert (primary["n"], primary["excluded"], primary["role"]) == (120, 0, "primary")


def test_cox_rows_carry_the_proportional_hazards_test():
    cohort = _cohort(90, seed=2)
    row = cox_models(cohort).set_index(["model", "covariate"]).loc[("hti", "hti")]
    frame = cohort[["os_months", "os_event", "hti"]].assign(hti=cohort["hti"] * 10)
    fitter = CoxPHFitter().fit(frame, "os_months", "os_event")
    expected = proportional_hazard_test(fitter, frame, time_transform="rank").summary.loc["hti"]
    assert row["ph_statistic"] == pytest.approx(expected["test_statistic"], rel=1e-6)
    assert row["ph_p"] == pytest.approx(expected["p"], rel=1e-6)
    assert 0 < row["ph_p"] < 1


def test_small_cohort_keeps_failed_rows():
    cohort = _cohort(2, seed=0)  # a model of k covariates needs k + 2 patients
    cox = cox_models(cohort)
    assert cox["hr"].isna().all() and (cox["note"] == "only 2 patients").all()
    assert cox["n"].tolist()[0] == 2 and cox["excluded"].tolist()[0] == 0 and cox["role"].tolist()[0] == "primary"


def test_group_tests_match_scipy_and_name_the_degenerate_cases():
    two = {"negative": np.array([0.1, 0.4, 0.35, 0.8]), "positive": np.array([0.6, 0.9, 0.7])}
    row = group_test(two)
    expected = mannwhitneyu(two["negative"], two["positive"], alternative="two-sided")
    assert (row["test"], row["statistic"], row["p_value"]) == ("mann_whitney_u", expected.statistic,
                                                                pytest.approx(expected.pvalue))
    # U counts pairs with negative > positive: 0.8 beats 0.6 and 0.7 -> 2 (hand count)
    assert row["statistic"] == 2
    three = two | {"other": np.array([0.2, 0.25])}
    row = group_test(three)
    assert row["test"] == "kruskal_wallis"
    assert row["p_value"] == pytest.approx(kruskal(*three.values()).pvalue)
    assert np.isnan(group_test({"a": np.array([0.1, 0.2])})["p_value"])
    assert group_test({"a": np.ones(3), "b": np.ones(2)})["note"] == "all HTI values are tied"
    table = group_test_table([Panel("6", "p", "v", two, excluded=4)])
    assert table.iloc[0][["groups", "n_per_group", "excluded"]].tolist() == ["negative;positive", "4;3", 4]


def test_er_groups_are_positive_and_negative_only():
    cohort = pd.DataFrame({"hti": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, np.nan],
                           "er_status": ["positive", "Negative", "", "indeterminate", "positive", "negative", "x"],
                           "subtype": ["LumA", "", "Basal", "LumA", "Her2", "LumA", "LumA"]})
    er, subtype = clinical_panels(cohort)
    assert {name: values.tolist() for name, values in er.groups.items()} == {"negative": [0.2, 0.6],
                                                                           "positive": [0.1, 0.5]}
    assert er.excluded == 2  # unknown and indeterminate; the NaN-HTI patient is not counted
    assert list(subtype.groups) == ["Basal", "Her2", "LumA"] and subtype.excluded == 1
    assert tick_labels(subtype.groups) == ["Basal\n(n=1)", "Her2\n(n=1)", "LumA\n(n=3)"]


def test_figure6_on_the_cbioportal_brca_patients(shared_data, tmp_path):
    path = shared_data / BRCA_PATIENTS
    if not path.exists():
        pytest.skip(f"{path} is absent")
    clinical = clinical_from_cbioportal(read_cbioportal_table(path), path)
    rng = np.random.default_rng(7)
    cohort = clinical.sample(400, random_state=1).assign(hti=lambda frame: rng.random(len(frame)))
    er, subtype = clinical_panels(cohort)
    # n per group by hand: the SUBTYPE values of the sampled patients, blanks left out
    known = cohort[cohort["subtype"] != ""]
    counts = known["subtype"].value_counts().sort_index()
    assert {name: len(values) for name, values in subtype.groups.items()} == counts.to_dict()
    assert subtype.excluded == (cohort["subtype"] == "").sum() and len(counts) >= 4
    assert set(counts.index) <= {"BRCA_LumA", "BRCA_LumB", "BRCA_Basal", "BRCA_Her2", "BRCA_Normal"}
    by_hand = [known.loc[known["subtype"] == name, "hti"].to_numpy() for name in counts.index]
    assert group_test(subtype.groups)["p_value"] == pytest.approx(kruskal(*by_hand).pvalue)
    assert not er.groups and er.excluded == len(cohort)  # this patient table has no ER status column
    plot_distributions([er, subtype], "HTI", tmp_path / "figure6.png")
    assert (tmp_path / "figure6.png").read_bytes()[:4] == b"\x89PNG"


def test_validation_scores_average_the_chosen_members():
    members = pd.DataFrame({"trait": ["A", "A", "A", "B", "B", "C"], "split": [0, 1, 2, 0, 1, 0],
                            "best_val_slide_auc": [0.9, 0.7, 0.99, np.nan, 0.6, 0.8],
                            "chosen": [True, True, False, True, True, False]})
    scores = validation_scores(members)
    # A: (0.9 + 0.7) / 2 = 0.8 (0.99 not chosen); B: the mean skips the undefined AUC -> 0.6; C: no chosen member
    assert scores["A"] == pytest.approx(0.8) and scores["B"] == pytest.approx(0.6) and np.isnan(scores["C"])
    assert choose_by_score(scores, n=3) == ["A", "B", "C"]
