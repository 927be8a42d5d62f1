"""Planted ground truth of one synthetic slide: where the tissue is, which subclone occupies each spot, and
which traits each subclone carries, so every later stage of the workflow can be scored against the truth.

Everything here lives on a "field" grid coarser than level 0 by `field_scale` (4 level-0 px per field px),
which is fine enough for smooth blob outlines and cheap enough to plan hundreds of slides in a second.
The tile grid of the truth is the tiling grid: square cells of `cell_px` level-0 px starting at (0, 0); a cell
counts as tissue when at least `min_tissue_fraction` of it is tissue (the tiling stage keeps a tile when at
most half of it is background), and a tissue cell is positive for a trait when most of its tissue carries it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

BACKGROUND = 255  # value of a non-tissue cell in a trait grid, as in the cartography tensors


@dataclass(frozen=True)
class SlideLayout:
    """Tissue and subclone maps of one slide on the field grid, with the traits each subclone carries."""

    tissue: np.ndarray  # (field_rows, field_cols) bool
    region: np.ndarray  # (field_rows, field_cols) int8 subclone index, defined everywhere
    region_traits: np.ndarray  # (n_regions, K) bool
    field_scale: int  # level-0 px per field px

    @property
    def level0_size(self) -> tuple[int, int]:
        """(width, height) of the slide in level-0 pixels."""
        return self.tissue.shape[1] * self.field_scale, self.tissue.shape[0] * self.field_scale

    def pixel_traits(self) -> np.ndarray:
        """(field_rows, field_cols, K) bool: which traits the tissue at each field pixel carries."""
        return self.region_traits[self.region] & self.tissue[..., None]


def _interpolate_axis(values: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linearly interpolate `values` along `axis` at fractional `positions` (clamped to the ends)."""
    below = np.clip(np.floor(positions).astype(np.int64), 0, values.shape[axis] - 2)
    weight = np.clip(positions - below, 0.0, 1.0)
    shape = [1] * values.ndim
    shape[axis] = len(positions)
    weight = weight.reshape(shape)
    return np.take(values, below, axis=axis) * (1.0 - weight) + np.take(values, below + 1, axis=axis) * weight


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], blob_px: float) -> np.ndarray:
    """Zero-mean, unit-variance random field whose blobs are about `blob_px` field pixels across.

    Noise is smoothed on a grid four times coarser than the blobs and upsampled bilinearly, which costs a few
    milliseconds where smoothing at full resolution with a wide kernel would cost a tenth of a second.
    """
    step = max(1.0, blob_px / 4.0)
    coarse_shape = (math.ceil(shape[0] / step) + 3, math.ceil(shape[1] / step) + 3)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma=1.5, mode="wrap")
    rows = _interpolate_axis(coarse, np.arange(shape[0]) / step + 1.0, axis=0)
    field = _interpolate_axis(rows, np.arange(shape[1]) / step + 1.0, axis=1)
    field -= field.mean()
    spread = field.std()
    return field / spread if spread > 0 else field


def tissue_mask(rng: np.random.Generator, shape: tuple[int, int], fraction: float, blob_px: float) -> np.ndarray:
    """Tissue blobs covering `fraction` of the slide, thresholding a smooth field at its quantile."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"tissue fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.ones(shape, dtype=bool)
    field = smooth_field(rng, shape, blob_px)
    return field > np.quantile(field, 1.0 - fraction)


def region_map(rng: np.random.Generator, shape: tuple[int, int], n_regions: int, blob_px: float) -> np.ndarray:
    """Smooth subclone territories: each pixel belongs to the region whose random field is highest there."""
    if n_regions < 1:
        raise ValueError(f"a slide needs at least one subclone region, got {n_regions}")
    fields = np.stack([smooth_field(rng, shape, blob_px) for _ in range(n_regions)])
    return np.argmax(fields, axis=0).astype(np.int8)


def trait_combinations(n_traits: int) -> list[tuple[int, ...]]:
    """All 2^K trait subsets as 0/1 tuples, the empty set first, in a fixed order."""
    return [tuple(bits) for bits in itertools.product((0, 1), repeat=n_traits)]


def choose_region_traits(
    rng: np.random.Generator, n_regions: int, n_traits: int, homogeneous_probability: float
) -> np.ndarray:
    """Trait sets of the subclones: with `homogeneous_probability` one shared set, else distinct sets.

    The shared set draws each trait independently with probability 1/2 (the empty set, a trait-free tumour,
    included), so that across patients one trait's presence says nothing about another's: a model trained for
    one trait cannot score well by recognising a correlated trait's morphology. Homogeneous slides give HTI 0;
    distinct sets (drawn without replacement while the 2^K sets last, the trait-free set included) over 2-4
    regions give everything from mildly to highly mixed slides.
    """
    combos = trait_combinations(n_traits)
    if rng.random() < homogeneous_probability:
        shared = rng.random(n_traits) < 0.5
        return np.repeat(shared[None, :], n_regions, axis=0)
    chosen: list[int] = []
    while len(chosen) < n_regions:
        chosen.extend(rng.permutation(len(combos))[: n_regions - len(chosen)].tolist())
    return np.array([combos[i] for i in chosen], dtype=bool).reshape(n_regions, n_traits)


def make_layout(
    rng: np.random.Generator,
    level0_size: tuple[int, int],
    field_scale: int,
    cell_px: int,
    tissue_fraction: float,
    region_traits: np.ndarray,
) -> SlideLayout:
    """Draw tissue and subclone territories for a slide of `level0_size` = (width, height) level-0 px."""
    width, height = level0_size
    if width % field_scale or height % field_scale:
        raise ValueError(f"slide size {width}x{height} must be a multiple of the field scale {field_scale}")
    shape = (height // field_scale, width // field_scale)
    cell_field_px = cell_px / field_scale
    tissue = tissue_mask(rng, shape, tissue_fraction, blob_px=2.5 * cell_field_px)
    region = region_map(rng, shape, len(region_traits), blob_px=2.0 * cell_field_px)
    return SlideLayout(
        tissue=tissue, region=region, region_traits=np.asarray(region_traits, bool), field_scale=field_scale
    )


def grid_shape(level0_size: tuple[int, int], cell_px: int) -> tuple[int, int]:
    """(n_rows, n_cols) of whole tiling cells of `cell_px` starting at (0, 0); partial edge cells are dropped."""
    return level0_size[1] // cell_px, level0_size[0] // cell_px


def cell_truth(layout: SlideLayout, cell_px: int, min_tissue_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per tiling cell: trait grid (rows, cols, K) uint8 0/1 with BACKGROUND off tissue, and tissue fraction.

    A cell is tissue when at least `min_tissue_fraction` of it is tissue; it is positive for a trait when
    more than half of its tissue carries that trait.
    """
    if cell_px % layout.field_scale:
        raise ValueError(f"cell size {cell_px} px must be a multiple of the field scale {layout.field_scale}")
    step = cell_px // layout.field_scale
    n_rows, n_cols = grid_shape(layout.level0_size, cell_px)
    if n_rows == 0 or n_cols == 0:
        raise ValueError(f"slide {layout.level0_size} is smaller than one {cell_px}-px cell")

    def per_cell(values: np.ndarray) -> np.ndarray:
        """Sum field pixels over each whole cell."""
        cropped = values[: n_rows * step, : n_cols * step]
        return cropped.reshape(n_rows, step, n_cols, step, *values.shape[2:]).sum(axis=(1, 3))

    tissue_px = per_cell(layout.tissue.astype(np.int64))
    trait_px = per_cell(layout.pixel_traits().astype(np.int64))
    tissue_fraction = (tissue_px / (step * step)).astype(np.float32)
    positive = trait_px * 2 > tissue_px[..., None]
    grid = positive.astype(np.uint8)
    grid[tissue_fraction < min_tissue_fraction] = BACKGROUND
    return grid, tissue_fraction


def tissue_cells(trait_grid: np.ndarray) -> np.ndarray:
    """(n, K) 0/1 rows of the tissue cells of a trait grid, dropping BACKGROUND cells."""
    flat = trait_grid.reshape(-1, trait_grid.shape[-1])
    return flat[(flat != BACKGROUND).all(axis=1)]


def trait_fractions(trait_grid: np.ndarray) -> np.ndarray:
    """Fraction of tissue cells positive for each trait (zeros for a slide without tissue cells)."""
    cells = tissue_cells(trait_grid)
    if len(cells) == 0:
        return np.zeros(trait_grid.shape[-1])
    return cells.mean(axis=0)


def heterogeneity_index(trait_grid: np.ndarray) -> float:
    """HTI of Levy-Jurgenson et al.: normalised entropy of the trait combinations over trait-positive tiles.

    HTI = -sum_i p_i log_C p_i, C = 2^K - 1 non-empty combinations, p_i = share of the tiles positive for at
    least one trait whose positive set is exactly combination i. No positive tile, or K = 1, gives 0.
    """
    cells = tissue_cells(trait_grid)
    n_traits = trait_grid.shape[-1]
    positive = cells[cells.any(axis=1)]
    n_combinations = 2**n_traits - 1
    if len(positive) == 0 or n_combinations < 2:
        return 0.0
    codes = positive.astype(np.int64) @ (1 << np.arange(n_traits))
    counts = np.bincount(codes, minlength=2**n_traits)[1:]
    shares = counts[counts > 0] / len(positive)
    return max(0.0, float(-(shares * np.log(shares)).sum() / math.log(n_combinations)))
