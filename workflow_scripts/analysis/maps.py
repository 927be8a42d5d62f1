"""Heterogeneity maps: each tile coloured by its combination of positive traits, same colours on every slide.

Palette (the one owner of the map colours; the QuPath and viewer exports import it from here):
- K <= 3 traits (up to 7 combinations): the Okabe-Ito colour-blind-safe set (Okabe & Ito 2008, without black), by
  combination id (bit k = trait k), so the K = 2 colours are those of the first three ids of K = 3 on every slide
  and cohort. With NONE_COLOUR (grey) and BACKGROUND_COLOUR (white) every pair of the 9 colours is at least
  14 CAM02-UCS units apart for normal vision and Machado 2009 deuteranopia and protanopia at severity 100
  (11 for tritanopia), tests/test_palette.py checks >= 12.
- K >= 4 (15 or more combinations, more than any safe categorical set holds): hue = the number of positive
  traits (Okabe-Ito order), tone = the combination's rank among those with that count, from dark to light.
  Distinct and deterministic, but not every pair is far apart: read exact shares from hti.tsv's p_ columns.
Overlays draw each combination as a fill of opacity `maps.alpha` over the slide thumbnail with an opaque outline of
its region in the same colour; legend swatches are drawn the same way. Figure size follows the tile grid (MAP_TILE_IN
inches a tile) up to MAP_MAX_IN, so a 100 x 80 grid keeps ~10 pixels a tile; a scale bar gives millimetres.
"""

from __future__ import annotations

import os
from math import comb

import numpy as np

from workflow_scripts.analysis.cartography import StoreLayout
from workflow_scripts.analysis.heterogeneity import (
    combination_ids,
    combination_label,
    combination_members,
    n_combinations,
    positive_and_mask,
)
from workflow_scripts.common.figures import OKABE_ITO, add_scale_bar, pyplot, save_figure
from workflow_scripts.inputs.barcodes import short_slide_name

RGB = tuple[float, float, float]
COMBINATION_HUES = tuple(OKABE_ITO[name] for name in (  # combination ids 1..7
    "blue", "orange", "sky_blue", "bluish_green", "yellow", "vermillion", "reddish_purple"))
NONE_COLOUR = (187 / 255, 187 / 255, 187 / 255)  # #BBBBBB, light grey
BACKGROUND_COLOUR = (1.0, 1.0, 1.0)
DEFAULT_ALPHA = 0.35  # maps.alpha: fill opacity of the overlays
MAP_TILE_IN = 0.08  # inches a tile: ~10 px at the maps' 120 dpi
MAP_MAX_IN = (10.0, 8.0)  # largest map area (width, height) in inches
MAP_MIN_IN = 4.0  # smallest long side of the map area in inches
LEGEND_IN = 2.8
TITLE_IN = 0.7
OUTLINE_UPSAMPLE = 3  # cells drawn as 3 x 3 blocks for the outlines, so they follow cell edges, not diagonals


def overlay_alpha(maps: dict) -> float:
    """The `maps.alpha` fill opacity, checked here too so a value the schema let through cannot break a map."""
    alpha = float(maps.get("alpha", DEFAULT_ALPHA))
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"config key maps.alpha must be within [0, 1], got {alpha}")
    return alpha


def hex_rgb(code: str) -> RGB:
    """'#RRGGBB' as RGB floats in [0, 1], the form Matplotlib and the exports take."""
    from matplotlib.colors import to_rgb

    return tuple(float(value) for value in to_rgb(code))


def _tone(colour: RGB, shift: float) -> RGB:
    """The colour mixed towards black (shift < 0) or white (shift > 0) by |shift|."""
    target = 0.0 if shift < 0 else 1.0
    return tuple(float(v + abs(shift) * (target - v)) for v in colour)


def _many_trait_colour(combination: int, n_traits: int) -> RGB:
    """Colour of a combination when K >= 4: hue by positive-trait count, tone by rank among that count."""
    count = sum(combination_members(combination, n_traits))
    same_count = [other for other in range(1, 2**n_traits) if bin(other).count("1") == count]
    rank, size = same_count.index(combination), comb(n_traits, count)
    shift = 0.0 if size == 1 else -0.45 + 0.9 * rank / (size - 1)
    return _tone(hex_rgb(COMBINATION_HUES[(count - 1) % len(COMBINATION_HUES)]), shift)


def combination_palette(n_traits: int) -> dict[int, RGB]:
    """Fixed RGB colour per combination id (0 = positive for none), depending only on the number of traits."""
    n_comb = n_combinations(n_traits)
    if n_comb <= len(COMBINATION_HUES):
        palette = {combination: hex_rgb(COMBINATION_HUES[combination - 1]) for combination in range(1, n_comb + 1)}
    else:
        palette = {combination: _many_trait_colour(combination, n_traits) for combination in range(1, n_comb + 1)}
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


def legend_entries(traits: list[str]) -> list[tuple[str, RGB]]:
    """Legend names and colours of all 2**K - 1 combinations, then 'none' and 'background'."""
    palette = combination_palette(len(traits))
    entries = [(combination_label(index, traits), palette[index])
               for index in range(1, n_combinations(len(traits)) + 1)]
    entries.append(("none positive", NONE_COLOUR))
    entries.append(("background (no tile)", BACKGROUND_COLOUR))
    return entries


def legend_handles(traits: list[str], alpha: float | None = None) -> list:
    """Legend patches drawn as the map draws them: opaque, or (overlay) fill at `alpha` with an opaque outline."""
    from matplotlib.patches import Patch

    handles = []
    for name, colour in legend_entries(traits):
        if alpha is None:
            handles.append(Patch(facecolor=colour, edgecolor="black", linewidth=0.5, label=name))
        elif colour == BACKGROUND_COLOUR:
            handles.append(Patch(facecolor="none", edgecolor="black", linewidth=0.5, linestyle=":",
                                 label="no tile (slide shown bare)"))
        else:
            handles.append(Patch(facecolor=(*colour, alpha), edgecolor=colour, linewidth=1.5, label=name))
    return handles


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


def map_size_inches(n_cols: int, n_rows: int) -> tuple[float, float]:
    """Map area (width, height) in inches: MAP_TILE_IN a tile, shrunk to fit MAP_MAX_IN, grown to MAP_MIN_IN."""
    width, height = max(n_cols, 1) * MAP_TILE_IN, max(n_rows, 1) * MAP_TILE_IN
    factor = min(MAP_MAX_IN[0] / width, MAP_MAX_IN[1] / height, 1.0)
    factor = max(factor, min(MAP_MIN_IN / max(width, height), MAP_MAX_IN[0] / width, MAP_MAX_IN[1] / height))
    return width * factor, height * factor


def map_figsize(n_cols: int, n_rows: int, legend_rows: int) -> tuple[float, float]:
    """Figure size of one map: the map area, a legend column to its right and the title above."""
    width, height = map_size_inches(n_cols, n_rows)
    return width + LEGEND_IN, max(height, 0.22 * legend_rows) + TITLE_IN


def map_um_per_px(layout: StoreLayout, overlay: bool) -> float:
    """Micrometres per drawn pixel: a thumbnail pixel (overlay) or one tile (plain map); 0 when unknown."""
    if layout.tile_um <= 0:
        return 0.0
    if not overlay:
        return layout.tile_um
    return layout.tile_um / layout.level0_tile_px * layout.downsample if layout.level0_tile_px > 0 else 0.0


def draw_outlines(axis, ids: np.ndarray, tiles: np.ndarray, palette: dict[int, RGB], extent) -> None:
    """Opaque outline of each combination's region, so a light fill still shows where one region ends."""
    block = np.ones((OUTLINE_UPSAMPLE, OUTLINE_UPSAMPLE))
    for combination in np.unique(ids[tiles]):
        mask = np.kron((ids == combination) & tiles, block)
        if mask.all():
            continue
        axis.contour(mask.astype(float), levels=[0.5], colors=[palette[int(combination)]], linewidths=0.9,
                     origin="upper", extent=extent)


def draw_overlay(axis, tensor: np.ndarray, layout: StoreLayout, alpha: float) -> None:
    """The slide thumbnail with each tile's combination as a fill of opacity alpha and outlined regions."""
    image, tiles = heterogeneity_image(tensor)
    positive, _ = positive_and_mask(tensor)
    extent = grid_extent(layout)
    axis.imshow(layout.thumbnail)
    axis.imshow(np.dstack([image, np.where(tiles, alpha, 0.0)]), extent=extent, interpolation="nearest")
    draw_outlines(axis, combination_ids(positive), tiles, combination_palette(positive.shape[-1]), extent)
    axis.set_xlim(0, layout.thumbnail.shape[1])
    axis.set_ylim(layout.thumbnail.shape[0], 0)


def plot_map(
    tensor: np.ndarray,
    traits: list[str],
    path: str | os.PathLike,
    title: str,
    layout: StoreLayout | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> None:
    """Save a map as PNG: over the thumbnail when the layout holds one, else one opaque cell a tile; scale bar in mm."""
    plt = pyplot()
    overlay = layout is not None and layout.thumbnail is not None
    handles = legend_handles(traits, alpha if overlay else None)
    figure, axis = plt.subplots(figsize=map_figsize(tensor.shape[1], tensor.shape[0], len(handles)))
    if overlay:
        draw_overlay(axis, tensor, layout, alpha)
    else:
        axis.imshow(heterogeneity_image(tensor)[0], interpolation="nearest")
    um_per_px = map_um_per_px(layout, overlay) if layout is not None else 0.0
    if um_per_px > 0:
        add_scale_bar(axis, axis.get_xlim()[1] - axis.get_xlim()[0], um_per_px)
    axis.set_axis_off()
    axis.set_title(title, fontsize=10, loc="left")
    axis.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False,
                ncol=1 if len(handles) <= 12 else 2)
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
    handles = legend_handles(traits)
    legend_columns = min(len(handles), 3)
    legend_in = 0.25 * -(-len(handles) // legend_columns) + 0.3
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.4 * rows + legend_in), squeeze=False)
    for axis in axes.ravel():
        axis.set_axis_off()
    for axis, (name, value, tensor) in zip(axes.ravel(), maps):
        axis.imshow(heterogeneity_image(tensor)[0], interpolation="nearest")
        label = "HTI n/a" if np.isnan(value) else f"HTI {value:.2f}"
        axis.set_title(f"{short_slide_name(name)}\n{label}", fontsize=9)
    figure.legend(handles=handles, loc="lower center", ncol=legend_columns, fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, legend_in / (2.4 * rows + legend_in), 1, 1))
    save_figure(figure, path, dpi=110)
