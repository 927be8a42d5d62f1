"""Score every tile of every slide with all split models of a trait, reading and decoding each slide's tiles once.

Output: one predictions/{trait}/{slide_id}.h5 per slide in the format `learning.predictions` owns; the whole
per-trait folder is written under a temporary name and renamed when every slide is done. Both model families write
it: `predict_trait` scores Inception v3 models on the tiles of tile stores (coords = the tile store's), and
`predict_trait_features` scores heads (`heads`) on the features of feature stores (coords = the feature store's,
which may be a subset of the tile store's tiles when imported features miss some); the stores of one job must come
from one encoder (`featuredata.common_source`) of the width the heads take.

Devices as in training (`devices`): the job fails at once when it was given a GPU it cannot use, and with several GPUs
the models are replicated on all of them (MirroredStrategy / JAX DataParallel) and scored in batches of batch_size x
replicas.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.features.featurestore import read_features
from workflow_scripts.learning.devices import data_parallel, select_devices
from workflow_scripts.learning.featuredata import FeatureSource, common_source
from workflow_scripts.learning.model import load_model
from workflow_scripts.learning.predictions import SlidePredictions, prediction_path, write_predictions
from workflow_scripts.learning.tiledata import slide_batches
from workflow_scripts.slides.tilestore import TileStore


def model_input_px(model: keras.Model) -> int:
    """The tile size a model was built for."""
    shape = model.inputs[0].shape
    if shape[1] != shape[2]:
        raise ValueError(f"model {model.name} takes non-square inputs {shape}")
    return int(shape[1])


def model_feature_dim(model: keras.Model) -> int:
    """The feature width a head was built for."""
    shape = model.inputs[0].shape
    if len(shape) != 2:
        raise ValueError(f"model {model.name} takes inputs {shape}, not features (batch, D): is it a head?")
    return int(shape[1])


def score_batch(models: Sequence[keras.Model], batch: np.ndarray, batch_size: int) -> np.ndarray:
    """(n, n_models) probabilities of one decoded batch; short batches are padded so each model keeps one shape."""
    n = len(batch)
    if n < batch_size:
        batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
    columns = [np.asarray(model.predict_on_batch(batch), np.float32).reshape(-1)[:n] for model in models]
    return np.stack(columns, axis=1)


class _SharedBatches:
    """Tiles of consecutive stores packed into full batches; scores are handed back per store, in store order."""

    def __init__(self, models: Sequence[keras.Model], batch_size: int) -> None:
        self.models = models
        self.batch_size = batch_size
        self.pending: list[tuple[int, int, np.ndarray]] = []  # (store number, first row, decoded tiles) not scored
        self.n_pending = 0
        self.coords: dict[int, np.ndarray] = {}
        self.scores: dict[int, np.ndarray] = {}
        self.unscored: dict[int, int] = {}
        self.next_to_yield = 0

    def add_store(self, number: int, coords: np.ndarray) -> None:
        """Register store `number` with its tile coordinates before its tiles arrive."""
        self.coords[number] = coords
        self.scores[number] = np.zeros((len(coords), len(self.models)), np.float32)
        self.unscored[number] = len(coords)

    def add_tiles(self, number: int, row: int, tiles: np.ndarray) -> None:
        """Queue decoded tiles of store `number` starting at `row`, scoring every full batch."""
        self.pending.append((number, row, tiles))
        self.n_pending += len(tiles)
        while self.n_pending >= self.batch_size:
            self.score_front(self.batch_size)

    def score_front(self, n_rows: int) -> None:
        """Score the first `n_rows` queued tiles as one batch and file their probabilities under their stores."""
        pieces, owners = [], []
        while n_rows > 0:
            number, row, tiles = self.pending.pop(0)
            taken = min(n_rows, len(tiles))
            pieces.append(tiles[:taken])
            owners.append((number, row, taken))
            if taken < len(tiles):
                self.pending.insert(0, (number, row + taken, tiles[taken:]))
            n_rows -= taken
            self.n_pending -= taken
        probabilities = score_batch(self.models, np.concatenate(pieces), self.batch_size)
        position = 0
        for number, row, taken in owners:
            self.scores[number][row : row + taken] = probabilities[position : position + taken]
            self.unscored[number] -= taken
            position += taken

    def flush(self) -> None:
        """Score the queued tiles that do not fill a batch (at the end)."""
        if self.n_pending:
            self.score_front(self.n_pending)

    def finished(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (store number, coords, probabilities) of the fully scored stores next in order."""
        while self.next_to_yield in self.unscored and self.unscored[self.next_to_yield] == 0:
            number = self.next_to_yield
            del self.unscored[number]
            yield number, self.coords.pop(number), self.scores.pop(number)
            self.next_to_yield += 1


def score_stores(
    models: Sequence[keras.Model],
    store_paths: Sequence[str | os.PathLike],
    batch_size: int,
    workers: int = 2,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (store number, coords, (N, n_models) probabilities) per store, in order.

    Tiles of consecutive stores share full batches, so slides smaller than a batch do not each pay for a padded one.
    """
    input_px = model_input_px(models[0])
    shared = _SharedBatches(models, batch_size)
    for number, store_path in enumerate(store_paths):
        with TileStore(store_path) as store:
            coords = store.coords.astype(np.int64)
        shared.add_store(number, coords)
        row = 0
        for batch in slide_batches(store_path, batch_size, input_px, workers):
            shared.add_tiles(number, row, batch)
            row += len(batch)
        if row != len(coords):
            raise RuntimeError(f"{store_path}: decoded {row} tiles of {len(coords)}")
        yield from shared.finished()
    shared.flush()
    yield from shared.finished()


def predict_trait(
    model_paths: Sequence[str | os.PathLike],
    splits: Sequence[int],
    store_paths: Sequence[str | os.PathLike],
    output_folder: str | os.PathLike,
    trait: str,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write `{slide_id}.h5` predictions for every store into output_folder (atomically, as one folder).

    Size: 9 parameters: the models and their splits, the slides, the output folder and trait, and four knobs of how
    the job runs (batch per device, decoding workers, device choice, log).
    """
    _check_models(model_paths, splits, trait)
    devices = select_devices(device)
    with data_parallel(devices) as n_replicas:
        log(f"devices: {devices.kind} x{n_replicas} {list(devices.names)}, backend {devices.backend}")
        models = [load_model(path) for path in model_paths]
        sizes = {model_input_px(model) for model in models}
        if len(sizes) != 1:
            raise ValueError(f"trait {trait}: models take different input sizes {sorted(sizes)} ({list(model_paths)})")
        scored = score_stores(models, store_paths, batch_size * n_replicas, workers)
        return _write_folder(scored, _slide_ids(store_paths, trait), splits, output_folder, trait, len(models), log)


def score_feature_stores(
    models: Sequence[keras.Model], feature_paths: Sequence[str | os.PathLike], batch_size: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (store number, coords, (N, n_models) probabilities) per feature store, in order (batches shared)."""
    dim = model_feature_dim(models[0])
    shared = _SharedBatches(models, batch_size)
    for number, path in enumerate(feature_paths):
        slide = read_features(path)
        if slide.n_tiles and slide.dim != dim:
            raise ValueError(f"{path}: slide {slide.slide_id} has features of width {slide.dim}, the heads take {dim}")
        shared.add_store(number, slide.coords)
        if slide.n_tiles:
            shared.add_tiles(number, 0, slide.features)
        yield from shared.finished()
    shared.flush()
    yield from shared.finished()


def predict_trait_features(
    model_paths: Sequence[str | os.PathLike],
    splits: Sequence[int],
    feature_paths: Sequence[str | os.PathLike],
    output_folder: str | os.PathLike,
    trait: str,
    batch_size: int = 64,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write `{slide_id}.h5` predictions of the split heads for every feature store (atomically, as one folder)."""
    _check_models(model_paths, splits, trait)
    devices = select_devices(device)
    _check_one_encoder(feature_paths)
    with data_parallel(devices) as n_replicas:
        log(f"devices: {devices.kind} x{n_replicas} {list(devices.names)}, backend {devices.backend}")
        models = [load_model(path) for path in model_paths]
        dims = {model_feature_dim(model) for model in models}
        if len(dims) != 1:
            raise ValueError(f"trait {trait}: heads take different feature widths {sorted(dims)} ({list(model_paths)})")
        scored = score_feature_stores(models, feature_paths, batch_size * n_replicas)
        return _write_folder(scored, _slide_ids(feature_paths, trait), splits, output_folder, trait, len(models), log)


def _check_models(model_paths: Sequence[str | os.PathLike], splits: Sequence[int], trait: str) -> None:
    """Refuse a job without models or whose models and splits do not pair up."""
    if len(model_paths) != len(splits):
        raise ValueError(f"{len(model_paths)} models but {len(splits)} splits {list(splits)}")
    if not model_paths:
        raise ValueError(f"trait {trait}: no models to predict with")


def _check_one_encoder(feature_paths: Sequence[str | os.PathLike]) -> None:
    """Refuse feature stores of different encoders (read without their features; widths are checked slide by slide)."""
    named = []
    for path in feature_paths:
        header = read_features(path, with_features=False)
        source = FeatureSource(header.attrs.encoder, header.attrs.weights_sha256, 0)
        named.append((header.slide_id, source if header.n_tiles else None))
    if any(source is not None for _, source in named):
        common_source(named)


def _slide_ids(store_paths: Sequence[str | os.PathLike], trait: str) -> list[str]:
    """The slide id of every store (its file stem), refusing duplicates."""
    slide_ids = [Path(path).stem for path in store_paths]
    if len(set(slide_ids)) != len(slide_ids):
        raise ValueError(f"trait {trait}: duplicate slide ids among the stores")
    return slide_ids


def _write_folder(
    scored: Iterator[tuple[int, np.ndarray, np.ndarray]],
    slide_ids: Sequence[str],
    splits: Sequence[int],
    output_folder: str | os.PathLike,
    trait: str,
    n_models: int,
    log: Callable[[str], None],
) -> list[Path]:
    """Write each scored store's predictions into the trait's folder, built under a temporary name and renamed."""
    written = []
    with atomic_path(output_folder) as folder:
        folder.mkdir()
        for number, coords, scores in scored:
            slide_id = slide_ids[number]
            predictions = SlidePredictions(slide_id, trait, coords, scores, tuple(splits))
            write_predictions(prediction_path(folder, slide_id), predictions)
            written.append(prediction_path(output_folder, slide_id))
            log(
                f"{trait}: slide {number + 1}/{len(slide_ids)} {slide_id}: {len(coords)} tiles scored by {n_models} "
                "models"
            )
    return written
