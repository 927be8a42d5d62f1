"""End to end, the features model family: heads on imported planted TRIDENT-layout features recover the planted
truth through the same ensemble, maps, HTI and report; reruns follow what changed; without signal, chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from signal_zero import permutation_p_value
from workflow_runner import REPO_ROOT, deep_update, make_workdir, scheduled_rules, snakemake
from workflow_scripts.analysis.cartography import read_cartography
from workflow_scripts.analysis.evaluation_tables import read_slide_scores, read_table1
from workflow_scripts.analysis.qupath import read_geojson
from workflow_scripts.common.tables import read_table
from workflow_scripts.demo.layout import BACKGROUND
from workflow_scripts.demo.truth import read_truth
from workflow_scripts.features.featurestore import read_features
from workflow_scripts.features.summary import read_feature_rows
from workflow_scripts.learning.predictions import read_predictions
from workflow_scripts.slides.qc_table import passed_slides, read_qc_table
from workflow_scripts.slides.tilestore import TileStore

pytestmark = [pytest.mark.slow]  # one module-scoped run shared by the tests of this file

RESULTS = Path("results/demo_features")
TRAITS = ["MKI67", "miR-17-5p"]
# config/demo_features.yaml on the demo cohort, with 2 splits and a top-2 ensemble (as test_workflow_demo.py)
OVERRIDES = deep_update(
    yaml.safe_load((REPO_ROOT / "config" / "demo_features.yaml").read_text()),
    {"splits": {"n_splits": 2}, "ensemble": {"top_k": 2}},
)
N_HEADS = len(TRAITS) * OVERRIDES["splits"]["n_splits"]
AFTER_HEADS = {"predict": len(TRAITS), "evaluate": 1, "choose_traits": 1, "cartography": 1, "heterogeneity": 1,
               "survival": 1, "report_tables": 1, "report_images": 1, "qupath": 1, "viewer": 1, "all": 1}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the features demo, with its report."""
    workdir = make_workdir(tmp_path_factory.mktemp("features"), OVERRIDES)
    snakemake(workdir, "--cores", "2", timeout=3600)
    snakemake(workdir, "--report", str(RESULTS / "report.html"), timeout=600)
    return workdir


def analysed(workdir: Path) -> list[str]:
    """The slides with features: passed in features/qc.tsv."""
    return list(passed_slides(read_qc_table(workdir / RESULTS / "features/qc.tsv"))["slide_id"])


def test_imported_features_are_matched_to_the_tile_stores(run: Path) -> None:
    summary = read_feature_rows([run / RESULTS / "features/summary.tsv"])
    qc = read_qc_table(run / RESULTS / "qc/slides.tsv")
    assert summary["slide_id"].tolist() == sorted(passed_slides(qc)["slide_id"])
    assert (summary["status"] == "pass").all() and (summary["encoder"] == "planted").all()
    assert (summary["dim"] == OVERRIDES["features"]["import"]["planted"]["dim"]).all()
    # 2% of tissue cells were dropped from the "TRIDENT" files: those store tiles are counted and left out
    assert 0 < summary["n_unmatched"].sum() < 0.1 * summary["n_store_tiles"].sum()
    for slide_id in summary["slide_id"][:10]:
        features = read_features(run / RESULTS / f"features/{slide_id}.h5")
        with TileStore(run / RESULTS / f"tiles/{slide_id}.h5") as store:
            np.testing.assert_array_equal(features.coords, store.coords[features.tile_rows])
        predictions = read_predictions(run / RESULTS / f"predictions/MKI67/{slide_id}.h5", "MKI67")
        np.testing.assert_array_equal(predictions.coords, features.coords)


def test_heads_recover_the_planted_tile_calls(run: Path) -> None:
    agree, total = np.zeros(len(TRAITS)), 0
    for path in sorted((run / RESULTS / "cartography").glob("*.h5")):
        calls, traits, _ = read_cartography(path)
        truth = read_truth(run / "resources/demo_features/truth" / path.name)
        assert traits == list(truth.traits) == TRAITS
        both = (calls[..., 0] != BACKGROUND) & (truth.trait_grid[..., 0] != BACKGROUND)
        agree += (calls[both] == truth.trait_grid[both]).sum(axis=0)
        total += int(both.sum())
    assert total > 1000
    assert (agree / total >= 0.9).all(), dict(zip(TRAITS, agree / total))


def test_ensemble_test_auc_and_the_rest_of_the_pipeline(run: Path) -> None:
    table1 = read_table1(run / RESULTS / "evaluation/table1.tsv").set_index("trait")
    for trait in TRAITS:
        assert table1.loc[trait, "test_auc_ensemble"] >= 0.9, table1.loc[trait].to_dict()
    hti = read_table(run / RESULTS / "heterogeneity/hti.tsv")
    assert sorted(hti["slide_id"]) == analysed(run)
    for name in ("survival/logrank.tsv", "survival/cox.tsv", "viewer/index.html", "report.html"):
        assert (run / RESULTS / name).stat().st_size > 0, name
    metrics = yaml.safe_load((run / RESULTS / "models/MKI67/split_0/metrics.json").read_text())
    assert metrics["model_family"] == "features" and metrics["encoder"] == "planted"
    assert "generated from the synthetic cohort" in (run / RESULTS / "report.html").read_text(errors="replace")


def test_uncovered_tiles_are_left_out_of_maps_and_exports(run: Path) -> None:
    summary = read_feature_rows([run / RESULTS / "features/summary.tsv"]).set_index("slide_id")
    slide_id = summary["n_unmatched"].idxmax()
    calls, _, _ = read_cartography(run / RESULTS / f"cartography/{slide_id}.h5")
    assert int((calls[..., 0] != BACKGROUND).sum()) == summary.loc[slide_id, "n_features"]
    exported = read_geojson(run / RESULTS / f"qupath/{slide_id}.geojson")["features"]
    assert len(exported) == summary.loc[slide_id, "n_features"] < summary.loc[slide_id, "n_store_tiles"]


def dry_run(workdir: Path, overrides: dict, name: str) -> dict[str, int]:
    """Rules and job counts a dry run schedules with the run's config plus `overrides`."""
    settings = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    path = workdir / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(deep_update(settings, overrides), sort_keys=False))
    return scheduled_rules(snakemake(workdir, "-n", "--cores", "2", "--configfile", str(path)).stdout)


def test_nothing_left_to_do(run: Path) -> None:
    process = snakemake(run, "-n", "--cores", "2")
    assert "Nothing to be done" in process.stdout + process.stderr


def test_a_head_setting_retrains_only_the_heads(run: Path) -> None:
    planned = dry_run(run, {"features": {"head": {"learning_rate": 0.002}}}, "head")
    assert planned == {"train_head": N_HEADS, **AFTER_HEADS}


def test_a_schedule_setting_retrains_the_heads_and_an_inception_one_nothing(run: Path) -> None:
    assert dry_run(run, {"training": {"stop_patience": 31}}, "schedule") == {"train_head": N_HEADS, **AFTER_HEADS}
    assert dry_run(run, {"training": {"bn_momentum": 0.5, "input_px": 99}}, "inception_only") == {}


def test_another_feature_source_recomputes_embed_and_everything_after(run: Path) -> None:
    planned = dry_run(run, {"features": {"import": {"encoder_name": "uni_v2"}}}, "encoder_name")
    n_slides = len(read_feature_rows([run / RESULTS / "features/summary.tsv"]))
    assert planned == {"embed": n_slides, "features_summary": 1, "train_head": N_HEADS, **AFTER_HEADS}


def test_without_the_trait_dimensions_aucs_are_consistent_with_chance(run: Path) -> None:
    """Last in this file: reruns the same workdir with signal 0 (the planted files, embed, heads and after)."""
    settings = yaml.safe_load((run / "config" / "config.yaml").read_text())
    settings["features"]["import"]["planted"]["signal"] = 0.0
    path = run / "config" / "signal_zero.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    snakemake(run, "--cores", "2", "--configfile", str(path), "--until", "evaluate", timeout=3600)
    table = read_table1(run / RESULTS / "evaluation/table1.tsv")
    scores = read_slide_scores(run / RESULTS / "evaluation/slide_scores.tsv")
    ensemble = scores[scores["model"] == "ensemble"]
    verdicts = []
    for _, row in table.iterrows():
        for name in ("test", "ood_near", "ood_all"):
            rows = ensemble[(ensemble["trait"] == row["trait"]) & (ensemble["set"] == name)]
            low, high = row[f"{name}_auc_ensemble_ci_low"], row[f"{name}_auc_ensemble_ci_high"]
            p_value = permutation_p_value(rows["label"].to_numpy(), rows["score"].to_numpy())
            verdicts.append((row["trait"], name, row[f"{name}_auc_ensemble"], low, high, p_value))
    assert all(low <= 0.5 <= high or p >= 0.05 for *_, low, high, p in verdicts), pd.DataFrame(verdicts)
