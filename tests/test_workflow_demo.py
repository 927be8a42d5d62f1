"""End to end: the demo run by Snakemake recovers the planted truth; partial reruns schedule only what changed."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from workflow_runner import deep_update, make_workdir, scheduled_rules, snakemake
from workflow_scripts.analysis.cartography import read_cartography
from workflow_scripts.common.tables import read_table
from workflow_scripts.demo.layout import BACKGROUND
from workflow_scripts.demo.truth import read_slide_truths, read_truth
from workflow_scripts.slides.qc_table import passed_slides

pytestmark = [pytest.mark.slow]  # the module-scoped demo run is shared: `make test` keeps a file on one worker

RESULTS = Path("results/demo")
TRAITS = ["MKI67", "miR-17-5p"]
# The demo config with 2 train/validation splits instead of 5 (and a top-2 ensemble), to keep the suite short: the
# same generator, cohort, tiling, labels and test set as `make demo`; only fewer models are trained.
OVERRIDES = {"splits": {"n_splits": 2}, "ensemble": {"top_k": 2}}
N_SPLITS = OVERRIDES["splits"]["n_splits"]
DOWNSTREAM_OF_ONE_TRAIT = {
    "predict": 1,
    "evaluate": 1,
    "choose_traits": 1,
    "cartography": 1,
    "heterogeneity": 1,
    "survival": 1,
    "report_tables": 1,
    "report_images": 1,
    "qupath": 1,
    "viewer": 1,
    "all": 1,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the default demo config, with its report."""
    workdir = make_workdir(tmp_path_factory.mktemp("demo"), OVERRIDES)
    snakemake(workdir, "--cores", "2", timeout=3600)
    snakemake(workdir, "--report", str(RESULTS / "report.html"), timeout=600)
    return workdir


def read(workdir: Path, name: str) -> pd.DataFrame:
    """A TSV output of the demo run."""
    return read_table(workdir / RESULTS / name)


def test_report_and_figures_exist(demo: Path) -> None:
    report = demo / RESULTS / "report.html"
    assert report.stat().st_size > 100_000
    figures = sorted(path.name for path in (demo / RESULTS / "survival" / "figures").glob("*.png"))
    assert {"km_hti_0.5_0.5.png", "km_hti_0.3_0.7.png", "figure5b.png", "figure6.png"} <= set(figures)
    assert (demo / RESULTS / "evaluation" / "figure2.pdf").exists()
    assert (demo / RESULTS / "heterogeneity" / "gallery.png").exists()
    qc = read(demo, "qc/slides.tsv")
    maps = {path.name for path in (demo / RESULTS / "heterogeneity" / "maps").glob("*.png")}
    assert {f"{slide}.png" for slide in passed_slides(qc)["slide_id"]} <= maps


def test_table1_matches_recomputation_from_slide_scores(demo: Path) -> None:
    table1 = read(demo, "evaluation/table1.tsv").set_index("trait")
    scores = read(demo, "evaluation/slide_scores.tsv")
    for trait in TRAITS:
        ensemble = scores[(scores["trait"] == trait) & (scores["model"] == "ensemble")]
        test = ensemble[ensemble["set"] == "test"]
        assert len(test) == table1.loc[trait, "n_test"]
        assert table1.loc[trait, "test_auc_ensemble"] == pytest.approx(roc_auc_score(test["label"], test["score"]))
        per_model = [
            roc_auc_score(rows["label"], rows["score"])
            for model, rows in scores[(scores["trait"] == trait) & (scores["set"] == "test")].groupby("model")
            if model != "ensemble"
        ]
        assert table1.loc[trait, "test_auc_mean"] == pytest.approx(np.mean(per_model))
        assert table1.loc[trait, "test_auc_min"] == pytest.approx(min(per_model))
        for name in ("ood_near", "ood_all"):
            rows = ensemble[ensemble["set"] == name]
            assert table1.loc[trait, f"n_{name}"] == len(rows)
            assert table1.loc[trait, f"{name}_auc_ensemble"] == pytest.approx(
                roc_auc_score(rows["label"], rows["score"])
            )


def test_planted_traits_are_recovered(demo: Path) -> None:
    table1 = read(demo, "evaluation/table1.tsv").set_index("trait")
    for trait in TRAITS:
        assert table1.loc[trait, "test_auc_ensemble"] >= 0.9, table1.loc[trait].to_dict()


def test_tile_calls_match_the_planted_truth(demo: Path) -> None:
    """The ensemble's tile calls (cartography tensors) agree with the generator's tile-level truth masks."""
    agree, total = np.zeros(len(TRAITS)), 0
    for path in sorted((demo / RESULTS / "cartography").glob("*.h5")):
        calls, traits, _ = read_cartography(path)
        truth = read_truth(demo / "resources/demo/truth" / path.name)
        assert traits == list(truth.traits) == TRAITS
        planted = truth.trait_grid
        both = (calls[..., 0] != BACKGROUND) & (planted[..., 0] != BACKGROUND)
        agree += (calls[both] == planted[both]).sum(axis=0)
        total += int(both.sum())
    assert total > 1000
    accuracy = agree / total
    assert (accuracy >= 0.9).all(), dict(zip(TRAITS, accuracy))


def test_predicted_heterogeneity_tracks_the_truth(demo: Path) -> None:
    cohort = read(demo, "survival/cohort.tsv")
    truth = read_slide_truths(demo / "resources/demo/truth/slides.tsv")
    joined = cohort.merge(truth, on="slide_id").dropna(subset=["hti", "true_hti"])
    assert len(joined) >= 20
    rho = spearmanr(joined["hti"], joined["true_hti"]).statistic
    assert rho >= 0.6, rho


def test_heterogeneity_is_linked_to_survival(demo: Path) -> None:
    logrank = read(demo, "survival/logrank.tsv")
    main = logrank[(logrank["comparison"] == "hti") & (logrank["low_max"] == 0.5) & (logrank["high_min"] == 0.5)]
    assert len(main) == 1
    assert main["p_value"].iloc[0] < 0.05, main.to_dict("records")


def dry_run(workdir: Path, *args: str) -> dict[str, int]:
    """Rules and job counts a dry run schedules."""
    return scheduled_rules(snakemake(workdir, "-n", "--cores", "2", *args).stdout)


def test_rulegraph_after_the_run_has_every_rule(demo: Path) -> None:
    graph = snakemake(demo, "--rulegraph", "--cores", "1").stdout
    for rule in (
        "demo_cohort",
        "tile_slide",
        "qc_summary",
        "labels_trait",
        "labels_summary",
        "clinical",
        "splits",
        "train",
        "predict",
        "evaluate",
        "choose_traits",
        "cartography",
        "heterogeneity",
        "survival",
        "report_tables",
        "report_images",
        "qupath",
        "viewer",
    ):
        assert f'label = "{rule}"' in graph, rule


def test_nothing_left_to_do_after_the_demo(demo: Path) -> None:
    process = snakemake(demo, "-n", "--cores", "2")
    assert "Nothing to be done" in process.stdout + process.stderr


def test_retraining_one_trait_reruns_only_its_downstream(demo: Path) -> None:
    models = [str(RESULTS / f"models/MKI67/split_{k}/model.keras") for k in range(N_SPLITS)]
    assert dry_run(demo, "--forcerun", *models) == {"train": N_SPLITS, **DOWNSTREAM_OF_ONE_TRAIT}


def test_retraining_one_split(demo: Path) -> None:
    assert dry_run(demo, "--forcerun", str(RESULTS / "models/miR-17-5p/split_1/model.keras")) == {
        "train": 1,
        **DOWNSTREAM_OF_ONE_TRAIT,
    }


def test_adding_a_trait_runs_only_its_jobs_and_the_summaries(demo: Path) -> None:
    config = demo / "config" / "extra_trait.yaml"
    import yaml

    settings = yaml.safe_load((demo / "config" / "config.yaml").read_text())
    settings["traits"].append({"name": "ESR1", "source": "mrna", "id": "ESR1|2099"})
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    planned = dry_run(demo, "--configfile", str(config))
    assert planned == {"labels_trait": 1, "labels_summary": 1, "train": N_SPLITS, **DOWNSTREAM_OF_ONE_TRAIT}


def test_changing_a_survival_threshold_reruns_only_survival(demo: Path) -> None:
    import yaml

    settings = yaml.safe_load((demo / "config" / "config.yaml").read_text())
    settings["survival"]["thresholds"][1] = {"low_max": 0.25, "high_min": 0.75}
    config = demo / "config" / "thresholds.yaml"
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    assert dry_run(demo, "--configfile", str(config)) == {"survival": 1, "report_tables": 1, "all": 1}


def override_config(workdir: Path, name: str, overrides: dict) -> Path:
    """The run's own config with nested overrides, written to config/{name}.yaml for `--configfile`."""
    import yaml

    settings = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    path = workdir / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(deep_update(settings, overrides), sort_keys=False))
    return path


DOWNSTREAM_OF_TRAINING = DOWNSTREAM_OF_ONE_TRAIT | {"train": len(TRAITS) * N_SPLITS, "predict": len(TRAITS)}


@pytest.mark.parametrize("setting", [{"predict_batch_size": 7}, {"workers": 3}, {"threads": 2, "mem_mb": 2000}])
def test_runtime_training_settings_rerun_nothing(demo: Path, setting: dict) -> None:
    """Batch size of scoring, decoding workers, threads and memory change how jobs run, not what they write."""
    config = override_config(demo, "runtime_training", {"training": setting})
    assert dry_run(demo, "--configfile", str(config)) == {}


def test_a_trajectory_setting_retrains_every_model(demo: Path) -> None:
    config = override_config(demo, "learning_rate", {"training": {"learning_rate": 0.002}})
    assert dry_run(demo, "--configfile", str(config)) == DOWNSTREAM_OF_TRAINING


def tiled_slides(dry_run_stdout: str) -> list[str]:
    """Slide ids of the tile_slide jobs a dry run plans (only tile_slide has the slide_id wildcard)."""
    return sorted(re.findall(r"^\s*wildcards: slide_id=(\S+)$", dry_run_stdout, flags=re.MULTILINE))


def test_mpp_override_of_one_slide_retiles_only_that_slide(demo: Path) -> None:
    slide = sorted(passed_slides(read(demo, "qc/slides.tsv"))["slide_id"])[0]
    config = override_config(demo, "mpp_override", {"tiling": {"mpp_overrides": {slide: 0.25}}})
    process = snakemake(demo, "-n", "--cores", "2", "--configfile", str(config))
    assert tiled_slides(process.stdout) == [slide]
    # its tile store is rewritten, so the QC table and everything trained on the stores follow
    assert scheduled_rules(process.stdout) == {"tile_slide": 1, "qc_summary": 1, "splits": 1, **DOWNSTREAM_OF_TRAINING}


def test_mpp_override_of_a_slide_not_in_the_cohort_retiles_nothing(demo: Path) -> None:
    overrides = {"tiling": {"mpp_overrides": {"not-a-slide-of-the-demo": 0.25}}}
    config = override_config(demo, "mpp_override_other", overrides)
    assert dry_run(demo, "--configfile", str(config)) == {}


def report_json(page: str, name: str) -> dict:
    """One of the JSON objects (results, categories) that Snakemake's report page declares as `var name = {...};`."""
    match = re.search(rf"var {name} = (\{{.*?\}});\n", page, flags=re.DOTALL)
    assert match, f"report.html declares no {name}"
    return json.loads(match.group(1))


def test_report_zip_shows_the_tables_as_html_in_the_pipeline_categories(demo: Path, tmp_path: Path) -> None:
    snakemake(demo, "--report", str(RESULTS / "report.zip"), timeout=600)
    with zipfile.ZipFile(demo / RESULTS / "report.zip") as archive:
        archive.extractall(tmp_path)
    (report,) = tmp_path.rglob("report.html")
    (table1_page,) = tmp_path.rglob("table1.html")
    page = table1_page.read_text(encoding="utf-8")
    assert page.count("<table") == 1
    table1 = read(demo, "evaluation/table1.tsv")
    assert page.count("<tr>") == len(table1) + 1
    for trait, value in zip(table1["trait"], table1["test_auc_ensemble"]):
        assert f">{trait}</td>" in page and re.search(rf">{value:.2f}( \[[^<]*)?</td>", page), (trait, value)
    text = report.read_text(encoding="utf-8")
    categories = report_json(text, "categories")
    assert set(categories) == {"1. Slide QC", "2. Labels", "3. Evaluation", "4. Heterogeneity", "5. Survival"}
    assert not [name for subcategories in categories.values() for name in subcategories if name == "Other"]
    results = report_json(text, "results")
    pictures = [result for result in results.values() if result["job_properties"]["rule"] == "report_images"]
    maps = [result for result in pictures if set(result["labels"]) == {"slide", "HTI", "HTA"}]
    thumbnails = [result for result in pictures if set(result["labels"]) == {"slide", "QC"}]
    assert len(maps) == len(passed_slides(read(demo, "qc/slides.tsv"))) and len(pictures) == len(maps) + len(thumbnails)
    assert len(thumbnails) == len(read(demo, "qc/slides.tsv"))
    assert all(re.fullmatch(r"TCGA-\w\w-\w{4} DX\d", result["labels"]["slide"]) for result in pictures)
    assert all(result["mime_type"] == "image/jpeg" for result in pictures)
