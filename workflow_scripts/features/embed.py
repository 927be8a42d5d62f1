"""Stage `embed` with source `encoder`: every tile of a slide's tile store through the encoder, into a feature store.

Each store's tiles are read in store order (`tiledata.ordered_batches`, resized with antialiasing to the encoder's
input_px); the tiles of consecutive stores share full batches, so a job group of small slides does not pay for one
padded batch per slide, and the only short batch (the last) is padded so the model keeps one input shape. A slide's
features are handed back as soon as its last tile is embedded: feature row i is the store's tile i (tile_rows =
0..N-1, coords = the store's coords), float16, checked finite (float16 ends at +-65504). A store without tiles gives
N = 0 features of width D.

Devices as in prediction (`learning.devices`): the job fails at once when it was given a GPU it cannot use; the
dtype policy follows training.mixed_precision (never mixed on CPU; the embeddings leave the model as float32); with
several GPUs the encoder is replicated on all of them and fed batch_size x replicas tiles per step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from workflow_scripts.features.encoder import EncoderSettings, LoadedEncoder, load_encoder
from workflow_scripts.features.featurestore import (
    FLOAT16_MAX,
    FeatureAttrs,
    SlideFeatures,
    beyond_float16,
    write_features,
)
from workflow_scripts.learning.devices import (
    apply_determinism,
    data_parallel,
    dtype_policy,
    mixed_precision_policy,
    select_devices,
)
from workflow_scripts.learning.settings import TrainingSettings
from workflow_scripts.learning.tiledata import build_tile_index, ordered_batches
from workflow_scripts.slides.tilestore import TileStore


def embed_batch(encoder: LoadedEncoder, batch: np.ndarray, batch_size: int) -> np.ndarray:
    """(n, D) float32 embeddings of one uint8 batch; a short batch is padded to batch_size (one compiled shape)."""
    n = len(batch)
    if n < batch_size:
        batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
    return np.asarray(encoder.model.predict_on_batch(batch), np.float32)[:n]


def as_float16(features: np.ndarray, where: str) -> np.ndarray:
    """The embeddings as float16, refusing NaN, inf, or values float16 cannot hold, naming the slide."""
    bad = beyond_float16(features)
    if np.any(bad):
        finite = np.abs(features[np.isfinite(features)])
        largest = float(finite.max()) if finite.size else float("nan")
        raise ValueError(
            f"{where}: {int(bad.sum())} embedding values are NaN, inf or beyond float16's +-{FLOAT16_MAX:g} "
            f"(largest finite |x| {largest:g}): the encoder's output cannot be stored as float16"
        )
    return features.astype(np.float16)


def _store_facts(path: Path) -> tuple[str, np.ndarray]:
    """A tile store's slide id (its file name, as prediction reads it) and level-0 tile coordinates."""
    with TileStore(path) as store:
        return path.stem, store.coords.astype(np.int64).reshape(-1, 2)


def _slide(encoder: LoadedEncoder, path: Path, features: np.ndarray) -> SlideFeatures:
    """The SlideFeatures of one store from its embedded rows (all of them, in store order)."""
    slide_id, coords = _store_facts(path)
    if len(features) != len(coords):
        raise RuntimeError(f"{path}: embedded {len(features)} tiles of {len(coords)}")
    attrs = FeatureAttrs(
        source="encoder", encoder=encoder.label, weights_sha256=encoder.weights_sha256,
        input_px=encoder.input_px, n_store_tiles=len(coords),
    )
    rows = np.arange(len(coords), dtype=np.int64)
    return SlideFeatures(slide_id, as_float16(features, f"{path}: slide {slide_id}"), coords, rows, attrs)


def embed_stores(
    store_paths: Sequence[str | os.PathLike], encoder: LoadedEncoder, batch_size: int, workers: int = 2
) -> Iterator[SlideFeatures]:
    """Yield every store's SlideFeatures, in order, embedding the tiles of consecutive stores in shared batches."""
    paths = [Path(path) for path in store_paths]
    index = build_tile_index(paths)
    counts = [int(count) for count in index.tiles_per_store()]
    pending: list[np.ndarray] = []  # embedded rows not yet handed to a slide, in index order
    n_pending = 0
    number = 0
    for batch in ordered_batches(index, batch_size, encoder.input_px, workers):
        pending.append(embed_batch(encoder, batch, batch_size))
        n_pending += len(batch)
        while number < len(paths) and counts[number] <= n_pending:
            rows = np.concatenate(pending) if pending else np.zeros((0, encoder.dim), np.float32)
            yield _slide(encoder, paths[number], rows[: counts[number]])
            pending, n_pending = [rows[counts[number] :]], n_pending - counts[number]
            number += 1
    for path in paths[number:]:  # stores without tiles after the last batch
        yield _slide(encoder, path, np.zeros((0, encoder.dim), np.float32))


def embed_slide(
    store_path: str | os.PathLike, encoder: LoadedEncoder, batch_size: int, workers: int = 2
) -> SlideFeatures:
    """The SlideFeatures of one tile store."""
    return next(embed_stores([store_path], encoder, batch_size, workers))


def embed_slides(
    store_paths: Sequence[str | os.PathLike],
    output_paths: Sequence[str | os.PathLike],
    settings: EncoderSettings,
    runtime: TrainingSettings,
    seed: int,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Embed a group of slides with one encoder, built once, and write each slide's feature store (atomically).

    `runtime` gives device, mixed_precision, workers and deterministic (config `training`); the encoder's
    per-device batch is settings.batch_size.
    """
    if len(store_paths) != len(output_paths):
        raise ValueError(f"{len(store_paths)} tile stores but {len(output_paths)} feature store paths")
    devices = select_devices(runtime.device)
    policy = mixed_precision_policy(runtime.mixed_precision, devices.has_gpu, devices.capability)
    determinism = apply_determinism(devices.backend, runtime.deterministic)
    written = []
    with dtype_policy(policy), data_parallel(devices) as n_replicas:
        log(
            f"devices: {devices.kind} x{n_replicas} {list(devices.names)}, backend {devices.backend}, policy "
            f"{policy}, {determinism}"
        )
        encoder = load_encoder(settings, seed)
        log(
            f"encoder {encoder.label}: input {encoder.input_px} px, D = {encoder.dim}, "
            f"{encoder.model.count_params():,} parameters, weights sha256 {encoder.weights_sha256}"
        )
        batch_size = settings.batch_size * n_replicas
        for number, slide in enumerate(embed_stores(store_paths, encoder, batch_size, runtime.workers)):
            written.append(write_features(output_paths[number], slide))
            log(f"slide {number + 1}/{len(store_paths)} {slide.slide_id}: {slide.n_tiles} tiles embedded")
    return written
