"""Import one slide's foreign features (TRIDENT, CLAM, STAMP) onto its tile store's tiles, as a SlideFeatures.

Config `features.import`: `folder` (the features folder: TRIDENT's features_{encoder}, CLAM's h5_files, STAMP's
extractor folder), `patch_um` (patch side in um for files that state none, e.g. CLAM feature files),
`max_unmatched_fraction` (share of store tiles allowed without a patch, default 0.5), `encoder_name` (the name
recorded, default the file's). Per-slide data problems (no file, unreadable file, no patch size, patches of another
physical size, too many tiles unmatched, float16 overflow) give a failed ImportResult with zero feature rows and a
reason naming the slide and the numbers, never an exception: one bad slide does not stop a cohort.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from workflow_scripts.features.featurestore import FLOAT16_MAX, FeatureAttrs, SlideFeatures, beyond_float16
from workflow_scripts.features.matching import check_resolution, match_tiles
from workflow_scripts.features.trident_files import (
    FeatureImportError,
    ImportedFeatures,
    find_imported_file,
    read_imported_features,
)
from workflow_scripts.slides.tilestore import TileStore

OTHER_KEYS = ("planted",)  # config features.import keys read elsewhere (the demo's planted-feature rule)


@dataclass(frozen=True)
class ImportSettings:
    """How foreign features are imported (config `features.import`)."""

    folder: str
    patch_um: float | None = None
    max_unmatched_fraction: float = 0.5
    encoder_name: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> ImportSettings:
        """Build and validate the settings, naming unknown or missing keys."""
        known = [item.name for item in fields(cls)]
        unknown = sorted(set(config) - set(known) - set(OTHER_KEYS))
        if unknown:
            raise ValueError(f"unknown features.import setting(s) {unknown}; known: {known + list(OTHER_KEYS)}")
        if not config.get("folder"):
            raise ValueError("features.import.folder must name the folder of imported feature files")
        settings = cls(**{key: value for key, value in config.items() if key in known})
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise on values an import cannot run with."""
        if self.patch_um is not None and not float(self.patch_um) > 0:
            raise ValueError(f"features.import.patch_um must be > 0 um, got {self.patch_um}")
        if not 0.0 <= float(self.max_unmatched_fraction) <= 1.0:
            raise ValueError(
                f"features.import.max_unmatched_fraction must be in [0, 1], got {self.max_unmatched_fraction}"
            )
        if self.encoder_name is not None and not isinstance(self.encoder_name, str):
            raise ValueError(f"features.import.encoder_name must be text, got {self.encoder_name!r}")


@dataclass(frozen=True)
class ImportResult:
    """One slide's import: its features (0 rows on failure), pass/fail, why, and the numbers checked."""

    features: SlideFeatures
    status: str
    reason: str
    n_imported: int
    expected_um: float
    found_um: float | None


@dataclass(frozen=True)
class _Store:
    """What the import needs from a tile store."""

    slide_id: str
    coords: np.ndarray
    tile_um: float
    level0_tile_px: float
    source_mpp: float
    source_path: str


def _read_store(store_path: str | os.PathLike) -> _Store:
    """The store's tile corners and sizes (a missing or broken store is a workflow error, raised)."""
    with TileStore(store_path) as store:
        attrs = store.attrs
        return _Store(
            slide_id=str(attrs["slide_id"]), coords=np.asarray(store.coords, np.int64).reshape(-1, 2),
            tile_um=float(attrs["tile_px"]) * float(attrs["mpp"]), level0_tile_px=float(attrs["level0_tile_px"]),
            source_mpp=float(attrs["source_mpp"]), source_path=str(attrs.get("source_path", "")),
        )  # fmt: skip


def _failed(store: _Store, reason: str, found: ImportedFeatures | None, found_um: float | None) -> ImportResult:
    """A recorded failure: no feature rows, the width known from the file when it was read."""
    dim = int(found.features.shape[1]) if found is not None else 0
    attrs = FeatureAttrs(
        source="import", encoder=found.encoder if found is not None else "", n_store_tiles=len(store.coords),
        source_file=str(found.path) if found is not None else "",
    )  # fmt: skip
    empty = SlideFeatures(
        store.slide_id, np.zeros((0, dim), np.float16), np.zeros((0, 2), np.int64), np.zeros(0, np.int64), attrs
    )
    n_imported = len(found.coords) if found is not None else 0
    return ImportResult(empty, "fail", reason, n_imported, store.tile_um, found_um)


def _found_um(store: _Store, found: ImportedFeatures, settings: ImportSettings) -> float | None:
    """The imported patches' side in um: the file's level-0 px x the slide's um/px, its own um, or the setting."""
    if found.patch_size_level0 is not None:
        return found.patch_size_level0 * store.source_mpp
    if found.patch_um is not None:
        return found.patch_um
    return float(settings.patch_um) if settings.patch_um is not None else None


def _float16(store: _Store, found: ImportedFeatures, rows: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The matched rows as float16, or None and why when a value is not finite or too large for float16."""
    whole = len(rows) == len(found.features) and np.array_equal(rows, np.arange(len(rows)))
    chosen = found.features if whole else found.features[rows]  # most files cover the tiles in store order
    if not np.any(beyond_float16(chosen)):
        return chosen.astype(np.float16), ""
    if not np.all(np.isfinite(chosen)):
        return None, f"slide {store.slide_id}: imported features in {found.path} hold NaN or inf"
    largest = max(float(chosen.max()), -float(chosen.min()))
    return None, (
        f"slide {store.slide_id}: imported features in {found.path} reach {largest:.4g}, beyond float16's "
        f"{FLOAT16_MAX:.0f}"
    )


def _locate(store: _Store, settings: ImportSettings) -> tuple[ImportedFeatures | None, str]:
    """Find and read the slide's file, or say why not."""
    try:
        path = find_imported_file(settings.folder, store.slide_id, Path(store.source_path).name)
        if path is None:
            stem = Path(store.source_path).stem
            return None, (
                f"no imported features for slide {store.slide_id} in {settings.folder} "
                f"(looked for {store.slide_id}.h5" + (f" and {stem}.h5)" if stem else ")")
            )
        try:
            return read_imported_features(path, level0_mpp=store.source_mpp or None), ""
        except OSError as error:  # a file HDF5 opens but cannot read through (truncated, corrupt chunks)
            return None, f"slide {store.slide_id}: {path}: unreadable ({error})"
    except FeatureImportError as error:
        return None, f"slide {store.slide_id}: {error}"


def _coverage_problem(store: _Store, found: ImportedFeatures, n_matched: int, max_unmatched: float) -> str:
    """Why too few store tiles got a patch ('' when enough did): over the allowed share, or none at all."""
    n_tiles = len(store.coords)
    unmatched = n_tiles - n_matched
    if unmatched / n_tiles > max_unmatched or not n_matched:
        return (
            f"slide {store.slide_id}: {unmatched} of {n_tiles} store tiles ({unmatched / n_tiles:.1%}) have no "
            f"imported patch within half a tile in {found.path} (max_unmatched_fraction {max_unmatched:g}"
            + (", and none matched)" if not n_matched else ")")
        )
    return ""


def import_slide(store_path: str | os.PathLike, settings: ImportSettings) -> ImportResult:
    """Import one slide's features onto its store's tiles, recording (not raising) any per-slide data problem."""
    store = _read_store(store_path)
    if not len(store.coords):
        return _failed(store, f"slide {store.slide_id}: its tile store holds no tiles", None, None)
    found, reason = _locate(store, settings)
    if found is None:
        return _failed(store, reason, None, None)
    found_um = _found_um(store, found, settings)
    if found_um is None:
        reason = f"slide {store.slide_id}: {found.path} states no patch size: set features.import.patch_um"
        return _failed(store, reason, found, None)
    try:
        check_resolution(store.slide_id, store.tile_um, found_um)
    except FeatureImportError as error:
        return _failed(store, str(error), found, found_um)
    store_rows, imported_rows = match_tiles(store.coords, found.coords, store.level0_tile_px)
    n_tiles = len(store.coords)
    reason = _coverage_problem(store, found, len(store_rows), settings.max_unmatched_fraction)
    if reason:
        return _failed(store, reason, found, found_um)
    features, reason = _float16(store, found, imported_rows)
    if features is None:
        return _failed(store, reason, found, found_um)
    attrs = FeatureAttrs(
        source="import", encoder=settings.encoder_name or found.encoder, n_store_tiles=n_tiles,
        source_file=str(found.path),
    )  # fmt: skip
    slide = SlideFeatures(store.slide_id, features, store.coords[store_rows], store_rows, attrs)
    return ImportResult(slide, "pass", "", len(found.coords), store.tile_um, found_um)
