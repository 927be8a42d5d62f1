"""End to end, stage `embed` with a Keras encoder: a random-initialised small encoder (a saved .keras model and a
local weights file) embeds a small demo cohort in groups of slides, aligned with the tile stores; editing the
encoder's settings or weights file re-embeds, a runtime setting does not."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from workflow_runner import deep_update, make_workdir, scheduled_rules, snakemake
from workflow_scripts.features.featurestore import feature_files, read_features
from workflow_scripts.features.summary import read_feature_rows
from workflow_scripts.slides.qc_table import passed_slides, read_qc_table
from workflow_scripts.slides.tilestore import TileStore

pytestmark = [pytest.mark.slow]

COHORT = "encoder_demo"
RESULTS = Path("results") / COHORT
SUMMARY = str(RESULTS / "features/summary.tsv")
SLIDES_PER_JOB = 4


def tiny_backbone(seed: int) -> keras.Model:
    """A two-convolution backbone, random weights from `seed`: (B, 32, 32, 3) -> (B, 8, 8, 8) feature maps."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    hidden = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(8, 3, strides=2, padding="same")(hidden), name="tiny")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Embedded stores of an 8-patient demo cohort, the encoder's files beside the config."""
    workdir = tmp_path_factory.mktemp("encoder")
    tiny_backbone(1).save(workdir / "tiny.keras")
    tiny_backbone(2).save_weights(workdir / "tiny.weights.h5")
    overrides = {
        "cohort": COHORT,
        "demo": {"n_patients": 8},
        "expression": {"mrna": f"resources/{COHORT}/expression/mrna.tsv",
                       "mirna": f"resources/{COHORT}/expression/mirna.csv"},
        "clinical": {"path": f"resources/{COHORT}/clinical/data_clinical_patient.txt"},
        "model": {"family": "features"},
        "features": {"source": "encoder", "encoder": {
            "name": str(workdir / "tiny.keras"), "weights": str(workdir / "tiny.weights.h5"), "input_px": 32,
            "normalisation": "unit", "pooling": "avg", "batch_size": 16, "slides_per_job": SLIDES_PER_JOB}},
        "training": {"device": "cpu", "threads": 1},
    }  # fmt: skip
    make_workdir(workdir, overrides)
    snakemake(workdir, "--cores", "2", SUMMARY, timeout=1800)
    return workdir


def test_every_slide_is_embedded_in_store_order(run: Path) -> None:
    slides = sorted(passed_slides(read_qc_table(run / RESULTS / "qc/slides.tsv"))["slide_id"])
    groups = sorted((run / RESULTS / "features/encoded").iterdir())
    assert len(groups) == math.ceil(len(slides) / SLIDES_PER_JOB) and len(slides) >= 8
    paths = feature_files(groups)
    assert [path.stem for path in paths] == slides
    summary = read_feature_rows([run / SUMMARY])
    assert (summary["status"] == "pass").all() and (summary["n_unmatched"] == 0).all()
    assert (summary["dim"] == 8).all() and summary["weights_sha256"].nunique() == 1
    for path in paths:
        features = read_features(path)
        with TileStore(run / RESULTS / f"tiles/{path.stem}.h5") as store:
            assert features.n_tiles == store.n_tiles > 0
            np.testing.assert_array_equal(features.coords, store.coords)
        np.testing.assert_array_equal(features.tile_rows, np.arange(features.n_tiles))
        assert features.attrs.source == "encoder" and features.attrs.input_px == 32
        assert np.isfinite(features.features).all() and features.features.std() > 0


def dry_run(workdir: Path, overrides: dict, name: str) -> dict[str, int]:
    """Jobs a dry run towards the feature summary schedules with the run's config plus `overrides`."""
    settings = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    path = workdir / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(deep_update(settings, overrides), sort_keys=False))
    process = snakemake(workdir, SUMMARY, "-n", "--cores", "2", "--configfile", str(path))  # --configfile takes 1+
    return scheduled_rules(process.stdout)


def n_groups(workdir: Path) -> int:
    """The embed jobs of the run."""
    return len(list((workdir / RESULTS / "features/encoded").iterdir()))


def test_an_encoder_setting_re_embeds_and_a_runtime_one_does_not(run: Path) -> None:
    changed = dry_run(run, {"features": {"encoder": {"normalisation": "inception"}}}, "normalisation")
    assert changed == {"embed": n_groups(run), "features_summary": 1}
    assert dry_run(run, {"features": {"encoder": {"batch_size": 7}}, "training": {"workers": 3}}, "runtime") == {}


def test_new_weights_re_embed(run: Path) -> None:
    tiny_backbone(3).save_weights(run / "tiny.weights.h5")
    assert dry_run(run, {}, "weights") == {"embed": n_groups(run), "features_summary": 1}
