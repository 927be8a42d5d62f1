"""Molecular cartography: the ensemble's binary tile calls of every trait laid out on the slide's tile grid.

Tensor layout: H x W x K uint8 with H = n_rows and W = n_cols of the tile grid (grid_shape = (n_cols, n_rows) in
the tile store), 1 = positive, 0 = negative tile, 255 = background (no tile at that grid cell).  Predictions are
placed through the tile store's (x, y) -> (col, row) table, matched by level-0 coordinates. Tiles without
predictions (in the features model family, store tiles an imported feature file did not cover) are background, and
the stages after the cartography see only the scored tiles (`scored_layout`, `tensor_layout`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from workflow_scripts.analysis.ensemble import align_by_coords, chosen_splits, ensemble_positive, read_members
from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.learning.predictions import SlidePredictions, prediction_path, read_predictions
from workflow_scripts.slides.qc_table import read_passed_slides
from workflow_scripts.slides.tilestore import TileStore

BACKGROUND = 255


@dataclass(frozen=True)
class StoreLayout:
    """Where each tile of a slide sits: level-0 coords, grid cells, grid size and the thumbnail for overlays."""

    slide_id: str
    coords: np.ndarray
    grid: np.ndarray
    grid_shape: tuple[int, int]
    level0_tile_px: float
    thumbnail: np.ndarray | None = None
    downsample: float = 1.0
    tile_um: float = 0.0  # side of one tile in micrometres (tile_px * mpp), 0 when unknown: the maps' scale bar


def read_store_layout(path: str | os.PathLike, with_thumbnail: bool = False) -> StoreLayout:
    """Read the tile layout (and optionally the thumbnail) of one tile store through the tilestore module."""
    with TileStore(path) as store:
        return StoreLayout(
            slide_id=str(store.attrs.get("slide_id", Path(path).stem)),
            coords=np.asarray(store.coords, dtype=np.int64).reshape(-1, 2),
            grid=np.asarray(store.grid, dtype=np.int64).reshape(-1, 2),
            grid_shape=(int(store.grid_shape[0]), int(store.grid_shape[1])),
            level0_tile_px=float(store.attrs["level0_tile_px"]),
            thumbnail=np.asarray(store.thumbnail) if with_thumbnail else None,
            downsample=store.thumbnail_downsample if with_thumbnail else 1.0,
            tile_um=float(store.attrs["tile_px"]) * float(store.attrs["mpp"]),
        )


def place_on_grid(grid: np.ndarray, grid_shape: tuple[int, int], positive: np.ndarray, slide_id: str) -> np.ndarray:
    """Tensor (n_rows, n_cols, K) with each tile's 0/1 calls at its (col, row) cell and 255 elsewhere."""
    grid = np.asarray(grid, dtype=np.int64).reshape(-1, 2)
    positive = np.asarray(positive, dtype=bool)
    if positive.ndim != 2 or len(positive) != len(grid):
        raise ValueError(f"slide {slide_id}: calls of shape {positive.shape} do not match {len(grid)} grid cells")
    n_cols, n_rows = grid_shape
    if len(grid) and (grid.min() < 0 or grid[:, 0].max() >= n_cols or grid[:, 1].max() >= n_rows):
        raise ValueError(f"slide {slide_id}: grid cells fall outside grid_shape (n_cols, n_rows) = {grid_shape}")
    tensor = np.full((n_rows, n_cols, positive.shape[1]), BACKGROUND, dtype=np.uint8)
    tensor[grid[:, 1], grid[:, 0]] = positive.astype(np.uint8)
    return tensor


def _keep(layout: StoreLayout, keep: np.ndarray) -> StoreLayout:
    """The layout of the kept tiles only (the same object when all are kept)."""
    return layout if keep.all() else replace(layout, coords=layout.coords[keep], grid=layout.grid[keep])


def scored_layout(layout: StoreLayout, coords: np.ndarray) -> StoreLayout:
    """The layout of the tiles at the predictions' `coords`, refusing coordinates that are not tiles of the store."""
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    keys = layout.coords[:, 0] * (1 << 32) + layout.coords[:, 1]
    keep = np.isin(keys, coords[:, 0] * (1 << 32) + coords[:, 1])
    if int(keep.sum()) != len(coords):
        raise ValueError(
            f"slide {layout.slide_id}: {len(coords) - int(keep.sum())} of {len(coords)} predicted tiles are not "
            "tiles of its store (stale predictions?)"
        )
    return _keep(layout, keep)


def tensor_layout(layout: StoreLayout, tensor: np.ndarray, source: str) -> StoreLayout:
    """The layout of the tiles the cartography `tensor` scored (its cells that are not background)."""
    n_cols, n_rows = layout.grid_shape
    if tensor.shape[:2] != (n_rows, n_cols):
        raise ValueError(
            f"{source}: cartography grid {tensor.shape[:2]} differs from the store's (n_rows, n_cols) "
            f"= {(n_rows, n_cols)} of slide {layout.slide_id}"
        )
    if tensor.shape[2] == 0:
        return layout
    return _keep(layout, tensor[layout.grid[:, 1], layout.grid[:, 0], 0] != BACKGROUND)


def slide_cartography(
    layout: StoreLayout,
    predictions: list[SlidePredictions],
    members: list[list[int]],
    threshold: float,
) -> np.ndarray:
    """Cartography tensor of one slide: the ensemble call of each trait (in the given order) per grid cell."""
    calls = []
    if predictions:
        layout = scored_layout(layout, predictions[0].coords)
    for trait_predictions, splits in zip(predictions, members, strict=True):
        positive = ensemble_positive(trait_predictions, splits, threshold)
        what = f"predictions of {trait_predictions.trait}"
        calls.append(align_by_coords(layout.coords, trait_predictions.coords, positive, layout.slide_id, what))
    stacked = np.stack(calls, axis=1) if calls else np.zeros((len(layout.coords), 0), dtype=bool)
    return place_on_grid(layout.grid, layout.grid_shape, stacked, layout.slide_id)


def write_cartography(path: str | os.PathLike, tensor: np.ndarray, traits: list[str], slide_id: str) -> None:
    """Write cartography/{slide_id}.h5 atomically (dataset `tensor`, attrs traits, slide_id, background_value)."""
    if tensor.ndim != 3 or tensor.shape[2] != len(traits):
        raise ValueError(f"slide {slide_id}: tensor shape {tensor.shape} does not match traits {traits}")
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w", track_order=False) as handle:
            handle.create_dataset("tensor", data=tensor.astype(np.uint8), compression="gzip", track_times=False)
            handle.attrs["traits"] = np.array(traits, dtype=h5py.string_dtype())
            handle.attrs["slide_id"] = slide_id
            handle.attrs["background_value"] = np.uint8(BACKGROUND)


def read_cartography(path: str | os.PathLike) -> tuple[np.ndarray, list[str], str]:
    """Read a cartography file: tensor, trait names, slide id."""
    with h5py.File(path, "r") as handle:
        if "tensor" not in handle:
            raise KeyError(f"{path}: no dataset 'tensor'")
        tensor = handle["tensor"][...]
        traits = [value.decode() if isinstance(value, bytes) else str(value) for value in handle.attrs["traits"]]
        slide_id = handle.attrs.get("slide_id", Path(path).stem)
    return tensor, traits, slide_id.decode() if isinstance(slide_id, bytes) else str(slide_id)


def slide_predictions(
    prediction_dirs: dict[str, Path], slide_id: str, traits: list[str]
) -> list[SlidePredictions]:
    """Predictions of one slide for each trait in order; raises naming the slide and trait when a file is missing."""
    predictions = []
    for trait in traits:
        path = prediction_path(prediction_dirs[trait], slide_id)
        if not path.exists():
            raise FileNotFoundError(f"slide {slide_id}: no predictions of trait {trait} at {path}")
        predictions.append(read_predictions(path, trait))
    return predictions


def passed_layouts(
    slides: pd.DataFrame, store_paths: Sequence[str | os.PathLike]
) -> Iterator[tuple[str, StoreLayout]]:
    """(slide_id, tile layout) of every QC-passed slide in `slides`, refusing a slide whose store was not given."""
    stores = {Path(path).stem: path for path in store_paths}
    for slide_id in slides["slide_id"]:
        if slide_id not in stores:
            raise FileNotFoundError(f"no tile store given for QC-passed slide {slide_id}")
        yield slide_id, read_store_layout(stores[slide_id])


def write_cartographies(
    prediction_paths: Sequence[str | os.PathLike],
    members_path: str | os.PathLike,
    qc_path: str | os.PathLike,
    store_paths: Sequence[str | os.PathLike],
    traits: list[str],
    threshold: float,
    directory: str | os.PathLike,
    log: logging.Logger | None = None,
) -> int:
    """Write cartography/{slide_id}.h5 for every QC-passed slide into a folder made atomically; returns the count."""
    log = log or logging.getLogger(__name__)
    prediction_dirs = {Path(path).name: Path(path) for path in prediction_paths}
    members_table = read_members(members_path)
    members = [chosen_splits(members_table, trait) for trait in traits]
    slides = read_passed_slides(qc_path)
    with atomic_path(directory) as folder:
        folder.mkdir()
        for slide_id, layout in passed_layouts(slides, store_paths):
            tensor = slide_cartography(layout, slide_predictions(prediction_dirs, slide_id, traits), members, threshold)
            write_cartography(folder / f"{slide_id}.h5", tensor, traits, slide_id)
            log.info("%s: cartography %s, %d tiles", slide_id, tensor.shape, len(layout.coords))
    return len(slides)

