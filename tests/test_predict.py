"""Per-slide prediction files: aligned with the stores by coordinates, one score column per split model."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from test_tiledata import write_signal_stores
from workflow_scripts.learning.model import build_model, save_model
from workflow_scripts.learning.predict import predict_trait
from workflow_scripts.learning.predictions import SlidePredictions, read_predictions, write_predictions
from workflow_scripts.learning.tiledata import fit_tile
from workflow_scripts.slides.tilestore import TileStore


@pytest.fixture(scope="module")
def split_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[keras.Model]]:
    """Two differently initialised 75 px models standing for the models of splits 0 and 2, saved and in memory."""
    folder = tmp_path_factory.mktemp("models")
    paths, models = [], []
    for split in (0, 2):
        keras.utils.set_random_seed(split)
        path = folder / f"split_{split}" / "model.keras"
        path.parent.mkdir()
        models.append(build_model(75))
        save_model(models[-1], path)
        paths.append(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.keras"]  # save_model leaves no temporary behind
    return paths, models


def test_predictions_align_with_stores_and_models(split_models: tuple, tmp_path: Path) -> None:
    paths, models = split_models
    stores = write_signal_stores(tmp_path / "tiles", [1, 0], tiles_per_slide=7)
    empty = write_signal_stores(tmp_path / "empty", [1], tiles_per_slide=0)[0]
    empty = empty.rename(tmp_path / "tiles" / "slide_empty.h5")
    output = tmp_path / "predictions" / "MKI67"
    # batches of 4 span slide boundaries (7 + 0 + 7 tiles): each tile's score must still land on its own slide
    written = predict_trait(paths, [0, 2], [stores[0], empty, stores[1]], output, "MKI67", batch_size=4)
    assert sorted(path.name for path in output.iterdir()) == ["slide_00.h5", "slide_01.h5", "slide_empty.h5"]
    assert written == [output / "slide_00.h5", output / "slide_empty.h5", output / "slide_01.h5"]

    for store_path in stores:
        read = read_predictions(output / store_path.name, "MKI67")
        coords, scores = read.coords, read.scores
        assert (read.splits, read.slide_id, read.trait) == ((0, 2), store_path.stem, "MKI67")
        with TileStore(store_path) as store:
            np.testing.assert_array_equal(coords, store.coords)
            assert coords.dtype == np.int64
            tiles = np.stack([fit_tile(tile, 75) for tile in store.read_tiles(np.arange(store.n_tiles))])
        assert scores.shape == (7, 2) and scores.dtype == np.float32
        for column, model in enumerate(models):  # column j is the model of split j, tile i the store's tile i
            expected = keras.ops.convert_to_numpy(model(tiles, training=False)).reshape(-1)
            np.testing.assert_allclose(scores[:, column], expected, rtol=1e-4, atol=1e-5)
        assert not np.allclose(scores[:, 0], scores[:, 1])

    read = read_predictions(output / "slide_empty.h5")
    assert read.coords.shape == (0, 2) and read.scores.shape == (0, 2) and read.slide_id == "slide_empty"


def test_prediction_files_are_byte_reproducible(tmp_path: Path) -> None:
    coords, scores = np.array([[0, 0], [96, 0]]), np.array([[0.25, 0.5], [0.75, 1.0]])
    write_predictions(tmp_path / "a.h5", SlidePredictions("S1", "T", coords, scores, (0, 1)))
    write_predictions(tmp_path / "b.h5", SlidePredictions("S1", "T", coords, scores, (0, 1)))
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    read = read_predictions(tmp_path / "a.h5")
    np.testing.assert_array_equal(read.coords, coords)
    np.testing.assert_array_equal(read.scores, scores.astype(np.float32))
    assert (read.splits, read.slide_id, read.trait) == ((0, 1), "S1", "T")
    with pytest.raises(ValueError, match="expected U"):
        read_predictions(tmp_path / "a.h5", "U")


def test_mismatched_models_and_splits_are_refused(split_models: tuple, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 models but 1 splits"):
        predict_trait(split_models[0], [0], [], tmp_path / "out", "T")
    assert not (tmp_path / "out").exists()


def test_inference_demanding_a_gpu_fails_before_loading_models(split_models: tuple, tmp_path: Path) -> None:
    from workflow_scripts.learning.devices import GpuUnavailableError

    with pytest.raises(GpuUnavailableError, match="training.device is gpu, but TensorFlow .* sees no GPU"):
        predict_trait(split_models[0], [0, 2], [], tmp_path / "out", "T", device="gpu")
    assert not (tmp_path / "out").exists()
