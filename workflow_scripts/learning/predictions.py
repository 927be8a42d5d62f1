"""Tile predictions: the one owner of predictions/{trait}/{slide_id}.h5, written by `predict` and read by analysis.

Contract of one file (one slide, one trait, every split model of the trait):
- dataset ``coords``: (N, 2) int64 level-0 (x, y) top-left corners, the same tiles as the slide's tile store
  (readers match tiles by these coordinates, never by row order);
- dataset ``scores``: (N, S) float32, column j = tile probability from the model of split ``splits[j]``;
- attributes ``splits`` (S int64), ``slide_id`` and ``trait`` (text).
A slide without tiles has N = 0. Files carry no timestamps, so identical scores give identical bytes. The
per-trait folder is written whole under a temporary name by `learning.predict`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np


@dataclass(frozen=True)
class SlidePredictions:
    """Tile scores of every split model of one trait on one slide (column j = model of splits[j])."""

    slide_id: str
    trait: str
    coords: np.ndarray
    scores: np.ndarray
    splits: tuple[int, ...]

    def columns(self, splits: Iterable[int]) -> np.ndarray:
        """Score columns of the given split models, naming the slide when one is missing."""
        wanted = list(splits)
        missing = [split for split in wanted if split not in self.splits]
        if missing:
            raise KeyError(f"slide {self.slide_id}, trait {self.trait}: no predictions of splits {missing}")
        return self.scores[:, [self.splits.index(split) for split in wanted]]


def write_predictions(path: str | os.PathLike, predictions: SlidePredictions) -> None:
    """Write one slide's prediction file (no timestamps, so identical scores give identical files)."""
    coords = np.asarray(predictions.coords, np.int64).reshape(-1, 2)
    scores = np.asarray(predictions.scores, np.float32).reshape(-1, len(predictions.splits))
    if len(scores) != len(coords):
        raise ValueError(f"slide {predictions.slide_id}: {len(scores)} score rows for {len(coords)} tiles")
    with h5py.File(path, "w") as file:
        file.create_dataset("coords", data=coords, track_times=False)
        file.create_dataset("scores", data=scores, track_times=False)
        file.attrs["splits"] = np.asarray(list(predictions.splits), np.int64)
        file.attrs["slide_id"] = predictions.slide_id
        file.attrs["trait"] = predictions.trait


def read_predictions(path: str | os.PathLike, trait: str | None = None) -> SlidePredictions:
    """Load one prediction file, checking datasets, attributes, shapes and (when given) the trait."""
    path = Path(path)
    with h5py.File(path, "r") as handle:
        for key in ("coords", "scores"):
            if key not in handle:
                raise KeyError(f"{path}: prediction file lacks dataset {key!r}")
        for key in ("splits", "slide_id", "trait"):
            if key not in handle.attrs:
                raise KeyError(f"{path}: prediction file lacks attribute {key!r}")
        coords = np.asarray(handle["coords"][...], dtype=np.int64).reshape(-1, 2)
        scores = np.asarray(handle["scores"][...], dtype=np.float32)
        splits = tuple(int(split) for split in np.atleast_1d(handle.attrs["splits"]))
        slide_id = _text(handle.attrs["slide_id"])
        found_trait = _text(handle.attrs["trait"])
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.shape != (coords.shape[0], len(splits)):
        raise ValueError(
            f"{path}: scores shape {scores.shape} does not match {coords.shape[0]} tiles x splits {splits}"
        )
    if trait is not None and found_trait != trait:
        raise ValueError(f"{path}: holds predictions of trait {found_trait}, expected {trait}")
    return SlidePredictions(slide_id, found_trait, coords, scores, splits)


def prediction_path(folder: str | os.PathLike, slide_id: str) -> Path:
    """Where one slide's predictions of a trait live inside the trait's folder."""
    return Path(folder) / f"{slide_id}.h5"


def _text(value: object) -> str:
    """HDF5 attributes come back as bytes or str depending on the writer; normalise to str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def read_trait_predictions(folder: str | os.PathLike, trait: str, slide_ids: Sequence[str]) -> list[SlidePredictions]:
    """Predictions of the given slides from a trait's folder, naming the slide whose file is missing."""
    found = []
    for slide_id in slide_ids:
        path = prediction_path(folder, slide_id)
        if not path.exists():
            raise FileNotFoundError(f"slide {slide_id}: no predictions of trait {trait} at {path}")
        found.append(read_predictions(path, trait))
    return found
