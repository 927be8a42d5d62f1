"""Evaluation sets, AUCs (vs scikit-learn), patient bootstrap CIs, Benjamini-Hochberg, Spearman and Figure 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control, spearmanr
from sklearn.metrics import roc_auc_score

from qc_rows import qc_frame
from workflow_scripts.analysis.ensemble import choose_members, read_members
from workflow_scripts.analysis.evaluate import (
    EvaluationInputs,
    EvaluationOutputs,
    assign_sets,
    benjamini_hochberg,
    bootstrap_auc_ci,
    collect_slide_scores,
    ensemble_rows,
    evaluation_sets,
    plot_figure2,
    prediction_folders,
    spearman_table,
    table1,
    write_evaluation,
)
from workflow_scripts.common.tables import read_table, write_tsv
from workflow_scripts.learning.labels import write_labels
from workflow_scripts.learning.predictions import SlidePredictions, write_predictions
from workflow_scripts.learning.run_outputs import write_history
from workflow_scripts.learning.slide_score import slide_auc as auc
from workflow_scripts.learning.splits import write_splits
from workflow_scripts.slides.qc_table import passed_slides, write_qc_table


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.3 * labels, 1)  # rounding creates ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(auc(np.ones(5), rng.random(5)))


def test_benjamini_hochberg_by_hand_and_scipy():
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan])
    # sorted 0.01, 0.03, 0.04, 0.20 with m = 4: 0.04, 0.06, 0.0533, 0.20 -> monotone 0.04, 0.0533, 0.0533, 0.20
    expected = [0.04, 0.16 / 3, 0.16 / 3, 0.20, np.nan]
    np.testing.assert_allclose(benjamini_hochberg(p), expected)
    many = np.random.default_rng(1).random(25) ** 2
    np.testing.assert_allclose(benjamini_hochberg(many), false_discovery_control(many, method="bh"))


def test_bootstrap_ci_narrows_with_more_slides():
    rng = np.random.default_rng(2)

    def width(n_patients: int) -> float:
        labels = np.repeat(rng.integers(0, 2, n_patients), 2)
        scores = rng.normal(labels * 1.0, 1.0)
        patients = np.repeat(np.arange(n_patients), 2).astype(str)
        low, high = bootstrap_auc_ci(patients, labels, scores, n_boot=300, ci=0.95, seed=[4])
        assert low <= auc(labels, scores) <= high
        return high - low

    assert width(400) < width(20)
    labels, scores, patients = np.array([0, 1]), np.array([0.1, 0.9]), np.array(["a", "b"])
    first = bootstrap_auc_ci(patients, labels, scores, 50, 0.95, [1])
    assert first == bootstrap_auc_ci(patients, labels, scores, 50, 0.95, [1])


def test_evaluation_sets_rule():
    labels = pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3", "p4", "p5"],
            "trait": "A",
            "label": [1, 0, np.nan, np.nan, 1],
            "set": ["train_pool", "train_pool", "ood_near", "ood_far", "train_pool"],
            "median_label": [1, 0, 1, 0, 1],
            "percentile": [90, 10, 55, 35, 85],
        }
    )
    sets = evaluation_sets(labels, held_out={"p1", "p2", "p3"})
    assert sorted(map(tuple, sets.values.tolist())) == [
        ("p1", "test", 1), ("p2", "test", 0), ("p3", "ood_all", 1), ("p3", "ood_near", 1), ("p4", "ood_all", 0)
    ]


def _cohort(tmp_path, n_patients: int = 24):
    """Predictions for two traits, labels, splits and QC of a small cohort with two slides for some patients."""
    rng = np.random.default_rng(3)
    patients = [f"P{index:02d}" for index in range(n_patients)]
    sets = ["train_pool", "ood_near", "ood_far"]
    label_rows, qc_rows, slides = [], [], []
    for index, patient in enumerate(patients):
        n_slides = 2 if index % 5 == 0 else 1
        for number in range(1, n_slides + 1):
            slides.append((f"{patient}-DX{number}", patient))
            qc_rows.append({"slide_id": f"{patient}-DX{number}", "patient_id": patient, "status": "pass",
                            "n_tiles": 20})
    qc_rows.append({"slide_id": "failed", "patient_id": "P00", "status": "fail", "n_tiles": 0})
    prediction_dirs = {}
    for trait in ("A", "B"):
        percentiles = rng.permutation(np.linspace(1, 99, n_patients))
        for index, patient in enumerate(patients):
            set_name = sets[index % 3]
            label = (1 if percentiles[index] >= 50 else 0) if set_name == "train_pool" else np.nan
            label_rows.append({"patient_id": patient, "trait": trait, "value": percentiles[index],
                               "percentile": percentiles[index], "label": label, "set": set_name,
                               "median_label": int(percentiles[index] >= 50)})
        directory = tmp_path / "predictions" / trait
        directory.mkdir(parents=True)
        percentile_of = dict(zip(patients, percentiles))
        for slide_id, patient in slides:
            coords = rng.permutation(np.stack(np.meshgrid(np.arange(5), np.arange(4)), -1).reshape(-1, 2)) * 512
            signal = percentile_of[patient] / 100
            scores = np.clip(rng.normal(signal, 0.25, (20, 3)), 0, 1).astype(np.float32)
            predictions = SlidePredictions(slide_id, trait, coords, scores, (0, 1, 2))
            write_predictions(directory / f"{slide_id}.h5", predictions)
        prediction_dirs[trait] = directory
    labels = pd.DataFrame(label_rows)
    test = [index % 3 == 0 or index % 4 == 0 for index in range(n_patients)]
    splits = pd.DataFrame({"patient_id": patients, "test": test})
    metrics = pd.DataFrame({"trait": ["A"] * 3 + ["B"] * 3, "split": [0, 1, 2] * 2,
                            "best_val_slide_auc": [0.9, 0.8, 0.7, 0.6, 0.9, 0.8]})
    return prediction_dirs, labels, splits, qc_frame(qc_rows), metrics


def test_table1_spearman_and_figure(tmp_path):
    prediction_dirs, labels, splits, qc, metrics = _cohort(tmp_path)
    members = choose_members(metrics, top_k=2)
    scores = collect_slide_scores(prediction_dirs, members, 0.5, passed_slides(qc))
    assert "failed" not in set(scores["slide_id"])
    slide_table = assign_sets(scores, labels, set(splits.loc[splits["test"], "patient_id"]))
    result = table1(slide_table, ["A", "B"], n_boot=100, ci=0.95, seed=42).set_index("trait")

    test_a = slide_table[(slide_table["trait"] == "A") & (slide_table["set"] == "test")]
    per_split = [roc_auc_score(group["label"].astype(int), group["score"])
                 for model, group in test_a.groupby("model") if model != "ensemble"]
    assert result.loc["A", "test_auc_mean"] == pytest.approx(np.mean(per_split))
    assert result.loc["A", "test_auc_min"] == pytest.approx(min(per_split))
    ensemble = test_a[test_a["model"] == "ensemble"]
    assert result.loc["A", "n_test"] == len(ensemble)
    expected = roc_auc_score(ensemble["label"].astype(int), ensemble["score"])
    assert result.loc["A", "test_auc_ensemble"] == pytest.approx(expected)
    ood = ensemble_rows(slide_table, "B", "ood_all")
    expected = roc_auc_score(ood["label"].astype(int), ood["score"])
    assert result.loc["B", "ood_all_auc_ensemble"] == pytest.approx(expected)
    assert result.loc["B", "ood_all_auc_ensemble_ci_low"] <= result.loc["B", "ood_all_auc_ensemble"]
    again = table1(slide_table, ["A", "B"], n_boot=100, ci=0.95, seed=42)
    pd.testing.assert_frame_equal(result.reset_index(), again)

    spearman = spearman_table(slide_table, labels)
    row = spearman[(spearman["trait"] == "A") & (spearman["set"] == "in_sample")].iloc[0]
    data = ensemble_rows(slide_table, "A", "in_sample")
    data = data.merge(labels[labels["trait"] == "A"][["patient_id", "percentile"]], on="patient_id")
    assert row["rho"] == pytest.approx(spearmanr(data["score"], data["percentile"]).statistic)
    assert row["rho"] > 0.5
    held_out = spearman["set"] != "in_sample"
    np.testing.assert_allclose(spearman.loc[held_out, "q_value"],
                               false_discovery_control(spearman.loc[held_out, "p_value"], method="bh"))
    assert spearman.loc[~held_out, "q_value"].isna().all() and (~held_out).sum() == 2

    plot_figure2(slide_table, ["A", "B"], tmp_path / "figure2.png", tmp_path / "figure2.pdf", seed=42)
    assert (tmp_path / "figure2.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "figure2.pdf").read_bytes()[:4] == b"%PDF"
    write_tsv(slide_table, tmp_path / "slide_scores.tsv")
    assert read_table(tmp_path / "slide_scores.tsv").shape == slide_table.shape


def test_one_class_set_gives_nan_auc():
    table = pd.DataFrame({"slide_id": ["s1", "s2"], "patient_id": ["a", "b"], "trait": "A", "model": "ensemble",
                          "set": "test", "label": [1, 1], "score": [0.2, 0.9], "mean_tile_score": [0.2, 0.9]})
    row = table1(table, ["A"], n_boot=20, ci=0.95, seed=0).iloc[0]
    assert np.isnan(row["test_auc_ensemble"]) and np.isnan(row["test_auc_ensemble_ci_low"])
    assert row["n_test"] == 2


def test_write_evaluation_matches_the_steps(tmp_path):
    prediction_dirs, labels, splits, qc, metrics = _cohort(tmp_path, n_patients=12)
    metric_paths, history_paths = [], []
    for _, row in metrics.iterrows():
        path = tmp_path / "models" / row["trait"] / f"split_{row['split']}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"best_val_slide_auc": row["best_val_slide_auc"], "split": int(row["split"]),
                                    "trait": row["trait"], "best_eval_step": 2}))
        loss = 0.1 * (row["split"] + 1)
        write_history([{"eval_step": step, "epoch_fraction": step / 2, "train_loss": 0.6, "val_slide_auc": 0.7,
                        "lr": 0.01, "val_loss": loss * step} for step in (1, 2)], path.with_name("history.tsv"))
        metric_paths.append(path)
        history_paths.append(path.with_name("history.tsv"))
    label_paths = []
    for trait, rows in labels.groupby("trait"):
        write_labels(rows, tmp_path / f"{trait}.tsv")
        label_paths.append(tmp_path / f"{trait}.tsv")
    write_splits(splits, tmp_path / "splits.tsv")
    write_qc_table(qc, tmp_path / "qc.tsv")
    inputs = EvaluationInputs([prediction_dirs["B"], prediction_dirs["A"]], metric_paths, history_paths,
                              label_paths, tmp_path / "splits.tsv", tmp_path / "qc.tsv")
    out = tmp_path / "evaluation"
    outputs = EvaluationOutputs(out / "members.tsv", out / "slide_scores.tsv", out / "table1.tsv",
                                out / "spearman.tsv", out / "figure2.png", out / "figure2.pdf")
    settings = {"top_k": 2, "threshold": 0.5}, {"bootstrap": 30, "ci": 0.95}
    summary = write_evaluation(inputs, outputs, ["A", "B"], *settings, 42)

    members = choose_members(metrics, top_k=2)
    scores = collect_slide_scores(prediction_dirs, members, 0.5, passed_slides(qc))
    slide_table = assign_sets(scores, labels, set(splits.loc[splits["test"], "patient_id"]))
    pd.testing.assert_frame_equal(summary, table1(slide_table, ["A", "B"], n_boot=30, ci=0.95, seed=42))
    written = read_table(out / "table1.tsv")
    np.testing.assert_allclose(written["test_auc_ensemble"], summary["test_auc_ensemble"])
    written_members = read_members(out / "members.tsv")
    assert written_members["chosen"].sum() == 4
    # val_loss_at_best = the history's val_loss at best_eval_step 2: 2 * 0.1 * (split + 1)
    assert written_members["val_loss_at_best"].tolist() == pytest.approx(
        [0.2 * (split + 1) for split in written_members["split"]])
    assert written_members["split"].tolist() == members["split"].tolist()
    assert (out / "figure2.pdf").read_bytes()[:4] == b"%PDF" and (out / "spearman.tsv").stat().st_size > 0
    with pytest.raises(ValueError, match="'C'"):
        prediction_folders(inputs.predictions, ["A", "C"])


def test_fdr_family_is_the_held_out_sets_only():
    """Two traits x four sets, percentiles chosen so every p-value differs: BH over the six held-out rows only."""
    rows, percentile_rows = [], []
    rng = np.random.default_rng(5)
    for trait, strength in (("A", 0.9), ("B", 0.3)):
        for set_index, set_name in enumerate(("test", "ood_near", "ood_all", "in_sample")):
            for number in range(8 + 2 * set_index):
                patient = f"{trait}{set_name}{number}"
                percentile = 10.0 * number + set_index
                score = strength * percentile / 100 + (1 - strength) * rng.random()
                rows.append({"slide_id": patient, "patient_id": patient, "trait": trait, "model": "ensemble",
                             "set": set_name, "label": 1, "score": score, "mean_tile_score": score})
                percentile_rows.append({"patient_id": patient, "trait": trait, "percentile": percentile})
    table = spearman_table(pd.DataFrame(rows), pd.DataFrame(percentile_rows))
    held_out = table["set"].isin(["test", "ood_near", "ood_all"]).to_numpy()
    p = table["p_value"].to_numpy()
    assert held_out.sum() == 6 and not np.isnan(p).any()
    # BH by hand over the m = 6 held-out p-values: q_(i) = min over j >= i of p_(j) * m / j
    held = p[held_out]
    order = np.argsort(held)
    by_hand = np.minimum.accumulate((held[order] * 6 / np.arange(1, 7))[::-1])[::-1]
    expected = np.empty(6)
    expected[order] = np.minimum(by_hand, 1)
    np.testing.assert_allclose(table.loc[held_out, "q_value"], expected)
    np.testing.assert_allclose(table.loc[held_out, "q_value"], false_discovery_control(held, method="bh"))
    assert table.loc[~held_out, "q_value"].isna().all()
    # counting the in-sample rows would have changed the q-values (m = 8)
    assert not np.allclose(false_discovery_control(p, method="bh")[held_out], expected)
