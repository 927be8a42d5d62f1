"""The one reader and writer of feature stores: results/{cohort}/features/{slide_id}.h5, tile embeddings of a slide.

The format, owned here and nowhere else (HDF5, no timestamps: the same features give the same bytes):
- datasets, one row per embedded tile, in tile-store order:
  `features` (N, D) float16: the tile's embedding;
  `coords` (N, 2) int64: level-0 x, y of the tile's top-left corner, equal to the tile store's `coords` at the
  rows in `tile_rows` (readers match tiles by these coordinates, as for predictions);
  `tile_rows` (N,) int64, strictly increasing: the tile's row in the slide's tile store. An encoder embeds every
  tile (tile_rows = 0..N-1); an imported file may miss tiles, which are left out (`n_store_tiles` - N of them).
- file attributes: `slide_id`; `source` ("encoder" or "import"); `encoder` (the encoder's name, or the imported
  files' encoder name as their folder or attributes give it); `weights_sha256` (hex SHA-256 of the encoder's
  weights, "" when unknown, e.g. for imported features); `input_px` (the encoder's input side, 0 when unknown);
  `dim` (D); `n_store_tiles` (tiles in the slide's tile store); `source_file` (the imported file, "" for an
  encoder); `workflow_version`.
A slide whose features failed has N = 0 (and D = `dim`, which may be 0). A store appears at its path only complete
(atomic rename).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from workflow_scripts import __version__
from workflow_scripts.common.atomic import atomic_path

SOURCES = ("encoder", "import")
DATASETS = ("features", "coords", "tile_rows")
FLOAT16_MAX = float(np.finfo(np.float16).max)
ATTRIBUTES = ("slide_id", "source", "encoder", "weights_sha256", "input_px", "dim", "n_store_tiles", "source_file")


class FeatureStoreError(ValueError):
    """A feature store that does not hold what the contract promises; the message names the file."""


@dataclass(frozen=True)
class FeatureAttrs:
    """Where a slide's features come from (the file attributes other than slide_id, dim and workflow_version)."""

    source: str
    encoder: str
    weights_sha256: str = ""
    input_px: int = 0
    n_store_tiles: int = 0
    source_file: str = ""


@dataclass(frozen=True)
class SlideFeatures:
    """The embedded tiles of one slide: features (N, D) float16, coords (N, 2) int64, tile_rows (N,) int64."""

    slide_id: str
    features: np.ndarray
    coords: np.ndarray
    tile_rows: np.ndarray
    attrs: FeatureAttrs

    @property
    def n_tiles(self) -> int:
        """Number of embedded tiles."""
        return len(self.coords)

    @property
    def dim(self) -> int:
        """Embedding width D."""
        return int(self.features.shape[1]) if self.features.ndim == 2 else 0


def beyond_float16(values: np.ndarray) -> np.ndarray:
    """Mask of the values a float16 store cannot hold: NaN, inf, or beyond +-FLOAT16_MAX (writers check it first)."""
    values = np.asarray(values)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(values) | (np.abs(values) > FLOAT16_MAX)


def _checked(slide: SlideFeatures, where: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slide's arrays in the stored dtypes, after checking shapes, row order and the source."""
    given = np.asarray(slide.features)
    if np.any(beyond_float16(given)):
        raise FeatureStoreError(
            f"{where}: slide {slide.slide_id}: features hold NaN, inf or values beyond float16's range "
            f"(+-{FLOAT16_MAX:g}): scale them before storing"
        )
    features = given.astype(np.float16)
    if features.ndim != 2:
        raise FeatureStoreError(f"{where}: slide {slide.slide_id}: features must be (N, D), got {features.shape}")
    coords = np.asarray(slide.coords, dtype=np.int64).reshape(-1, 2)
    tile_rows = np.asarray(slide.tile_rows, dtype=np.int64).reshape(-1)
    if not len(features) == len(coords) == len(tile_rows):
        raise FeatureStoreError(
            f"{where}: slide {slide.slide_id}: {len(features)} feature rows, {len(coords)} coords and "
            f"{len(tile_rows)} tile rows differ"
        )
    if len(tile_rows) and (np.any(np.diff(tile_rows) <= 0) or tile_rows[0] < 0):
        raise FeatureStoreError(f"{where}: slide {slide.slide_id}: tile_rows must be increasing and >= 0")
    if len(tile_rows) and tile_rows[-1] >= slide.attrs.n_store_tiles:
        raise FeatureStoreError(
            f"{where}: slide {slide.slide_id}: tile row {tile_rows[-1]} beyond the store's "
            f"{slide.attrs.n_store_tiles} tiles"
        )
    if slide.attrs.source not in SOURCES:
        raise FeatureStoreError(f"{where}: source must be one of {list(SOURCES)}, got {slide.attrs.source!r}")
    return features, coords, tile_rows


def write_features(path: str | os.PathLike, slide: SlideFeatures) -> Path:
    """Write one slide's feature store atomically (no timestamps, so identical features give identical bytes)."""
    features, coords, tile_rows = _checked(slide, path)
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w", track_order=False) as handle:
            handle.create_dataset("features", data=features, track_times=False)
            handle.create_dataset("coords", data=coords, track_times=False)
            handle.create_dataset("tile_rows", data=tile_rows, track_times=False)
            attrs = slide.attrs
            handle.attrs["slide_id"] = slide.slide_id
            handle.attrs["source"] = attrs.source
            handle.attrs["encoder"] = attrs.encoder
            handle.attrs["weights_sha256"] = attrs.weights_sha256
            handle.attrs["input_px"] = np.int64(attrs.input_px)
            handle.attrs["dim"] = np.int64(features.shape[1])
            handle.attrs["n_store_tiles"] = np.int64(attrs.n_store_tiles)
            handle.attrs["source_file"] = attrs.source_file
            handle.attrs["workflow_version"] = __version__
    return Path(path)


def read_features(path: str | os.PathLike, with_features: bool = True) -> SlideFeatures:
    """Load one feature store, checking datasets, attributes and shapes; without features, D columns are empty."""
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise FeatureStoreError(f"{path}: not a readable feature store ({error})") from error
    with handle:
        for key in DATASETS:
            if key not in handle:
                raise FeatureStoreError(f"{path}: feature store lacks dataset {key!r}")
        for key in ATTRIBUTES:
            if key not in handle.attrs:
                raise FeatureStoreError(f"{path}: feature store lacks attribute {key!r}")
        values = {key: _plain(handle.attrs[key]) for key in ATTRIBUTES}
        dataset = handle["features"]
        if dataset.ndim != 2 or dataset.shape[1] != int(values["dim"]):
            raise FeatureStoreError(f"{path}: features of shape {dataset.shape} but dim {values['dim']}")
        if dataset.dtype != np.float16:
            raise FeatureStoreError(f"{path}: features are {dataset.dtype}, the format stores float16")
        features = dataset[...] if with_features else np.zeros((dataset.shape[0], 0), np.float16)
        coords = np.asarray(handle["coords"][...], np.int64).reshape(-1, 2)
        tile_rows = np.asarray(handle["tile_rows"][...], np.int64).reshape(-1)
    attrs = FeatureAttrs(
        source=str(values["source"]), encoder=str(values["encoder"]), weights_sha256=str(values["weights_sha256"]),
        input_px=int(values["input_px"]), n_store_tiles=int(values["n_store_tiles"]),
        source_file=str(values["source_file"]),
    )
    slide = SlideFeatures(str(values["slide_id"]), features, coords, tile_rows, attrs)
    _checked(slide if with_features else SlideFeatures(slide.slide_id, np.zeros((len(coords), 0)), coords,
                                                       tile_rows, attrs), path)  # fmt: skip
    return slide


def feature_path(folder: str | os.PathLike, slide_id: str) -> Path:
    """Where one slide's feature store lives inside the cohort's features folder."""
    return Path(folder) / f"{slide_id}.h5"


def feature_files(paths: Sequence[str | os.PathLike], slide_ids: Collection[str] | None = None) -> list[Path]:
    """The feature store files of `paths` (a folder stands for the stores in it: the encoder's group folders),
    only those of `slide_ids` when given, sorted by slide id; a wanted slide without a file is an error."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        for file in sorted(path.glob("*.h5")) if path.is_dir() else [path]:
            if file.stem in found:
                raise FeatureStoreError(f"slide {file.stem} has two feature stores: {found[file.stem]} and {file}")
            found[file.stem] = file
    if slide_ids is None:
        return [found[slide_id] for slide_id in sorted(found)]
    missing = sorted(set(slide_ids) - set(found))
    if missing:
        raise FeatureStoreError(f"no feature store for slide(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return [found[slide_id] for slide_id in sorted(slide_ids)]


def _plain(value: Any) -> Any:
    """HDF5 attribute values as plain Python (text as str, numpy scalars as int/float)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
