"""Planted tile features for the synthetic cohort: what an encoder would give if it saw exactly the planted traits.

They exercise the features model family end to end with a known answer; they show the mechanics of the family, not
the quality of any encoder. For every tissue cell of a slide's truth grid (demo/truth.py), one feature vector of
`dim` float32 values: every value is Gaussian noise (sd `noise_sd`) plus a per-slide offset (sd `slide_sd`, a stain
or scanner batch effect shared by the slide's tiles); the `dims_per_trait` dimensions of trait k (dimensions
k * dims_per_trait ...) add `signal` / 2 when the cell carries the trait and subtract it when it does not, so the two
groups are `signal` noise sds apart on each of those dimensions (`signal` 0 removes the trait dimensions: chance).
Like TRIDENT's own patching, the grid is shifted against the tiling's by a per-slide offset of 0..`max_offset_px`
level-0 px (under half a cell, so every patch matches its tile) and a share `drop_fraction` of tissue cells is left
out (tiles an import does not cover: counted as unmatched). Files are written in TRIDENT's feature layout by
`features.trident_files`, one per slide, named by the slide file's name without extension; the streams come from
(seed, slide id), so the same config gives the same files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.seeds import stable_seed
from workflow_scripts.demo.layout import BACKGROUND
from workflow_scripts.demo.truth import SlideTruth, read_truth, truth_path
from workflow_scripts.features.trident_files import TridentPatchAttrs, write_trident_features

ENCODER_NAME = "planted"


@dataclass(frozen=True)
class PlantedFeatures:
    """Config features.import.planted: the size and strength of the planted feature signal."""

    dim: int = 32
    dims_per_trait: int = 4
    signal: float = 2.0
    noise_sd: float = 1.0
    slide_sd: float = 0.3
    drop_fraction: float = 0.02
    max_offset_px: int = 24

    @classmethod
    def from_config(cls, values: Mapping | None) -> PlantedFeatures:
        """Build from the config mapping; unknown keys or bad values raise naming features.import.planted.<key>."""
        values = dict(values or {})
        unknown = sorted(set(values) - {item.name for item in fields(cls)})
        if unknown:
            raise ValueError(f"unknown config key(s) {['features.import.planted.' + key for key in unknown]}")
        planted = cls(**values)
        checks = [
            (planted.dim >= 1, "dim", ">= 1"), (planted.dims_per_trait >= 1, "dims_per_trait", ">= 1"),
            (planted.signal >= 0, "signal", ">= 0"), (planted.noise_sd > 0, "noise_sd", "> 0"),
            (planted.slide_sd >= 0, "slide_sd", ">= 0"), (0 <= planted.drop_fraction < 1, "drop_fraction", "in [0, 1)"),
            (planted.max_offset_px >= 0, "max_offset_px", ">= 0"),
        ]  # fmt: skip
        for ok, key, wanted in checks:
            if not ok:
                raise ValueError(f"features.import.planted.{key} must be {wanted}, got {getattr(planted, key)!r}")
        return planted


def planted_vectors(
    truth: SlideTruth, planted: PlantedFeatures, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (M, dim) float32, level-0 top-left coords (M, 2) int64, memberships (M, K) uint8) of one slide."""
    n_traits = truth.trait_grid.shape[2]
    if n_traits * planted.dims_per_trait > planted.dim:
        raise ValueError(
            f"features.import.planted: {n_traits} traits x dims_per_trait {planted.dims_per_trait} do not fit in "
            f"dim {planted.dim}"
        )
    if 2 * planted.max_offset_px >= truth.cell_px:
        raise ValueError(f"features.import.planted.max_offset_px must be under half a cell ({truth.cell_px} px)")
    rng = np.random.default_rng(stable_seed(seed, "planted_features", truth.slide_id))
    rows, cols = np.nonzero(truth.trait_grid[:, :, 0] != BACKGROUND)
    kept = rng.random(len(rows)) >= planted.drop_fraction
    rows, cols = rows[kept], cols[kept]
    members = truth.trait_grid[rows, cols].astype(np.uint8)
    offset = rng.integers(0, planted.max_offset_px + 1, size=2)
    coords = np.stack([cols * truth.cell_px, rows * truth.cell_px], axis=1).astype(np.int64) + offset
    features = rng.normal(0.0, planted.noise_sd, size=(len(rows), planted.dim))
    features += rng.normal(0.0, planted.slide_sd, size=planted.dim)
    for trait in range(n_traits):
        columns = slice(trait * planted.dims_per_trait, (trait + 1) * planted.dims_per_trait)
        features[:, columns] += (planted.signal * (members[:, trait].astype(float) - 0.5))[:, None]
    return features.astype(np.float32), coords, members


def write_planted_folder(
    truth_folder: str | os.PathLike,
    slide_files: Mapping[str, str],
    folder: str | os.PathLike,
    planted: PlantedFeatures,
    tile_px: int,
    seed: int,
) -> int:
    """Write one TRIDENT feature file per slide of `slide_files` (slide_id -> slide file) atomically; the count.

    `tile_px` is the stored patch side TRIDENT would record (the tiling's tile_px at its target magnification).
    """
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        for slide_id, slide_file in sorted(slide_files.items()):
            truth = read_truth(truth_path(truth_folder, slide_id))
            features, coords, _ = planted_vectors(truth, planted, seed)
            level0_magnification = 10.0 / truth.mpp
            attrs = TridentPatchAttrs(
                patch_size=int(tile_px), patch_size_level0=int(truth.cell_px),
                level0_magnification=level0_magnification,
                target_magnification=level0_magnification * tile_px / truth.cell_px, overlap=0,
                name=Path(slide_file).stem,
            )  # fmt: skip
            path = temporary / f"{Path(slide_file).stem}.h5"
            write_trident_features(path, features, coords, attrs, ENCODER_NAME, savetodir=folder)
    return len(slide_files)
