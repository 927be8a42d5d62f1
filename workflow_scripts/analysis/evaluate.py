"""Slide-level evaluation of split models and ensembles: Table 1 AUCs with bootstrap CIs, Spearman, Figure 2.

The unit of every AUC and correlation is the slide: each slide of a patient in a set counts once, with its
patient's reference label.  Confidence intervals resample patients (with all their slides) so that patients with
several slides do not make the intervals too narrow.

Evaluation sets per trait:
- ``test``: held-out test patients (splits.tsv ``test`` True) whose label is 0 or 1; reference = ``label``.
- ``ood_near``: patients whose set is ``ood_near``; reference = ``median_label``.
- ``ood_all``: patients whose set is ``ood_near`` or ``ood_far``; reference = ``median_label``.
- ``in_sample`` (Spearman only): every predicted slide whose patient has an expression percentile, the slides
  the split models were trained and validated on included.  It is not a held-out estimate, so it stays out of the
  Benjamini-Hochberg family (HELD_OUT_SETS) of the Spearman table and its q-value is NaN.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, spearmanr

from workflow_scripts.analysis.ensemble import choose_members, chosen_splits, read_metrics, slide_scores, write_members
from workflow_scripts.common.figures import GROUP_COLOURS, draw_groups, pyplot, save_figure
from workflow_scripts.common.seeds import stable_seed
from workflow_scripts.common.tables import write_tsv
from workflow_scripts.learning.labels import read_labels
from workflow_scripts.learning.predictions import read_predictions
from workflow_scripts.learning.slide_score import slide_auc
from workflow_scripts.learning.splits import held_out_patients, read_splits
from workflow_scripts.slides.qc_table import read_passed_slides

EVALUATION_SETS = ("test", "ood_near", "ood_all")
IN_SAMPLE = "in_sample"
SPEARMAN_SETS = (*EVALUATION_SETS, IN_SAMPLE)
HELD_OUT_SETS = EVALUATION_SETS  # the Benjamini-Hochberg family of the Spearman table
SLIDE_SCORE_COLUMNS = ["slide_id", "patient_id", "trait", "model", "set", "label", "score", "mean_tile_score"]


def evaluation_sets(trait_labels: pd.DataFrame, held_out: set[str]) -> pd.DataFrame:
    """Patients of one trait in each evaluation set with their reference label (patient_id, set, label)."""
    labels = pd.to_numeric(trait_labels["label"], errors="coerce")
    median = pd.to_numeric(trait_labels["median_label"], errors="coerce")
    patient = trait_labels["patient_id"].astype(str)
    sets = trait_labels["set"].astype(str)
    test = patient.isin(held_out) & labels.isin([0, 1])
    near = sets == "ood_near"
    ood = sets.isin(["ood_near", "ood_far"])
    parts = [
        pd.DataFrame({"patient_id": patient[test], "set": "test", "label": labels[test]}),
        pd.DataFrame({"patient_id": patient[near], "set": "ood_near", "label": median[near]}),
        pd.DataFrame({"patient_id": patient[ood], "set": "ood_all", "label": median[ood]}),
    ]
    frame = pd.concat(parts, ignore_index=True).dropna(subset=["label"])
    frame["label"] = frame["label"].astype(int)
    return frame


def collect_slide_scores(
    prediction_dirs: dict[str, str | os.PathLike],
    members: pd.DataFrame,
    threshold: float,
    slides: pd.DataFrame,
) -> pd.DataFrame:
    """Per-slide scores of every model and the ensemble for every trait (slide_id, patient_id, trait, model, ...)."""
    patient_of = dict(zip(slides["slide_id"], slides["patient_id"]))
    frames = []
    for trait, directory in prediction_dirs.items():
        splits = chosen_splits(members, trait)
        for path in sorted(Path(directory).glob("*.h5")):
            if path.stem not in patient_of:
                continue
            predictions = read_predictions(path, trait)
            frame = slide_scores(predictions, splits, threshold)
            frame["slide_id"] = path.stem
            frames.append(frame)
    if not frames:
        raise ValueError("no prediction files of QC-passed slides were found")
    scores = pd.concat(frames, ignore_index=True)
    scores.insert(1, "patient_id", scores["slide_id"].map(patient_of))
    return scores


def assign_sets(scores: pd.DataFrame, labels: pd.DataFrame, held_out: set[str]) -> pd.DataFrame:
    """Long-form slide scores with one row per slide, trait, model and set (plus set `in_sample` for Spearman)."""
    parts = []
    for trait, trait_scores in scores.groupby("trait", sort=True):
        trait_labels = labels[labels["trait"] == trait]
        sets = evaluation_sets(trait_labels, held_out)
        parts.append(trait_scores.merge(sets, on="patient_id", how="inner"))
        everyone = trait_labels[["patient_id", "label"]].assign(label=pd.to_numeric(trait_labels["label"], "coerce"))
        everyone = everyone[pd.to_numeric(trait_labels["percentile"], errors="coerce").notna()]
        parts.append(trait_scores.merge(everyone.assign(set=IN_SAMPLE), on="patient_id", how="inner"))
    frame = pd.concat(parts, ignore_index=True)
    frame["label"] = frame["label"].astype("Int64")
    order = {name: index for index, name in enumerate(SPEARMAN_SETS)}
    frame = frame.sort_values(
        ["trait", "set", "model", "slide_id"], key=lambda c: c.map(order) if c.name == "set" else c, kind="mergesort"
    )
    return frame[SLIDE_SCORE_COLUMNS].reset_index(drop=True)


def bootstrap_auc_ci(
    patients: np.ndarray, labels: np.ndarray, scores: np.ndarray, n_boot: int, ci: float, seed: int | list[int]
) -> tuple[float, float]:
    """Percentile CI of the slide AUC resampling patients with replacement (all their slides go together)."""
    patients = np.asarray(patients)
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    unique, patient_index = np.unique(patients, return_inverse=True)
    if n_boot < 1 or unique.size == 0:
        return float("nan"), float("nan")
    slides_of = [np.flatnonzero(patient_index == index) for index in range(unique.size)]
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(n_boot):
        drawn = rng.integers(0, unique.size, unique.size)
        rows = np.concatenate([slides_of[index] for index in drawn])
        estimates.append(slide_auc(labels[rows], scores[rows]))
    valid = np.asarray(estimates)[~np.isnan(estimates)]
    if valid.size < 2:
        return float("nan"), float("nan")
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(valid, [alpha, 1.0 - alpha])
    return float(low), float(high)


def table1(slide_table: pd.DataFrame, traits: list[str], n_boot: int, ci: float, seed: int) -> pd.DataFrame:
    """Table 1: per trait test AUC of the split models (mean/min/max) and ensemble AUCs with bootstrap CIs."""
    rows = []
    for trait in traits:
        row: dict[str, object] = {"trait": trait}
        test = slide_table[(slide_table["trait"] == trait) & (slide_table["set"] == "test")]
        split_aucs = [
            slide_auc(group["label"].to_numpy(int), group["score"].to_numpy(float))
            for model, group in test.groupby("model", sort=True)
            if model != "ensemble"
        ]
        defined = [value for value in split_aucs if not np.isnan(value)]
        row["test_auc_mean"] = float(np.mean(defined)) if defined else float("nan")
        row["test_auc_min"] = float(np.min(defined)) if defined else float("nan")
        row["test_auc_max"] = float(np.max(defined)) if defined else float("nan")
        for set_name in EVALUATION_SETS:
            ensemble = ensemble_rows(slide_table, trait, set_name)
            labels = ensemble["label"].to_numpy(int)
            scores = ensemble["score"].to_numpy(float)
            low, high = bootstrap_auc_ci(
                ensemble["patient_id"].to_numpy(str), labels, scores, n_boot, ci, stable_seed(seed, trait, set_name)
            )
            row[f"n_{set_name}"] = len(ensemble)
            row[f"n_{set_name}_patients"] = ensemble["patient_id"].nunique()
            row[f"{set_name}_auc_ensemble"] = slide_auc(labels, scores)
            row[f"{set_name}_auc_ensemble_ci_low"] = low
            row[f"{set_name}_auc_ensemble_ci_high"] = high
        rows.append(row)
    columns = ["trait", "n_test", "test_auc_mean", "test_auc_min", "test_auc_max", "test_auc_ensemble"]
    columns += ["n_ood_near", "ood_near_auc_ensemble", "n_ood_all", "ood_all_auc_ensemble"]
    columns += [f"{name}_auc_ensemble_ci_{side}" for name in EVALUATION_SETS for side in ("low", "high")]
    columns += [f"n_{name}_patients" for name in EVALUATION_SETS]
    return pd.DataFrame(rows, columns=columns)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (scipy's false_discovery_control); NaN p-values stay NaN and are not counted."""
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    defined = ~np.isnan(p)
    if defined.any():
        q[defined] = false_discovery_control(p[defined], method="bh")
    return q


def spearman_table(slide_table: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of ensemble slide scores with expression percentiles per trait and set.

    q-values: Benjamini-Hochberg over the held-out rows (HELD_OUT_SETS) of every trait; in-sample rows get NaN.
    """
    percentiles = labels[["patient_id", "trait", "percentile"]].assign(
        percentile=pd.to_numeric(labels["percentile"], errors="coerce")
    )
    ensemble = slide_table[slide_table["model"] == "ensemble"].merge(percentiles, on=["patient_id", "trait"])
    rows = []
    for trait in sorted(ensemble["trait"].unique()):
        for set_name in SPEARMAN_SETS:
            data = ensemble[(ensemble["trait"] == trait) & (ensemble["set"] == set_name)]
            data = data.dropna(subset=["score", "percentile"])
            rho, p_value, note = float("nan"), float("nan"), ""
            if len(data) < 3:
                note = "fewer than 3 slides"
            elif data["score"].nunique() < 2 or data["percentile"].nunique() < 2:
                note = "constant scores or percentiles"
            else:
                result = spearmanr(data["score"], data["percentile"])
                rho, p_value = float(result.statistic), float(result.pvalue)
            rows.append({"trait": trait, "set": set_name, "n": len(data), "rho": rho, "p_value": p_value, "note": note})
    frame = pd.DataFrame(rows, columns=["trait", "set", "n", "rho", "p_value", "note"])
    family = frame["set"].isin(HELD_OUT_SETS).to_numpy()
    q_values = np.full(len(frame), np.nan)
    q_values[family] = benjamini_hochberg(frame.loc[family, "p_value"].to_numpy(float))
    frame.insert(5, "q_value", q_values)
    return frame


def ensemble_rows(slide_table: pd.DataFrame, trait: str, set_name: str) -> pd.DataFrame:
    """Scored ensemble rows of one trait and evaluation set, the slides Table 1 and Figure 2 are built from."""
    chosen = (slide_table["trait"] == trait) & (slide_table["set"] == set_name) & (slide_table["model"] == "ensemble")
    return slide_table[chosen].dropna(subset=["score"])


def figure2_panel_text(summary: pd.DataFrame | None, trait: str, set_name: str, ci: float = 0.95) -> str:
    """A Figure 2 panel's AUC with its CI and n as Table 1 gives them, so the picture and the table agree."""
    if summary is None or trait not in set(summary["trait"]):
        return ""
    row = summary[summary["trait"] == trait].iloc[0]
    auc, low, high = (row[f"{set_name}_auc_ensemble{part}"] for part in ("", "_ci_low", "_ci_high"))
    n = f"n = {int(row[f'n_{set_name}'])} slides, {int(row[f'n_{set_name}_patients'])} patients"
    if np.isnan(auc):
        return f"AUC n/a (one class)\n{n}"
    interval = f"{ci:.0%} CI {low:.2f}-{high:.2f}" if not np.isnan(low) else f"{ci:.0%} CI n/a"
    return f"AUC {auc:.2f} ({interval})\n{n}"


def plot_figure2(
    slide_table: pd.DataFrame,
    traits: list[str],
    png: str | os.PathLike,
    pdf: str | os.PathLike,
    seed: int,
    summary: pd.DataFrame | None = None,
    ci: float = 0.95,
) -> None:
    """Figure 2: ensemble slide scores by reference label per trait (rows) for test, OOD-near, OOD-all (columns),
    each panel with Table 1's AUC (CI) and n when `summary` (Table 1) is given."""
    plt = pyplot()
    titles = {"test": "Test", "ood_near": "OOD-near", "ood_all": "OOD-all"}
    figure, axes = plt.subplots(
        len(traits), len(EVALUATION_SETS), figsize=(3.4 * len(EVALUATION_SETS), 3.3 * len(traits)), squeeze=False
    )
    rng = np.random.default_rng(seed)
    for row, trait in enumerate(traits):
        for column, set_name in enumerate(EVALUATION_SETS):
            axis = axes[row][column]
            data = ensemble_rows(slide_table, trait, set_name)
            groups = [data.loc[data["label"] == label, "score"].to_numpy(float) for label in (0, 1)]
            draw_groups(axis, groups, list(GROUP_COLOURS[:2]), rng)
            axis.set_xticks([0, 1], [f"low\n(n={groups[0].size})", f"high\n(n={groups[1].size})"], fontsize=8)
            axis.set_xlim(-0.6, 1.6)
            axis.set_ylim(-0.05, 1.05)
            text = figure2_panel_text(summary, trait, set_name, ci)
            axis.set_title(f"{trait} - {titles[set_name]}" + (f"\n{text}" if text else ""), fontsize=8.5)
            if column == 0:
                axis.set_ylabel("ensemble slide score")
    figure.tight_layout()
    save_figure(figure, png, pdf, dpi=150)


@dataclass(frozen=True)
class EvaluationInputs:
    """What the evaluation job reads: prediction folders (named by trait), metrics and histories, labels, splits, QC."""

    predictions: Sequence[str | os.PathLike]
    metrics: Sequence[str | os.PathLike]
    histories: Sequence[str | os.PathLike]
    labels: str | os.PathLike | Sequence[str | os.PathLike]
    splits: str | os.PathLike
    qc: str | os.PathLike


@dataclass(frozen=True)
class EvaluationOutputs:
    """Where the evaluation job writes: members, slide scores, Table 1, Spearman and Figure 2 (PNG and PDF)."""

    members: str | os.PathLike
    slide_scores: str | os.PathLike
    table1: str | os.PathLike
    spearman: str | os.PathLike
    figure_png: str | os.PathLike
    figure_pdf: str | os.PathLike


def prediction_folders(paths: Sequence[str | os.PathLike], traits: list[str]) -> dict[str, str | os.PathLike]:
    """The prediction folder of each trait (folder name = trait), in trait order; raises naming missing traits."""
    folders = {Path(path).name: path for path in paths}
    missing = [trait for trait in traits if trait not in folders]
    if missing:
        raise ValueError(f"no prediction directory for traits {missing} among {list(folders)}")
    return {trait: folders[trait] for trait in traits}


def write_evaluation(
    inputs: EvaluationInputs,
    outputs: EvaluationOutputs,
    traits: list[str],
    ensemble: dict,
    evaluation: dict,
    seed: int,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Choose the ensemble members, score the slides and write Table 1, Spearman and Figure 2; returns Table 1."""
    log = log or logging.getLogger(__name__)
    folders = prediction_folders(inputs.predictions, traits)
    members = choose_members(read_metrics(inputs.metrics, inputs.histories), int(ensemble["top_k"]))
    log.info("ensemble members (ranks and what decided them):\n%s", members.to_string(index=False))
    labels = read_labels(inputs.labels)
    held_out = held_out_patients(read_splits(inputs.splits))
    scores = collect_slide_scores(folders, members, float(ensemble["threshold"]), read_passed_slides(inputs.qc))
    slide_table = assign_sets(scores, labels, held_out)
    log.info("scored %d slides for %d traits", scores["slide_id"].nunique(), len(traits))
    summary = table1(slide_table, traits, int(evaluation["bootstrap"]), float(evaluation["ci"]), seed)
    log.info("table 1:\n%s", summary.to_string(index=False))
    write_members(members, outputs.members)
    write_tsv(slide_table, outputs.slide_scores)
    write_tsv(summary, outputs.table1)
    write_tsv(spearman_table(slide_table, labels), outputs.spearman)
    plot_figure2(slide_table, traits, outputs.figure_png, outputs.figure_pdf, seed, summary, float(evaluation["ci"]))
    return summary

