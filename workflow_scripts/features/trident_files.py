"""The one owner of foreign feature and patch-coordinate files (HDF5): TRIDENT, CLAM and STAMP layouts.

Layouts read here (and the two TRIDENT ones also written), as those tools write them:
- TRIDENT patch-coordinate file, `{job_dir}/{mag}x_{patch_size}px_{overlap}px_overlap/patches/{name}_patches.h5`
  (mag formatted with `:g`, e.g. `20x_512px_0px_overlap`; `name` is the slide file name without its last
  extension): dataset `coords` (N, 2) int64, level-0 x, y of each patch's top-left corner, with attributes
  `patch_size` (patch side in px at the target magnification), `patch_size_level0` (patch side in level-0 px),
  `level0_magnification`, `target_magnification` (TRIDENT reads a pixel as 10 / magnification um), `overlap` (px),
  `name`, `savetodir` (the `{mag}x_...` folder), `level0_width`, `level0_height`.
- TRIDENT feature file, `{job_dir}/{mag}x_..._overlap/features_{encoder}/{name}.h5`: dataset `features` (N, D)
  float32 with attributes `name`, `savetodir` (its folder), `encoder` (the string "None" when unknown), and
  dataset `coords` (N, 2) int64 carrying the patch file's attributes unchanged.
- CLAM patch file, `{save_dir}/patches/{slide_id}.h5` (slide_id = file name without extension): dataset `coords`
  (N, 2) level-0 top-left px, attributes `patch_size` (px read at `patch_level`), `patch_level`, `downsample`
  (that level's (x, y) downsample), `downsampled_level_dim`, `level_dim`, `name`, `save_path`; level-0 patch side
  = patch_size x downsample.
- CLAM feature file, `{feat_dir}/h5_files/{slide_id}.h5`: datasets `features` (N, D) float32 and `coords` (N, 2)
  int32 level-0 top-left px, no attributes (so no patch size: the importer's `patch_um` setting supplies it).
- STAMP feature file, `{output_dir}/{extractor}/{slide path relative to the WSI folder, .h5 suffix}`: datasets
  `feats` (N, D) float16 and `coords` (N, 2) float, top-left corners in um from the slide's top-left corner, file
  attributes `unit` ("um"), `tile_size_um` (or `tile_size` in STAMP 2.0), `tile_size_px`, `extractor`,
  `stamp_version`. Files without these attributes (pre-2.0 STAMP) are refused.

Units: `ImportedFeatures.coords` are always level-0 px (int64); um coordinates are divided by the slide's level-0
um/px, which the caller passes as `read_imported_features(path, level0_mpp)` (the tile store's `source_mpp`).
Files written here have no timestamps and contiguous datasets, so the same input gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from workflow_scripts.common.atomic import atomic_path

FEATURE_KEYS = ("features", "feats")  # TRIDENT / CLAM, STAMP
ENCODER_FOLDER_PREFIX = "features_"  # TRIDENT's features_{encoder} folder
UNKNOWN_TEXT = ("", "None")  # TRIDENT stores a missing value as the string "None"


class FeatureImportError(ValueError):
    """A foreign feature or coordinate file that cannot be imported; the message names the file or slide."""


@dataclass(frozen=True)
class ImportedFeatures:
    """One foreign feature file as read: features (M, D) as stored, coords (M, 2) int64 level-0 top-left px.

    patch_size_level0: level-0 px per patch side when the file says (TRIDENT, CLAM patch attributes), else None;
    patch_um: the patch side in um when the file gives it directly (STAMP), else None; layout: "trident", "clam" or
    "stamp"; encoder: from the file's attributes, else its folder's name features_{encoder}, else "".
    """

    path: Path
    features: np.ndarray
    coords: np.ndarray
    patch_size_level0: float | None
    patch_um: float | None
    encoder: str
    layout: str


@dataclass(frozen=True)
class PatchCoords:
    """A TRIDENT or CLAM patch-coordinate file: coords (N, 2) int64 level-0 px, the patch side and all attributes."""

    path: Path
    coords: np.ndarray
    patch_size_level0: float | None
    attrs: dict[str, Any]


@dataclass(frozen=True)
class TridentPatchAttrs:
    """The attributes TRIDENT gives a patch-coordinate file's `coords` dataset (the last three informative only)."""

    patch_size: int
    patch_size_level0: int
    level0_magnification: float
    target_magnification: float
    name: str
    overlap: int = 0
    savetodir: str = ""
    level0_width: int = 0
    level0_height: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The attributes with the HDF5 types written (integers int64, magnifications float64)."""
        return {
            "patch_size": np.int64(self.patch_size),
            "patch_size_level0": np.int64(self.patch_size_level0),
            "level0_magnification": np.float64(self.level0_magnification),
            "target_magnification": np.float64(self.target_magnification),
            "overlap": np.int64(self.overlap),
            "name": str(self.name),
            "savetodir": str(self.savetodir),
            "level0_width": np.int64(self.level0_width),
            "level0_height": np.int64(self.level0_height),
        }


def _plain(value: Any) -> Any:
    """HDF5 attribute values as plain Python (text as str, numpy scalars as numbers, arrays as lists)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _known(attrs: Mapping[str, Any], key: str) -> Any:
    """An attribute's value, or None when absent or stored as TRIDENT's "None"."""
    value = attrs.get(key)
    if value is None or (isinstance(value, str) and value in UNKNOWN_TEXT):
        return None
    return value


def patch_size_level0(attrs: Mapping[str, Any]) -> float | None:
    """Level-0 px per patch side from coords attributes: TRIDENT's own, its magnifications, or CLAM's downsample."""
    direct = _known(attrs, "patch_size_level0")
    if direct is not None:
        return float(direct)
    size = _known(attrs, "patch_size")
    if size is None:
        return None
    level0_mag, target_mag = _known(attrs, "level0_magnification"), _known(attrs, "target_magnification")
    if level0_mag is not None and target_mag is not None and float(target_mag) > 0:
        return float(size) * float(level0_mag) / float(target_mag)
    downsample = _known(attrs, "downsample")
    if downsample is not None:
        factor = downsample[0] if isinstance(downsample, (list, tuple)) else downsample
        return float(size) * float(factor)
    return None


def _open(path: Path) -> h5py.File:
    """Open a foreign HDF5 file read-only, naming it when it is not HDF5."""
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise FeatureImportError(f"{path}: not a readable HDF5 file ({error})") from error


def _dataset(handle: h5py.File, key: str, path: Path) -> h5py.Dataset:
    """A dataset that must be there, naming the file and the key when it is not."""
    if key not in handle or not isinstance(handle[key], h5py.Dataset):
        raise FeatureImportError(f"{path}: lacks dataset {key!r}")
    return handle[key]


def _pixel_coords(values: np.ndarray, path: Path) -> np.ndarray:
    """Level-0 px coordinates as int64 (N, 2), refusing other shapes."""
    values = np.asarray(values)
    if values.size == 0:
        values = values.reshape(0, 2)
    if values.ndim != 2 or values.shape[1] != 2:
        raise FeatureImportError(f"{path}: coords must be (N, 2), got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise FeatureImportError(f"{path}: coords hold NaN or inf")
    return np.rint(values).astype(np.int64)


def read_patch_coords(path: str | os.PathLike) -> PatchCoords:
    """Read a TRIDENT `_patches.h5` or CLAM patch file: level-0 top-left px and the patch side it states."""
    path = Path(path)
    with _open(path) as handle:
        dataset = _dataset(handle, "coords", path)
        attrs = {key: _plain(value) for key, value in dataset.attrs.items()}
        coords = _pixel_coords(dataset[...], path)
    return PatchCoords(path, coords, patch_size_level0(attrs), attrs)


def _encoder_name(attrs: Mapping[str, Any], path: Path) -> str:
    """The encoder the file names, else its TRIDENT folder's features_{encoder}, else ''."""
    named = _known(attrs, "encoder")
    if named is None:
        named = _known(attrs, "extractor")
    if named is not None:
        return str(named)
    folder = path.parent.name
    return folder[len(ENCODER_FOLDER_PREFIX) :] if folder.startswith(ENCODER_FOLDER_PREFIX) else ""


def _stamp_coords(handle: h5py.File, path: Path, level0_mpp: float | None) -> tuple[np.ndarray, float]:
    """STAMP's um coordinates as level-0 px, and its tile side in um."""
    attrs = {key: _plain(value) for key, value in handle.attrs.items()}
    tile_um = _known(attrs, "tile_size_um")
    if tile_um is None and _known(attrs, "unit") == "um":
        tile_um = _known(attrs, "tile_size")
    if tile_um is None:
        raise FeatureImportError(
            f"{path}: STAMP file lacks attribute 'tile_size_um' (or 'tile_size' with unit 'um'); files from STAMP "
            "before 2.0 give no units: extract them again"
        )
    if level0_mpp is None or not level0_mpp > 0:
        raise FeatureImportError(f"{path}: coordinates are in um; the slide's level-0 um/px is needed to convert them")
    microns = np.asarray(_dataset(handle, "coords", path)[...], dtype=np.float64)
    return _pixel_coords(microns / float(level0_mpp), path), float(tile_um)


def _checked_features(dataset: h5py.Dataset, n_coords: int, path: Path) -> np.ndarray:
    """The features as stored, after checking they are floats with one row per coordinate."""
    features = dataset[...]
    if features.size == 0 and features.ndim == 1:  # TRIDENT's empty file when the width is unknown
        features = features.reshape(0, 0)
    if features.ndim != 2:
        raise FeatureImportError(f"{path}: {dataset.name.lstrip('/')} must be (M, D), got {features.shape}")
    if not np.issubdtype(features.dtype, np.floating):
        raise FeatureImportError(f"{path}: features are {features.dtype}, expected floats")
    if len(features) != n_coords:
        raise FeatureImportError(f"{path}: {len(features)} feature rows but {n_coords} coords")
    return features


def read_imported_features(path: str | os.PathLike, level0_mpp: float | None = None) -> ImportedFeatures:
    """Read a TRIDENT, CLAM or STAMP feature file; level0_mpp (um/px) converts STAMP's um coordinates to px."""
    path = Path(path)
    with _open(path) as handle:
        key = next((name for name in FEATURE_KEYS if name in handle), None)
        if key is None:
            raise FeatureImportError(f"{path}: lacks dataset 'features' (TRIDENT, CLAM) or 'feats' (STAMP)")
        if key == "feats":
            coords, patch_um = _stamp_coords(handle, path, level0_mpp)
            encoder = _encoder_name({key: _plain(value) for key, value in handle.attrs.items()}, path)
            features = _checked_features(handle[key], len(coords), path)
            return ImportedFeatures(path, features, coords, None, patch_um, encoder, "stamp")
        coords_set = _dataset(handle, "coords", path)
        coords = _pixel_coords(coords_set[...], path)
        coords_attrs = {name: _plain(value) for name, value in coords_set.attrs.items()}
        feature_attrs = {name: _plain(value) for name, value in handle[key].attrs.items()}
        features = _checked_features(handle[key], len(coords), path)
    size = patch_size_level0(coords_attrs)
    layout = "clam" if "patch_level" in coords_attrs or not (coords_attrs or feature_attrs) else "trident"
    return ImportedFeatures(path, features, coords, size, None, _encoder_name(feature_attrs, path), layout)


def find_imported_file(folder: str | os.PathLike, slide_id: str, slide_file_name: str | os.PathLike) -> Path | None:
    """The slide's file in a features folder: {slide_id}.h5 or {slide file name without extension}.h5, else None."""
    folder = Path(folder)
    stems = [slide_id, Path(slide_file_name).stem] if str(slide_file_name) else [slide_id]
    found = [folder / f"{stem}.h5" for stem in dict.fromkeys(stems) if (folder / f"{stem}.h5").is_file()]
    if len(found) > 1:
        raise FeatureImportError(
            f"slide {slide_id}: two imported files could be its features, {found[0]} and {found[1]}: remove one"
        )
    return found[0] if found else None


def write_trident_coords(path: str | os.PathLike, coords: np.ndarray, attrs: TridentPatchAttrs) -> Path:
    """Write a TRIDENT patch-coordinate file (`coords` int64 with TRIDENT's attributes) atomically."""
    coords = _pixel_coords(coords, Path(path))
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w", track_order=False) as handle:
            dataset = handle.create_dataset("coords", data=coords, track_times=False)
            for key, value in attrs.as_dict().items():
                dataset.attrs[key] = value
    return Path(path)


def write_trident_features(
    path: str | os.PathLike,
    features: np.ndarray,
    coords: np.ndarray,
    attrs: TridentPatchAttrs,
    encoder: str = "",
    savetodir: str | os.PathLike | None = None,
) -> Path:
    """Write a TRIDENT feature file (`features` float32 named by encoder, `coords` with the patch attributes);
    `savetodir` is the folder the features attribute names (default the file's, wrong when written to a temporary
    folder that is renamed)."""
    path = Path(path)
    features = np.asarray(features, dtype=np.float32)
    coords = _pixel_coords(coords, path)
    if features.ndim != 2 or len(features) != len(coords):
        raise FeatureImportError(f"{path}: features {features.shape} need one (D,) row per coordinate ({len(coords)})")
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w", track_order=False) as handle:
            embedded = handle.create_dataset("features", data=features, track_times=False)
            embedded.attrs["name"] = attrs.name
            embedded.attrs["savetodir"] = str(Path(savetodir) if savetodir else path.parent)
            embedded.attrs["encoder"] = encoder or "None"
            positions = handle.create_dataset("coords", data=coords, track_times=False)
            for key, value in attrs.as_dict().items():
                positions.attrs[key] = value
    return path
