"""Heterogeneity maps: each tile coloured by its combination of positive traits, same colours on every slide."""

from __future__ import annotations

import os

import numpy as np

from workflow_scripts.analysis.cartography import StoreLayout
from workflow_scripts.analysis.heterogeneity import (
    combination_ids,
    combination_label,
    n_combinations,
    positive_and_mask,
)
from workflow_scripts.common.figures import pyplot, save_figure

NONE_COLOUR = (0.83, 0.83, 0.83)
BACKGROUND_COLOUR = (1.0, 1.0, 1.0)


def combination_palette(n_traits: int) -> dict[int, tuple[float, float, float]]:
    """Fixed RGB colour per combination id (0 = positive for none), depending only on the number of traits."""
    import matplotlib

    n_comb = n_combinations(n_traits)
    if n_comb <= 10:
        colours = [matplotlib.colormaps["tab10"](index)[:3] for index in range(n_comb)]
    elif n_comb <= 20:
        colours = [matplotlib.colormaps["tab20"](index)[:3] for index in range(n_comb)]
    else:
        colours = [matplotlib.colormaps["hsv"](index / n_comb)[:3] for index in range(n_comb)]
    palette = {combination: tuple(float(v) for v in colours[combination - 1]) for combination in range(1, n_comb + 1)}
    palette[0] = NONE_COLOUR
    return palette


def heterogeneity_image(tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB float image (H, W, 3) of a cartography tensor and its tile mask (False = background)."""
    positive, tiles = positive_and_mask(tensor)
    palette = combination_palette(positive.shape[-1])
    lookup = np.array([palette[index] for index in range(len(palette))])
    image = lookup[combination_ids(positive)]
    image[~tiles] = BACKGROUND_COLOUR
    return image, tiles


def legend_entries(traits: list[str]) -> list[tuple[str, tuple[float, float, float]]]:
    """Legend names and colours of all 2**K - 1 combinations, then 'none' and 'background'."""
    palette = combination_palette(len(traits))
    entries = [(combination_label(index, traits), palette[index])
               for index in range(1, n_combinations(len(traits)) + 1)]
    entries.append(("none positive", NONE_COLOUR))
    entries.append(("background (no tile)", BACKGROUND_COLOUR))
    return entries


def legend_handles(traits: list[str]) -> list:
    """Legend patches of every combination, shared by the single maps and the gallery."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=colour, edgecolor="black", linewidth=0.5, label=name)
            for name, colour in legend_entries(traits)]


def grid_extent(layout: StoreLayout) -> tuple[float, float, float, float]:
    """Extent (left, right, bottom, top) of the whole tile grid in thumbnail pixels, for imshow overlays."""
    step = layout.level0_tile_px
    if len(layout.coords):
        origin = layout.coords[0] - layout.grid[0] * step
    else:
        origin = np.zeros(2)
    n_cols, n_rows = layout.grid_shape
    left, top = origin / layout.downsample
    right = (origin[0] + n_cols * step) / layout.downsample
    bottom = (origin[1] + n_rows * step) / layout.downsample
    return float(left), float(right), float(bottom), float(top)


def plot_map(
    tensor: np.ndarray,
    traits: list[str],
    path: str | os.PathLike,
    title: str,
    layout: StoreLayout | None = None,
) -> None:
    """Save the heterogeneity map as PNG; with a layout holding a thumbnail, draw it over the slide thumbnail."""
    plt = pyplot()
    image, tiles = heterogeneity_image(tensor)
    figure, axis = plt.subplots(figsize=(7.5, 5.5))
    if layout is not None and layout.thumbnail is not None:
        axis.imshow(layout.thumbnail)
        overlay = np.dstack([image, np.where(tiles, 0.6, 0.0)])
        axis.imshow(overlay, extent=grid_extent(layout), interpolation="nearest")
        axis.set_xlim(0, layout.thumbnail.shape[1])
        axis.set_ylim(layout.thumbnail.shape[0], 0)
    else:
        axis.imshow(image, interpolation="nearest")
    axis.set_axis_off()
    axis.set_title(title, fontsize=9)
    handles = legend_handles(traits)
    axis.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    figure.tight_layout()
    save_figure(figure, path, dpi=120, tight=True)


def plot_gallery(
    maps: list[tuple[str, float, np.ndarray]],
    traits: list[str],
    path: str | os.PathLike,
    columns: int = 6,
) -> None:
    """Save heterogeneity maps side by side in the given order (the report's gallery, ordered by HTI)."""
    plt = pyplot()
    rows = max(1, -(-len(maps) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 1.9 * rows + 0.8), squeeze=False)
    for axis in axes.ravel():
        axis.set_axis_off()
    for axis, (name, value, tensor) in zip(axes.ravel(), maps):
        image, _ = heterogeneity_image(tensor)
        axis.imshow(image, interpolation="nearest")
        label = "HTI n/a" if np.isnan(value) else f"HTI {value:.2f}"
        axis.set_title(f"{name[:23]}\n{label}", fontsize=6)
    handles = legend_handles(traits)
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=7, frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(figure, path, dpi=110)
