"""Survival cohort rules, log-rank and Cox against lifelines called directly, degenerate groups, trait choice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test

from test_evaluate import _cohort as prediction_cohort
from workflow_scripts.analysis.cox import cox_models
from workflow_scripts.analysis.group_tests import Panel, category_groups
from workflow_scripts.analysis.survival import (
    choose_by_score,
    logrank_table,
    one_slide_per_patient,
    survival_cohort,
    survival_patients,
    table1_test_aucs,
)
from workflow_scripts.analysis.survival_figures import plot_distributions, plot_km
from workflow_scripts.common.tables import read_table
from workflow_scripts.inputs.clinical import CLINICAL_COLUMNS, TEXT_COLUMNS, write_clinical
from workflow_scripts.learning.labels import write_labels
from workflow_scripts.learning.predictions import read_predictions
from workflow_scripts.learning.run_outputs import write_history
from workflow_scripts.learning.splits import write_splits
from workflow_scripts.slides.qc_table import write_qc_table
from workflow_scripts.slides.tilestore import write_tile_store

UUID = "0a1b2c3d-0000-4000-8000-00000000000{}"


def test_choose_traits_top_two_or_configured():
    table1 = pd.DataFrame({"trait": ["A", "B", "C", "D"], "test_auc_ensemble": [0.7, np.nan, 0.9, 0.7]})
    scores = table1_test_aucs(table1)
    assert choose_by_score(scores) == ["C", "A"]
    assert choose_by_score(scores, n=4) == ["C", "A", "D", "B"]  # ties by name, NaN last
    assert choose_by_score(scores, ["D", "B"]) == ["D", "B"]
    with pytest.raises(ValueError, match="E"):
        choose_by_score(scores, ["A", "E"])


def test_dx1_or_lowest_dx_number_is_kept():
    table = pd.DataFrame(
        {
            "slide_id": [
                f"TCGA-AA-0001-01Z-00-DX2.{UUID.format(1)}",
                f"TCGA-AA-0001-01Z-00-DX1.{UUID.format(2)}",
                f"TCGA-AA-0002-01Z-00-DX3.{UUID.format(3)}",
                f"TCGA-AA-0002-01Z-00-DX2.{UUID.format(4)}",
                f"TCGA-AA-0003-01A-01-TS1.{UUID.format(5)}",
                f"TCGA-AA-0003-01Z-00-DX4.{UUID.format(6)}",
                "synthetic-b", "synthetic-a",
            ],
            "patient_id": ["TCGA-AA-0001"] * 2 + ["TCGA-AA-0002"] * 2 + ["TCGA-AA-0003"] * 2 + ["syn"] * 2,
        }
    )
    kept = dict(zip(one_slide_per_patient(table)["patient_id"], one_slide_per_patient(table)["slide_id"]))
    assert kept["TCGA-AA-0001"].startswith("TCGA-AA-0001-01Z-00-DX1")
    assert kept["TCGA-AA-0002"].startswith("TCGA-AA-0002-01Z-00-DX2")
    assert kept["TCGA-AA-0003"].startswith("TCGA-AA-0003-01Z-00-DX4")
    assert kept["syn"] == "synthetic-a"


def test_patients_are_test_plus_ood_for_every_trait():
    labels = pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3", "p4"] * 2,
            "trait": ["A"] * 4 + ["B"] * 4,
            "set": ["train_pool", "ood_near", "ood_far", "ood_near", "train_pool", "ood_far", "train_pool", "ood_near"],
        }
    )
    # p2 and p4 are OOD for both traits; p3 only for A; p1 is a test patient
    assert survival_patients(labels, {"p1"}, ["A", "B"]) == {"p1", "p2", "p4"}


def _cohort(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hti = rng.random(n)
    months = rng.exponential(40 / (1 + 2 * hti))
    return pd.DataFrame(
        {
            "slide_id": [f"s{index}" for index in range(n)], "patient_id": [f"p{index}" for index in range(n)],
            "hti": hti, "os_months": months, "os_event": (rng.random(n) < 0.7).astype(int),
            "age": rng.integers(35, 85, n), "stage": rng.choice(["Stage I", "Stage IIA", "Stage III", "Stage IV"], n),
            "subtype": rng.choice(["LumA", "Basal"], n), "er_status": rng.choice(["Positive", "Negative"], n),
        }
    )


def clinical_columns(cohort: pd.DataFrame) -> pd.DataFrame:
    """The cohort's clinical.tsv columns (CLINICAL_COLUMNS), those it lacks empty as for an unknown value."""
    table = cohort.reindex(columns=CLINICAL_COLUMNS)
    return table.fillna({column: "" for column in TEXT_COLUMNS})


def test_logrank_matches_lifelines():
    cohort = _cohort()
    table = logrank_table(cohort, ["A", "B"], [(0.5, 0.5), (0.3, 0.7)])
    for _, row in table.iterrows():
        low = cohort[cohort["hti"] <= row["low_max"]]
        high = cohort[cohort["hti"] > row["high_min"]]
        expected = logrank_test(low["os_months"], high["os_months"], low["os_event"], high["os_event"])
        assert row["p_value"] == pytest.approx(expected.p_value)
        assert row["test_statistic"] == pytest.approx(expected.test_statistic)
        assert (row["n_low"], row["n_high"]) == (len(low), len(high))
        assert row["events_high"] == high["os_event"].sum()
    assert table["traits"].tolist() == ["A+B", "A+B"]
    assert table["role"].tolist() == ["secondary", "secondary"] and set(table["cohort"]) == {"hti_survival"}


def test_degenerate_groups_give_nan_with_reason():
    cohort = _cohort(10).assign(hti=0.1)
    row = logrank_table(cohort, ["A", "B"], [(0.5, 0.5)]).iloc[0]
    assert np.isnan(row["p_value"]) and row["note"] == "a group is empty" and row["n_high"] == 0
    cox = cox_models(cohort)
    assert cox["hr"].isna().all() and (cox["note"] != "").all()


def test_cox_matches_lifelines_and_adjusts():
    cohort = _cohort(80, seed=1)
    cox = cox_models(cohort).set_index(["model", "covariate"])
    fitter = CoxPHFitter().fit(cohort[["os_months", "os_event", "hti"]], "os_months", "os_event")
    primary = cox.loc[("hti", "hti")]
    # per 0.1 HTI: exp(coef / 10) of the per-unit fit, the CI from coef +- z * se divided by 10 (hand check)
    coef, se = fitter.summary.loc["hti", "coef"], fitter.summary.loc["hti", "se(coef)"]
    assert primary["coef"] == pytest.approx(coef / 10, rel=1e-5)
    assert primary["hr"] == pytest.approx(np.exp(coef / 10), rel=1e-5)
    assert primary["hr_ci_low"] == pytest.approx(np.exp((coef - 1.959964 * se) / 10), rel=1e-5)
    assert primary["hr_ci_high"] == pytest.approx(np.exp((coef + 1.959964 * se) / 10), rel=1e-5)
    assert primary["p"] == pytest.approx(fitter.summary.loc["hti", "p"], rel=1e-5)
    assert primary["concordance"] == pytest.approx(fitter.concordance_index_)
    assert (primary["role"], primary["unit"], primary["n"], primary["excluded"]) == ("primary", "per 0.1 HTI", 80, 0)
    assert primary["events"] == cohort["os_event"].sum()
    assert ("hti+age+stage", "stage_II") in cox.index and ("hti+age+stage", "stage_IV") in cox.index
    assert cox.loc[("hti+age+stage", "hti"), "n"] == 80
    assert cox.loc[("hti+age+stage", "stage_III"), "unit"] == "stage III vs I"


def test_cohort_join_and_figures(tmp_path):
    cohort = _cohort(30)
    clinical = cohort[["patient_id", "os_months", "os_event", "age", "stage", "subtype", "er_status"]]
    clinical = pd.concat([clinical, pd.DataFrame({"patient_id": ["p29"], "os_months": [np.nan], "os_event": [1]})])
    hti_table = cohort[["slide_id", "patient_id", "hti"]]
    joined = survival_cohort(hti_table, clinical.iloc[:-1], {"p0", "p1", "p2", "nobody"})
    assert sorted(joined["patient_id"]) == ["p0", "p1", "p2"]
    plot_km({"low": cohort[cohort["hti"] <= 0.5], "high": cohort[cohort["hti"] > 0.5], "empty": cohort.iloc[:0]},
            "km", tmp_path / "km.png")
    er_groups, er_excluded = category_groups(cohort, "er_status")
    assert sorted(er_groups) == ["Negative", "Positive"] and er_excluded == 0
    assert sum(len(values) for values in er_groups.values()) == 30
    plot_distributions([Panel("6", "ER", "er_status", er_groups), Panel("6", "none", "absent")],
                       "HTI", tmp_path / "figure6.png")
    assert (tmp_path / "km.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "figure6.png").read_bytes()[:4] == b"\x89PNG"


SNAKEFILE = """
SCRIPTS = "{scripts}"
TRAITS = ["A", "B"]
SLIDES = {slides}
SURVIVAL = {{"thresholds": [{{"low_max": 0.5, "high_min": 0.5}}, {{"low_max": 0.3, "high_min": 0.7}}],
            "max_months": None, "drop_zero_hti": False}}
rule all:
    input: "survival/logrank.tsv", "survival/cox.tsv"
rule evaluate:
    input: predictions=expand("predictions/{{t}}", t=TRAITS),
           metrics=expand("models/{{t}}/split_{{k}}/metrics.json", t=TRAITS, k=range(3)),
           histories=expand("models/{{t}}/split_{{k}}/history.tsv", t=TRAITS, k=range(3)),
           labels=expand("labels/{{t}}.tsv", t=TRAITS), splits="splits/splits.tsv", qc="qc/slides.tsv"
    output: members="evaluation/ensemble_members.tsv", slide_scores="evaluation/slide_scores.tsv",
            table1="evaluation/table1.tsv", spearman="evaluation/spearman.tsv",
            figure_png="evaluation/figure2.png", figure_pdf="evaluation/figure2.pdf"
    params: traits=TRAITS, ensemble={{"top_k": 3, "threshold": 0.5}}, evaluation={{"bootstrap": 50, "ci": 0.95}},
            seed=42
    log: "logs/evaluate.log"
    script: SCRIPTS + "/evaluate.py"
rule choose_traits:
    input: table1="evaluation/table1.tsv", members="evaluation/ensemble_members.tsv"
    output: traits="heterogeneity/traits.tsv"
    params: traits=None, n=2, choose_by="test_auc"
    log: "logs/choose_traits.log"
    script: SCRIPTS + "/choose_traits.py"
rule cartography:
    input: predictions=expand("predictions/{{t}}", t=TRAITS), members="evaluation/ensemble_members.tsv",
           qc="qc/slides.tsv", stores=expand("tiles/{{s}}.h5", s=SLIDES)
    output: cartography=directory("cartography")
    params: traits=TRAITS, ensemble={{"top_k": 3, "threshold": 0.5}}
    log: "logs/cartography.log"
    script: SCRIPTS + "/cartography.py"
rule heterogeneity:
    input: cartography="cartography", traits="heterogeneity/traits.tsv", qc="qc/slides.tsv",
           stores=expand("tiles/{{s}}.h5", s=SLIDES)
    output: hti="heterogeneity/hti.tsv", gallery="heterogeneity/gallery.png", maps=directory("heterogeneity/maps")
    params: hta_region=2, seed=42, permutations=20, hta_log_base="combinations", map_alpha=0.35
    log: "logs/heterogeneity.log"
    script: SCRIPTS + "/heterogeneity.py"
rule survival:
    input: hti="heterogeneity/hti.tsv", clinical="survival/clinical.tsv", labels=expand("labels/{{t}}.tsv", t=TRAITS),
           splits="splits/splits.tsv", traits="heterogeneity/traits.tsv"
    output: logrank="survival/logrank.tsv", cox="survival/cox.tsv", cohort="survival/cohort.tsv",
            group_tests="survival/group_tests.tsv", figures=directory("survival/figures")
    params: survival=SURVIVAL
    log: "logs/survival.log"
    script: SCRIPTS + "/survival.py"
"""


@pytest.mark.slow
def test_scripts_run_under_snakemake(tmp_path, repo_root):
    """The five thin scripts, chained by a real Snakemake run on a small cohort, write every contracted output."""
    prediction_dirs, labels, splits, qc, metrics = prediction_cohort(tmp_path, n_patients=8)
    slides = qc.loc[qc["status"] == "pass", "slide_id"].tolist()
    for slide_id in slides:
        coords = read_predictions(prediction_dirs["A"] / f"{slide_id}.h5").coords
        order = np.random.default_rng(len(slide_id)).permutation(len(coords))  # store order differs from predictions
        grid = (coords[order] // 512).astype(np.int32)
        attrs = {"tile_px": 4, "mpp": 0.5, "level0_tile_px": 512, "source_mpp": 0.25, "grid_shape": [5, 4]}
        write_tile_store(tmp_path / "tiles" / f"{slide_id}.h5", slide_id, coords[order], grid, np.ones(len(grid)),
                         np.zeros((len(grid), 4, 4, 3), np.uint8), attrs, encoding="raw",
                         thumbnail=np.full((32, 40, 3), 200, np.uint8), thumbnail_downsample=64.0)
    for _, row in metrics.iterrows():
        path = tmp_path / "models" / row["trait"] / f"split_{row['split']}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"best_val_slide_auc": row["best_val_slide_auc"], "split": int(row["split"]),
                                    "trait": row["trait"], "best_eval_step": 1}))
        write_history([{"eval_step": 1, "epoch_fraction": 0.5, "train_loss": 0.6, "val_slide_auc": 0.7, "lr": 0.01,
                        "val_loss": 0.1 * (row["split"] + 1)}], path.with_name("history.tsv"))
    for trait, rows in labels.groupby("trait"):
        (tmp_path / "labels").mkdir(exist_ok=True)
        write_labels(rows, tmp_path / "labels" / f"{trait}.tsv")
    (tmp_path / "splits").mkdir()
    write_splits(splits, tmp_path / "splits" / "splits.tsv")
    (tmp_path / "qc").mkdir()
    write_qc_table(qc, tmp_path / "qc" / "slides.tsv")
    clinical = _cohort(len(splits), seed=3).assign(patient_id=splits["patient_id"].to_numpy())
    (tmp_path / "survival").mkdir()
    write_clinical(clinical_columns(clinical), tmp_path / "survival" / "clinical.tsv")
    scripts = repo_root / "workflow_scripts" / "scripts"
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(scripts=scripts, slides=slides))
    snakemake = Path(sys.executable).with_name("snakemake")
    result = subprocess.run([str(snakemake), "-c1", "--quiet", "-s", "Snakefile"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    logs = "\n".join(path.read_text() for path in sorted((tmp_path / "logs").glob("*.log")))
    assert result.returncode == 0, result.stderr[-3000:] + logs[-3000:]

    hti = read_table(tmp_path / "heterogeneity" / "hti.tsv")
    assert len(hti) == len(slides)
    assert {"hti", "hta", "hta_p", "n_positive_tiles"} <= set(hti.columns)
    traits = read_table(tmp_path / "heterogeneity" / "traits.tsv")["trait"].tolist()
    assert any(column.startswith("p_") and "+" in column for column in hti.columns) and len(traits) == 2
    assert len(list((tmp_path / "heterogeneity" / "maps").glob("*.overlay.png"))) == len(slides)
    assert (tmp_path / "heterogeneity" / "gallery.png").stat().st_size > 0
    cohort = read_table(tmp_path / "survival" / "cohort.tsv")
    assert {"slide_id", "patient_id", "hti", "os_months", "os_event"} <= set(cohort.columns)
    assert len(list((tmp_path / "cartography").glob("*.h5"))) == len(slides)
    logrank = read_table(tmp_path / "survival" / "logrank.tsv")
    assert (logrank["comparison"] == "hti").sum() == 2
    figures = {path.name for path in (tmp_path / "survival" / "figures").iterdir()}
    assert {"km_hti_0.5_0.5.png", "km_hti_0.3_0.7.png", "figure5b.png", "figure6.png"} <= figures
    assert {f"figure5a_{trait}.png" for trait in traits} <= figures
    table1 = read_table(tmp_path / "evaluation" / "table1.tsv")
    assert table1["trait"].tolist() == ["A", "B"]
