"""Tile features of a set of slides held in memory, and their deterministic training and scoring batches.

A `FeatureIndex` is a `tiledata.TileIndex` whose stores are feature stores (`features.featurestore`): tile_ids are
rows of a feature store (not of its tile store), and it carries the features themselves, (n, D) float16, read once,
slide by slide, into one preallocated matrix (no second copy while reading: the peak is the matrix plus one slide).
Memory bound: n_tiles x D x 2 bytes, plus 4 + 4 + 8 bytes per tile of labels, store and row ids; a BRCA training
split of ~300,000 tiles at D = 1,536 takes ~0.9 GB.

Training batches follow exactly the stream of `tiledata` (batch b holds stream positions [b * batch, (b + 1) * batch)
of the per-epoch permutations drawn from (seed, epoch)), so a run resumed at batch b sees the batches an
uninterrupted run would; flips do not apply to features. Validation subsampling (`max_tiles_per_store`) keeps the
seeded choice of `tiledata.build_tile_index`. Every indexed slide holding tiles must come from the same encoder,
weights and width (`common_source`), else the error names the slides of each source.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workflow_scripts.features.featurestore import read_features
from workflow_scripts.learning.tiledata import TileIndex, checked_slide_labels, epoch_permutation, kept_rows


@dataclass(frozen=True)
class FeatureSource:
    """Where features come from: the encoder's name, its weights' SHA-256 ("" when unknown) and the width D."""

    encoder: str
    weights_sha256: str
    dim: int


@dataclass(frozen=True)
class FeatureIndex(TileIndex):
    """The labelled tiles of a set of slides with their features; see the module docstring for the memory bound."""

    features: np.ndarray  # (n, D) float16, row i = tile i of the index
    sources: tuple[FeatureSource | None, ...]  # per store: None when the store holds no tile

    @property
    def dim(self) -> int:
        """Feature width D."""
        return int(self.features.shape[1])

    def source(self) -> FeatureSource:
        """The one source of the indexed features (see `common_source`)."""
        return common_source(list(zip([path.stem for path in self.stores], self.sources)))


def common_source(named: Sequence[tuple[str, FeatureSource | None]]) -> FeatureSource:
    """The source shared by the named slides' features (None entries, stores without tiles, are skipped).

    Raises naming the slides of each source when they differ, and when no slide holds features.
    """
    groups: dict[FeatureSource, list[str]] = {}
    for slide_id, source in named:
        if source is not None:
            groups.setdefault(source, []).append(slide_id)
    if not groups:
        raise ValueError(f"none of the {len(named)} feature stores holds a tile")
    if len(groups) > 1:
        described = "; ".join(
            f"encoder {source.encoder!r} (weights {source.weights_sha256[:12] or 'unknown'}, dim {source.dim}): "
            f"slides {slides[:5]}{' ...' if len(slides) > 5 else ''}"
            for source, slides in groups.items()
        )
        raise ValueError(f"feature stores from different encoders cannot be combined: {described}")
    return next(iter(groups))


def build_feature_index(
    stores: Sequence[str | os.PathLike],
    labels: Sequence[float] | None = None,
    max_tiles_per_store: int | None = None,
    seed: int = 0,
) -> FeatureIndex:
    """Index the tiles of feature `stores` (slide order kept, rows in store order) and read their features once.

    `max_tiles_per_store` keeps a seeded subset of each larger store, as `tiledata.build_tile_index` does.
    """
    paths = tuple(Path(store) for store in stores)
    slide_labels = checked_slide_labels(len(paths), labels, max_tiles_per_store)
    rows = [
        kept_rows(read_features(path, with_features=False).n_tiles, max_tiles_per_store, seed, position)
        for position, path in enumerate(paths)
    ]
    counts = np.array([len(chosen) for chosen in rows], np.int64)
    store_ids = np.repeat(np.arange(len(paths), dtype=np.int32), counts)
    features, sources = _read_features(paths, rows, int(counts.sum()))
    return FeatureIndex(
        stores=paths,
        store_ids=store_ids,
        tile_ids=np.concatenate(rows) if rows else np.zeros(0, np.int64),
        labels=slide_labels[store_ids],
        slide_labels=slide_labels,
        features=features,
        sources=tuple(sources),
    )


def _read_features(
    paths: Sequence[Path], rows: Sequence[np.ndarray], n_tiles: int
) -> tuple[np.ndarray, list[FeatureSource | None]]:
    """The chosen rows of every store copied into one (n_tiles, D) float16 matrix allocated at the first tile."""
    features: np.ndarray | None = None
    sources: list[FeatureSource | None] = []
    start = 0
    for path, chosen in zip(paths, rows):
        slide = read_features(path)
        if len(chosen) and chosen[-1] >= slide.n_tiles:
            raise RuntimeError(f"{path}: feature store changed while being indexed")
        if slide.n_tiles == 0:
            sources.append(None)
            continue
        source = FeatureSource(slide.attrs.encoder, slide.attrs.weights_sha256, slide.dim)
        sources.append(source)
        if features is None:
            features = np.empty((n_tiles, slide.dim), np.float16)
        if slide.dim != features.shape[1]:
            common_source(list(zip([p.stem for p in paths], sources)))  # names the slides of each width
        features[start : start + len(chosen)] = slide.features[chosen]
        start += len(chosen)
    return (features if features is not None else np.zeros((0, 0), np.float16)), sources


def feature_batches(
    index: FeatureIndex, batch_size: int, seed: int, start_step: int = 0, n_steps: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (features float16 (b, D), labels float32 (b, 1)) training batches from `start_step` on (endless default).

    Batch b holds the rows `tiledata.batch_examples(n_tiles, batch_size, seed, b)` gives; each epoch's permutation
    is drawn once and kept while the stream is in it.
    """
    n_tiles = index.n_tiles
    if n_tiles == 0:
        raise ValueError(f"no training tiles in {len(index.stores)} feature stores")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    permutations: dict[int, np.ndarray] = {}
    step = start_step
    while n_steps is None or step < start_step + n_steps:
        epochs, offsets = np.divmod(np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64), n_tiles)
        rows = np.empty(batch_size, np.int64)
        for epoch in np.unique(epochs):
            if int(epoch) not in permutations:
                permutations = {key: value for key, value in permutations.items() if key >= int(epochs[0])}
                permutations[int(epoch)] = epoch_permutation(n_tiles, seed, int(epoch))
            in_epoch = epochs == epoch
            rows[in_epoch] = permutations[int(epoch)][offsets[in_epoch]]
        yield index.features[rows], index.labels[rows].reshape(-1, 1).astype(np.float32)
        step += 1


def ordered_feature_batches(index: FeatureIndex, batch_size: int) -> Iterator[np.ndarray]:
    """Yield the indexed features in index order as float16 batches; the last batch may be short."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, index.n_tiles, batch_size):
        yield index.features[start : start + batch_size]
