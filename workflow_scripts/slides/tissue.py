"""Find tissue, marker-pen ink and out-of-focus areas, so only in-focus, unmarked tissue is tiled.

Method (on a low-resolution RGB image of the whole slide, ~32 px per grid cell):
- tissue: HSV saturation above an Otsu threshold (clamped to [0.05, 0.15], so an all-tissue or all-glass image
  is not split in two), and not near-white (grey luminance < 0.92; luminance, not HSV value, so saturated
  pink/red stain is not mistaken for white). Small holes are closed and components smaller than
  `min_object_px` are removed. Pen ink is never counted as tissue.
- pen ink: HSV rules for the three usual marker colours. Green: hue 75-170 deg, saturation > 0.25; blue: hue
  195-245 deg, saturation > 0.55 (stricter than green because hematoxylin is blue-purple, hue ~250-300);
  black: value < 0.2. Ink is judged at a fixed physical scale, PEN_MPP = 4 um/px or coarser, whatever the tile
  size: finer than that, clusters of hematoxylin-dark nuclei (5-10 um each) fall below the black threshold
  (CMU-1 at 1.5 um/px: a third of its tissue cells looked inked), while marker strokes (>= 100 um wide) stay
  dark. Black specks under BLACK_MIN_AREA_UM2 that survive the averaging (the darkest nuclear clumps) are
  dropped too. No dilation: at >= 4 um/px one pixel would spill ink into neighbouring tiles.
- blur: variance of the Laplacian of the grey image of each tile at ~1 um/px. In-focus H&E scores in the
  thousands, a 2 um Gaussian blur drops it below ~40; 100 separates them (measured on CMU-1 and TCGA tiles).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

GREEN_HUE = (75.0, 170.0)
GREEN_MIN_SATURATION = 0.25
BLUE_HUE = (195.0, 245.0)
BLUE_MIN_SATURATION = 0.55
BLACK_MAX_VALUE = 0.2
PEN_MPP = 4.0  # coarsest-needed scale for ink: nuclei average out, 12 um wide strokes still fill whole pixels
BLACK_MIN_AREA_UM2 = 150.0  # ~12 x 12 um: larger than clumps of dark nuclei at PEN_MPP (<= 64 um2 on CMU-1)
WHITE_MIN_GREY = 0.92 * 255
SATURATION_THRESHOLD_RANGE = (0.05, 0.15)
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def rgb_to_hsv(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] of a uint8 RGB image."""
    rgb = image.astype(np.float32) / 255.0
    value = rgb.max(axis=-1)
    minimum = rgb.min(axis=-1)
    chroma = value - minimum
    saturation = np.where(value > 0, chroma / np.maximum(value, 1e-6), 0.0)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(chroma, 1e-6)
    hue = np.select(
        [value == red, value == green],
        [((green - blue) / safe) % 6.0, (blue - red) / safe + 2.0],
        (red - green) / safe + 4.0,
    )
    hue = np.where(chroma > 0, hue * 60.0, 0.0)
    return hue.astype(np.float32), saturation.astype(np.float32), value.astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Threshold on values in [0, 1] that maximises the between-class variance (Otsu 1979)."""
    histogram, edges = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(histogram).astype(np.float64)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(histogram * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def pen_mask(image: np.ndarray, mpp: float | None = None) -> np.ndarray:
    """Pixels of green, blue or black marker ink; given the image's mpp, black specks too small for ink are dropped."""
    hue, saturation, value = rgb_to_hsv(image)
    green = (
        (hue >= GREEN_HUE[0]) & (hue <= GREEN_HUE[1]) & (saturation > GREEN_MIN_SATURATION) & (value > BLACK_MAX_VALUE)
    )
    blue = (hue >= BLUE_HUE[0]) & (hue <= BLUE_HUE[1]) & (saturation > BLUE_MIN_SATURATION) & (value > BLACK_MAX_VALUE)
    black = value < BLACK_MAX_VALUE
    if mpp is not None and black.any():
        black &= ~small_components(black, int(math.ceil(BLACK_MIN_AREA_UM2 / mpp**2)))
    return green | blue | black


def coarse_pen_mask(image: np.ndarray, mpp: float) -> tuple[np.ndarray, float]:
    """Ink mask of an image at `mpp` um/px, judged at PEN_MPP or coarser; returns it and its pixel size in image px."""
    factor = PEN_MPP / mpp
    if factor <= 1.0:
        return pen_mask(image, mpp), 1.0
    height, width = image.shape[:2]
    size = (max(1, int(round(width / factor))), max(1, int(round(height / factor))))
    coarse = np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).resize(size, Image.Resampling.BOX))
    return pen_mask(coarse, mpp * factor), factor


def expand_mask(mask: np.ndarray, factor: float, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of a mask whose pixels span `factor` pixels of an image of `shape` onto it."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) / factor).astype(int), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) / factor).astype(int), mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def tissue_mask(image: np.ndarray, min_object_px: int = 16, pen: np.ndarray | None = None) -> np.ndarray:
    """Stained, non-white, non-ink pixels, cleaned of specks and pinholes."""
    _, saturation, _ = rgb_to_hsv(image)
    low, high = SATURATION_THRESHOLD_RANGE
    threshold = min(max(otsu_threshold(saturation), low), high)
    grey = image.astype(np.float32) @ GREY_WEIGHTS
    tissue = (saturation > threshold) & (grey < WHITE_MIN_GREY)
    tissue = close_square(tissue) | tissue
    if pen is None:
        pen = pen_mask(image)
    tissue &= ~pen
    tissue[small_components(tissue, min_object_px)] = False
    return tissue


# Morphology in numpy rather than scipy.ndimage: importing scipy.ndimage costs ~0.5 CPU-s per tiling job.


def close_square(mask: np.ndarray) -> np.ndarray:
    """Binary closing by a 3x3 square with outside = False (scipy binary_closing, border_value=0)."""
    dilated = mask.copy()
    dilated[1:] |= mask[:-1]
    dilated[:-1] |= mask[1:]
    rows = dilated.copy()
    dilated[:, 1:] |= rows[:, :-1]
    dilated[:, :-1] |= rows[:, 1:]
    eroded = dilated.copy()
    eroded[1:] &= dilated[:-1]
    eroded[:-1] &= dilated[1:]
    eroded[[0, -1]] = False
    rows = eroded.copy()
    eroded[:, 1:] &= rows[:, :-1]
    eroded[:, :-1] &= rows[:, 1:]
    eroded[:, [0, -1]] = False
    return eroded


def small_components(mask: np.ndarray, min_px: int) -> np.ndarray:
    """Pixels of 4-connected components with fewer than min_px pixels (components are unions of row runs)."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1)
    run_row, run_start = np.nonzero(steps == 1)
    _, run_end = np.nonzero(steps == -1)
    n_runs = len(run_row)
    if n_runs == 0:
        return np.zeros_like(mask, dtype=bool)
    line = width + 1  # run keys row * line + column sort like the runs themselves
    next_row = (run_row + 1) * line
    first = np.searchsorted(run_row * line + run_end, next_row + run_start, side="right")
    stop = np.searchsorted(run_row * line + run_start, next_row + run_end, side="left")
    counts = np.maximum(stop - first, 0)
    upper = np.repeat(np.arange(n_runs), counts)
    lower = first[upper] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    labels = np.arange(n_runs)
    while True:  # hook each root to the smallest root it touches, then compress paths, until no edge joins two roots
        upper_root, lower_root = labels[upper], labels[lower]
        smaller = np.minimum(upper_root, lower_root)
        hooked = labels.copy()
        np.minimum.at(hooked, upper_root, smaller)
        np.minimum.at(hooked, lower_root, smaller)
        while not np.array_equal(hooked[hooked], hooked):
            hooked = hooked[hooked]
        if np.array_equal(hooked, labels):
            break
        labels = hooked
    sizes = np.bincount(labels, weights=run_end - run_start, minlength=n_runs)
    small = sizes[labels] < min_px
    edges = np.zeros(height * width + 1, np.int32)
    np.add.at(edges, run_row[small] * width + run_start[small], 1)
    np.add.at(edges, run_row[small] * width + run_end[small], -1)
    return (np.cumsum(edges[:-1]) > 0).reshape(height, width)


def laplacian_variance(image: np.ndarray) -> float:
    """Focus measure: variance of the Laplacian of the grey image (low = blurred)."""
    grey = image.astype(np.float32) @ GREY_WEIGHTS if image.ndim == 3 else image.astype(np.float32)
    padded = np.pad(grey, 1, mode="symmetric")  # mirror the edge like scipy.ndimage.laplace's default
    laplacian = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * grey
    return float(laplacian.var())


def cell_fractions(mask: np.ndarray, cell_px: float, n_cols: int, n_rows: int) -> np.ndarray:
    """Fraction of True pixels in each grid cell (rows, cols); cells span cell_px mask pixels (may be fractional)."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.float64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.float64), axis=1)
    xs = np.clip(np.rint(np.arange(n_cols + 1) * cell_px).astype(int), 0, mask.shape[1])
    ys = np.clip(np.rint(np.arange(n_rows + 1) * cell_px).astype(int), 0, mask.shape[0])
    totals = (
        integral[ys[1:]][:, xs[1:]]
        - integral[ys[:-1]][:, xs[1:]]
        - integral[ys[1:]][:, xs[:-1]]
        + integral[ys[:-1]][:, xs[:-1]]
    )
    areas = np.outer(ys[1:] - ys[:-1], xs[1:] - xs[:-1]).astype(np.float64)
    return np.where(areas > 0, totals / np.maximum(areas, 1), 0.0).astype(np.float32)
