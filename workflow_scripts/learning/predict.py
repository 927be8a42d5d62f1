"""Score every tile of every slide with all split models of a trait, reading and decoding each slide's tiles once.

Output: one predictions/{trait}/{slide_id}.h5 per slide in the format `learning.predictions` owns; the whole
per-trait folder is written under a temporary name and renamed when every slide is done.

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
from workflow_scripts.learning.devices import data_parallel, select_devices
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
    if len(model_paths) != len(splits):
        raise ValueError(f"{len(model_paths)} models but {len(splits)} splits {list(splits)}")
    if not model_paths:
        raise ValueError(f"trait {trait}: no models to predict with")
    devices = select_devices(device)
    with data_parallel(devices) as n_replicas:
        log(f"devices: {devices.kind} x{n_replicas} {list(devices.names)}, backend {devices.backend}")
        models = [load_model(path) for path in model_paths]
        sizes = {model_input_px(model) for model in models}
        if len(sizes) != 1:
            raise ValueError(f"trait {trait}: models take different input sizes {sorted(sizes)} ({list(model_paths)})")
        return _predict_slides(models, splits, store_paths, output_folder, trait, batch_size * n_replicas, workers, log)


def _predict_slides(
    models: Sequence[keras.Model],
    splits: Sequence[int],
    store_paths: Sequence[str | os.PathLike],
    output_folder: str | os.PathLike,
    trait: str,
    batch_size: int,
    workers: int,
    log: Callable[[str], None],
) -> list[Path]:
    """Score every store with the loaded models in global batches of `batch_size` and write the folder."""
    slide_ids = [Path(path).stem for path in store_paths]
    if len(set(slide_ids)) != len(slide_ids):
        raise ValueError(f"trait {trait}: duplicate slide ids among the stores")
    written = []
    with atomic_path(output_folder) as folder:
        folder.mkdir()
        for number, coords, scores in score_stores(models, store_paths, batch_size, workers):
            slide_id = slide_ids[number]
            predictions = SlidePredictions(slide_id, trait, coords, scores, tuple(splits))
            write_predictions(prediction_path(folder, slide_id), predictions)
            written.append(prediction_path(output_folder, slide_id))
            log(
                f"{trait}: slide {number + 1}/{len(slide_ids)} {slide_id}: {len(coords)} tiles scored by "
                f"{len(models)} models"
            )
    return written
