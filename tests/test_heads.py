"""Per-trait heads on tile features: settings, network, in-memory feature index, training, exact resume, prediction.

Feature stores are real files written by `featurestore.write_features`. Their features are Gaussian noise with, where
a test plants one, the slide's label carried by dimension 0 (tile value = (2 * label - 1) * signal + noise), so the
answers are known: a planted signal is learnt (held-out slide AUC 1.0, tile accuracy near Phi(signal)), noise is not
(held-out AUC near 0.5). Heads are tiny (D <= 16), so each training takes a few seconds.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from qc_rows import qc_frame
from test_tiledata import write_signal_stores
from workflow_scripts.common.tables import write_tsv
from workflow_scripts.features.featurestore import FeatureAttrs, SlideFeatures, feature_path, write_features
from workflow_scripts.learning.checkpoint import latest_checkpoint
from workflow_scripts.learning.featuredata import build_feature_index, feature_batches, ordered_feature_batches
from workflow_scripts.learning.heads import HeadSettings, build_head, head_training_settings
from workflow_scripts.learning.model import load_model, save_model
from workflow_scripts.learning.predict import predict_trait_features
from workflow_scripts.learning.predictions import read_predictions
from workflow_scripts.learning.run_outputs import (
    DEVICE_KEYS,
    FAMILY_KEYS,
    HEAD_KEYS,
    METRICS_KEYS,
    read_history,
    read_metrics_file,
)
from workflow_scripts.learning.settings import RunSpec, TrainingOutputs, TrainingSettings
from workflow_scripts.learning.slide_score import grouped_slide_scores, slide_auc
from workflow_scripts.learning.throughput import RESOURCE_KEYS
from workflow_scripts.learning.tiledata import batch_examples, build_tile_index
from workflow_scripts.learning.train import train_head, train_head_from_tables

SHA = "ab" * 32
SETTINGS = TrainingSettings(
    batch_size=32, learning_rate=0.01, evals_per_epoch=2, lr_patience=2, stop_patience=3, max_evals=10, workers=1
)
RUN = RunSpec(trait="MKI67", split=0, seed=7)


def write_feature_stores(
    folder: Path, labels: list[int], tiles: int = 32, dim: int = 8, signal: float = 0.0, **options: object
) -> list[Path]:
    """One feature store per label (slide_00, ...): noise, plus the label planted in dimension 0 when signal > 0.

    Options: seed (0), encoder ("toy"), first (number of the first slide, 0), tile_rows (rows of a larger tile store).
    """
    rng = np.random.default_rng(int(options.get("seed", 0)))
    paths = []
    for offset, label in enumerate(labels):
        slide_id = f"slide_{int(options.get('first', 0)) + offset:02d}"
        features = rng.normal(size=(tiles, dim))
        features[:, 0] += (2 * label - 1) * signal
        rows = np.asarray(options.get("tile_rows", np.arange(tiles)), np.int64)
        coords = np.stack([rows % 4, rows // 4], axis=1) * 448
        attrs = FeatureAttrs("encoder", str(options.get("encoder", "toy")), SHA, 224, int(rows.max(initial=-1)) + 1)
        slide = SlideFeatures(slide_id, features, coords, rows, attrs)
        paths.append(write_features(feature_path(folder, slide_id), slide))
    return paths


def outputs_in(folder: Path) -> TrainingOutputs:
    """The standard output files of a training in `folder`."""
    return TrainingOutputs.beside(folder / "model.keras", folder / "history.tsv", folder / "metrics.json")


def held_out_scores(model_path: Path, stores: list[Path], folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Tile probabilities (concatenated) and slide scores of held-out stores, through predict_trait_features."""
    written = predict_trait_features([model_path], [0], stores, folder, "MKI67", batch_size=64, log=lambda line: None)
    predictions = [read_predictions(path, "MKI67").scores[:, 0] for path in written]
    slide_scores = grouped_slide_scores(np.concatenate(predictions), [len(p) for p in predictions], 0.5)
    return np.concatenate(predictions), slide_scores


def test_head_settings_from_config_and_training_settings() -> None:
    assert HeadSettings.from_config({}) == HeadSettings("logistic", 256, 0.0, 256, 0.001)
    with pytest.raises(ValueError, match=r"features\.head\.hiden_units"):
        HeadSettings.from_config({"hiden_units": 3})
    with pytest.raises(ValueError, match=r"features\.head\.kind"):
        HeadSettings.from_config({"kind": "forest"})
    with pytest.raises(ValueError, match=r"features\.head\.dropout"):
        HeadSettings.from_config({"dropout": 1.0})
    head = HeadSettings.from_config({"kind": "logistic", "batch_size": 64, "learning_rate": 0.01})
    training = {"input_px": 75, "bn_momentum": 0.9, "batch_size": 16, "learning_rate": 0.5, "evals_per_epoch": 4,
                "stop_patience": 4, "threads": 1, "max_val_tiles_per_slide": 16}
    settings = head_training_settings(training, head)
    assert (settings.batch_size, settings.learning_rate, settings.evals_per_epoch) == (64, 0.01, 4)
    assert (settings.stop_patience, settings.max_val_tiles_per_slide) == (4, 16)
    assert (settings.input_px, settings.bn_momentum) == (TrainingSettings().input_px, None)  # Inception-only: dropped
    with pytest.raises(ValueError, match="lr_patinece"):
        head_training_settings({"lr_patinece": 3}, head)


def test_heads_compute_the_known_function_and_survive_save_and_load(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float16)
    logistic = build_head(3, HeadSettings(kind="logistic"))
    w, b = np.array([[0.5], [-1.0], [2.0]], np.float32), np.array([0.25], np.float32)
    logistic.set_weights([w, b])
    expected = 1 / (1 + np.exp(-(x.astype(np.float64) @ w + b)))
    out = keras.ops.convert_to_numpy(logistic(x))
    assert out.shape == (5, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logistic(x.astype(np.float32))), expected, rtol=1e-5)
    mlp = build_head(3, HeadSettings(kind="mlp", hidden_units=4, dropout=0.5))
    assert [layer.name for layer in mlp.layers] == ["features", "hidden", "dropout", "trait_probability"]
    w1, b1, w2, b2 = mlp.get_weights()
    assert (w1.shape, w2.shape) == ((3, 4), (4, 1))
    hidden = np.maximum(x.astype(np.float64) @ w1 + b1, 0)
    expected_mlp = 1 / (1 + np.exp(-(hidden @ w2 + b2)))  # inference: dropout off
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mlp(x, training=False)), expected_mlp, rtol=1e-4)
    save_model(mlp, tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(mlp(x)))
    assert [layer.name for layer in build_head(3, HeadSettings(kind="mlp", dropout=0.0)).layers] == [
        "features", "hidden", "trait_probability"
    ]


def test_feature_index_reads_every_store_once_and_subsamples_like_the_tile_index(tmp_path: Path) -> None:
    stores = write_feature_stores(tmp_path / "features", [1, 0, 1], tiles=8, dim=4)
    empty = write_feature_stores(tmp_path / "empty", [0], tiles=0, dim=4, first=3)[0]
    index = build_feature_index([*stores, empty], [1, 0, 1, 0])
    assert (index.n_tiles, index.n_slides, index.dim) == (24, 3, 4) and index.features.dtype == np.float16
    np.testing.assert_array_equal(index.tiles_per_store(), [8, 8, 8, 0])
    np.testing.assert_array_equal(index.labels, np.repeat([1, 0, 1], 8))
    np.testing.assert_array_equal(index.tile_ids, np.tile(np.arange(8), 3))
    rng = np.random.default_rng(0)  # the writer's draws: slide by slide, (8, 4) normals each
    np.testing.assert_array_equal(index.features, np.concatenate([rng.normal(size=(8, 4)) for _ in range(3)]).astype(
        np.float16))
    assert index.sources[3] is None and index.source().encoder == "toy" and index.source().weights_sha256 == SHA
    # validation subsampling: the same seeded rows as build_tile_index keeps of tile stores of the same sizes
    tile_stores = write_signal_stores(tmp_path / "tiles", [1, 0, 1], tiles_per_slide=8)
    subset = build_feature_index(stores, [1, 0, 1], max_tiles_per_store=3, seed=5)
    np.testing.assert_array_equal(subset.tile_ids, build_tile_index(tile_stores, [1, 0, 1], 3, seed=5).tile_ids)
    np.testing.assert_array_equal(subset.features[:3], index.features[subset.tile_ids[:3]])
    batches = list(ordered_feature_batches(index, 10))
    assert [len(batch) for batch in batches] == [10, 10, 4]
    np.testing.assert_array_equal(np.concatenate(batches), index.features)


def test_training_batches_follow_the_tile_stream_exactly(tmp_path: Path) -> None:
    stores = write_feature_stores(tmp_path, [1, 0, 1], tiles=7, dim=3)
    index = build_feature_index(stores, [1, 0, 1])  # 21 tiles: batches of 8 straddle epoch boundaries
    stream = feature_batches(index, 8, seed=11)
    for step in range(12):
        features, labels = next(stream)
        rows, _ = batch_examples(21, 8, 11, step)
        np.testing.assert_array_equal(features, index.features[rows])
        np.testing.assert_array_equal(labels, index.labels[rows].reshape(-1, 1))
    resumed = next(feature_batches(index, 8, seed=11, start_step=9))
    np.testing.assert_array_equal(resumed[0], index.features[batch_examples(21, 8, 11, 9)[0]])


def test_stores_of_different_encoders_are_refused_naming_the_slides(tmp_path: Path) -> None:
    first = write_feature_stores(tmp_path, [1, 0], dim=4, encoder="uni")
    second = write_feature_stores(tmp_path, [1, 0], dim=4, encoder="conch", first=2)
    train_index = build_feature_index(first, [1, 0])
    val_index = build_feature_index(second, [1, 0])
    with pytest.raises(ValueError, match=r"'uni'.*slide_00', 'slide_01'.*'conch'.*'slide_02', 'slide_03'"):
        train_head(train_index, val_index, SETTINGS, HeadSettings(), RUN, outputs_in(tmp_path / "out"))
    wider = write_feature_stores(tmp_path / "wide", [1], dim=6, encoder="uni", first=4)
    with pytest.raises(ValueError, match=r"dim 4.*dim 6.*slide_04"):
        build_feature_index([*first, *wider])
    assert not (tmp_path / "out" / "model.keras").exists()


def write_tables(folder: Path, roles: dict[str, list[int]]) -> tuple[Path, Path, Path]:
    """Labels, splits and QC tables of one patient per slide, slides numbered in role order (train, val, then test)."""
    rows, number = [], 0
    for role, labels in roles.items():
        for label in labels:
            rows.append({"slide_id": f"slide_{number:02d}", "patient_id": f"P{number:02d}", "role": role,
                         "label": label})
            number += 1
    table = pd.DataFrame(rows)
    labels = table.assign(trait="MKI67", value=0.0, percentile=0.0, set="train_pool", median_label=table["label"])
    write_tsv(labels[["patient_id", "trait", "value", "percentile", "label", "set", "median_label"]], folder / "l.tsv")
    write_tsv(pd.DataFrame({"patient_id": table["patient_id"], "test": table["role"] == "test",
                            "split_0": table["role"]}), folder / "s.tsv")
    write_tsv(qc_frame(table.assign(status="pass", n_tiles=32)[["slide_id", "patient_id", "status", "n_tiles"]]),
              folder / "qc.tsv")
    return folder / "l.tsv", folder / "s.tsv", folder / "qc.tsv"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """An MLP head trained through train_head_from_tables on a planted signal (signal 2: tile accuracy ~ 97.7%)."""
    folder = tmp_path_factory.mktemp("planted")
    roles = {"train": [1, 0] * 4, "val": [1, 0] * 2, "test": [1, 0] * 3}
    labels = [label for values in roles.values() for label in values]
    stores = write_feature_stores(folder / "features", labels, tiles=32, dim=16, signal=2.0, seed=3)
    tables = write_tables(folder, roles)
    outputs = outputs_in(folder / "model")
    head = HeadSettings(kind="mlp", hidden_units=8, batch_size=32, learning_rate=0.01)
    metrics = train_head_from_tables(*tables, stores[:12], SETTINGS, head, RUN, outputs, log=lambda line: None)
    return outputs, metrics, stores, labels


def test_a_planted_signal_is_learnt_and_holds_on_held_out_slides(planted: tuple, tmp_path: Path) -> None:
    outputs, metrics, stores, labels = planted
    assert metrics["best_val_slide_auc"] == 1.0
    assert (metrics["n_train_slides"], metrics["n_val_slides"], metrics["n_train_tiles"]) == (8, 4, 256)
    tiles, slide_scores = held_out_scores(outputs.model, stores[12:], tmp_path / "predictions")
    assert slide_auc(np.array(labels[12:]), slide_scores) == 1.0
    tile_labels = np.repeat(labels[12:], 32)
    assert np.mean((tiles > 0.5) == tile_labels) > 0.9


def test_metrics_name_the_family_head_and_encoder(planted: tuple) -> None:
    outputs, metrics, _, _ = planted
    assert read_metrics_file(outputs.metrics) == metrics
    expected = {*METRICS_KEYS, *DEVICE_KEYS, *RESOURCE_KEYS, *FAMILY_KEYS, *HEAD_KEYS}
    assert set(metrics) == expected
    assert (metrics["model_family"], metrics["head_kind"], metrics["feature_dim"]) == ("features", "mlp", 16)
    assert (metrics["encoder"], metrics["weights_sha256"], metrics["dtype_policy"]) == ("toy", SHA, "float32")
    history = read_history(outputs.history)
    assert list(history["eval_step"]) == list(range(1, metrics["n_evals"] + 1))
    assert metrics["stop_reason"] in ("no_improvement", "max_evals") and not outputs.checkpoint.exists()


def test_noise_gives_a_held_out_auc_near_one_half(tmp_path: Path) -> None:
    labels = [1, 0] * 30
    stores = write_feature_stores(tmp_path / "features", labels, tiles=16, dim=8, seed=4)
    train_index = build_feature_index(stores[:16], labels[:16])
    val_index = build_feature_index(stores[16:20], labels[16:20])
    outputs = outputs_in(tmp_path / "model")
    settings = replace(SETTINGS, max_evals=4)
    train_head(train_index, val_index, settings, HeadSettings(kind="logistic"), RUN, outputs, log=lambda line: None)
    _, slide_scores = held_out_scores(outputs.model, stores[20:], tmp_path / "predictions")
    # 20 + 20 held-out slides: the AUC of a score unrelated to the labels has a standard deviation of ~0.09
    assert abs(slide_auc(np.array(labels[20:]), slide_scores) - 0.5) < 0.25


def test_logistic_head_separates_linearly_separable_features(tmp_path: Path) -> None:
    labels = [1, 0] * 5
    stores = write_feature_stores(tmp_path / "features", labels, tiles=16, dim=4, signal=8.0, seed=5)
    train_index, val_index = build_feature_index(stores[:6], labels[:6]), build_feature_index(stores[6:], labels[6:])
    outputs = outputs_in(tmp_path / "model")
    head = HeadSettings(kind="logistic", batch_size=32, learning_rate=0.2)
    metrics = train_head(train_index, val_index, SETTINGS, head, RUN, outputs, log=lambda line: None)
    assert metrics["best_val_slide_auc"] == 1.0 and metrics["head_kind"] == "logistic"
    probabilities = keras.ops.convert_to_numpy(load_model(outputs.model)(val_index.features)).reshape(-1)
    assert np.all((probabilities > 0.5) == (val_index.labels == 1))  # margin 8 - |noise|: every tile right
    assert [w.shape for w in load_model(outputs.model).get_weights()] == [(4, 1), (1,)]


def test_resume_after_a_kill_gives_bit_identical_weights_and_history(tmp_path: Path) -> None:
    labels = [1, 0] * 4
    stores = write_feature_stores(tmp_path / "features", labels, tiles=24, dim=6, signal=0.5, seed=6)
    indexes = build_feature_index(stores[:6], labels[:6]), build_feature_index(stores[6:], labels[6:])
    head = HeadSettings(kind="mlp", hidden_units=8, dropout=0.25, batch_size=16, learning_rate=0.01)
    settings = replace(SETTINGS, max_evals=5, stop_patience=10)
    reference, resumed = outputs_in(tmp_path / "reference"), outputs_in(tmp_path / "resumed")
    killed = tmp_path / "killed_after_eval_2"

    def keep_eval_2(eval_step: int) -> None:
        if eval_step == 2:
            shutil.copytree(reference.checkpoint, killed, copy_function=os.link)

    train_head(*indexes, settings, head, RUN, reference, log=lambda line: None, after_evaluation=keep_eval_2)
    shutil.copytree(killed, resumed.checkpoint)
    assert latest_checkpoint(resumed.checkpoint).name == "eval_000002"
    train_head(*indexes, settings, head, RUN, resumed, log=lambda line: None)
    pd.testing.assert_frame_equal(read_history(resumed.history), read_history(reference.history), check_exact=True)
    for ours, theirs in zip(load_model(resumed.model).get_weights(), load_model(reference.model).get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    # a changed head cannot resume the checkpoint: the run key holds the head's settings
    shutil.copytree(killed, tmp_path / "changed" / "checkpoint")
    with pytest.raises(ValueError, match="different run"):
        train_head(*indexes, settings, replace(head, hidden_units=9), RUN, outputs_in(tmp_path / "changed"))


def test_predictions_carry_the_feature_stores_coords_and_the_heads_scores(tmp_path: Path) -> None:
    rows = np.array([0, 2, 3, 6, 9])  # imported features missing some of the tile store's 10 tiles
    stores = write_feature_stores(tmp_path / "features", [1, 0], tiles=5, dim=4, tile_rows=rows, seed=8)
    empty = write_feature_stores(tmp_path / "features", [0], tiles=0, dim=4, first=2)[0]
    paths = []
    for split in (0, 3):
        keras.utils.set_random_seed(split)
        paths.append(tmp_path / f"split_{split}" / "model.keras")
        paths[-1].parent.mkdir()
        save_model(build_head(4, HeadSettings(kind="mlp", hidden_units=3)), paths[-1])
    output = tmp_path / "predictions" / "MKI67"
    written = predict_trait_features(paths, [0, 3], [stores[0], empty, stores[1]], output, "MKI67", batch_size=4)
    assert written == [output / "slide_00.h5", output / "slide_02.h5", output / "slide_01.h5"]
    index = build_feature_index(stores)
    for number, store in enumerate(stores):
        read = read_predictions(output / store.name, "MKI67")
        assert (read.splits, read.slide_id) == ((0, 3), store.stem)
        np.testing.assert_array_equal(read.coords, np.stack([rows % 4, rows // 4], axis=1) * 448)
        features = index.features[index.store_ids == number]
        for column, path in enumerate(paths):
            expected = keras.ops.convert_to_numpy(load_model(path)(features)).reshape(-1)
            np.testing.assert_allclose(read.scores[:, column], expected, rtol=1e-5, atol=1e-6)
    assert read_predictions(output / "slide_02.h5").scores.shape == (0, 2)
    other = write_feature_stores(tmp_path / "other", [1], dim=4, encoder="conch", first=5)[0]
    with pytest.raises(ValueError, match="different encoders"):
        predict_trait_features(paths, [0, 3], [stores[0], other], tmp_path / "refused", "MKI67")
    with pytest.raises(ValueError, match="width 6, the heads take 4"):
        wide = write_feature_stores(tmp_path / "wide", [1], dim=6, first=6)[0]
        predict_trait_features(paths, [0, 3], [wide], tmp_path / "refused", "MKI67")
    assert not (tmp_path / "refused").exists()
