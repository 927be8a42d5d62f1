"""The one figure writer: headless Matplotlib, atomic saves, and no dates in the file so reruns are identical.

Also the pieces every figure shares: the Okabe-Ito colours, group plots (points, boxes only from MIN_BOX_N values,
black medians), wrapped tick labels and a millimetre scale bar."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from workflow_scripts.common.atomic import atomic_path


def pyplot():
    """Matplotlib's pyplot on the non-interactive Agg backend (jobs run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, *paths: str | os.PathLike, dpi: int = 120, tight: bool = False) -> None:
    """Save a figure atomically to each path in its suffix's format (png, pdf, svg) without dates, then close it."""
    plt = pyplot()
    extra = {"bbox_inches": "tight"} if tight else {}
    try:
        for path in paths:
            suffix = Path(path).suffix.lstrip(".").lower()
            metadata = {"CreationDate": None} if suffix == "pdf" else {"Software": None}
            with atomic_path(path) as temporary:
                figure.savefig(temporary, format=suffix, dpi=dpi, metadata=metadata, **extra)
    finally:
        plt.close(figure)


SCALE_BAR_MM = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0, 50.0)


def scale_bar_px(length_mm: float, um_per_px: float) -> float:
    """Length in image pixels of a scale bar of length_mm on an image of um_per_px micrometres per pixel."""
    if not um_per_px > 0:
        raise ValueError(f"scale bar needs a positive micrometres-per-pixel, got {um_per_px}")
    return length_mm * 1000.0 / um_per_px


def scale_bar_mm(width_px: float, um_per_px: float, fraction: float = 0.25) -> float:
    """The longest round length (SCALE_BAR_MM) that fits in `fraction` of the image width, so the bar stays readable."""
    fits = [mm for mm in SCALE_BAR_MM if scale_bar_px(mm, um_per_px) <= fraction * width_px]
    return fits[-1] if fits else SCALE_BAR_MM[0]


def add_scale_bar(axis, width_px: float, um_per_px: float) -> float:
    """Draw a labelled scale bar (white box, lower right) in data pixels of um_per_px; returns its length in mm."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = scale_bar_mm(width_px, um_per_px)
    bar = AnchoredSizeBar(axis.transData, scale_bar_px(length, um_per_px), f"{length:g} mm", "lower right",
                          pad=0.3, borderpad=0.4, sep=3, frameon=True, size_vertical=0.008 * width_px,
                          fontproperties={"size": 8})
    bar.patch.set(facecolor="white", edgecolor="none", alpha=0.85)
    axis.add_artist(bar)
    return length


# Okabe & Ito (2008) colour-blind-safe set: group colours of the plots and the source of the map palette
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
             "yellow": "#F0E442", "vermillion": "#D55E00", "reddish_purple": "#CC79A7", "black": "#000000"}
GROUP_COLOURS = tuple(OKABE_ITO[name] for name in ("blue", "vermillion", "bluish_green", "reddish_purple", "orange"))
MEDIAN_COLOUR = "black"  # contrasts with every group colour
MIN_BOX_N = 5  # fewer points are shown as points only: a box of 1-4 values says nothing a reader can use


def wrap_label(text: str, width: int = 14) -> str:
    """Tick label wrapped on spaces to lines of at most `width` characters, so neighbouring labels do not overlap."""
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width, break_long_words=False, break_on_hyphens=False)) or str(text)


def draw_groups(axis, groups: list[np.ndarray], colours: list[str], rng: np.random.Generator) -> None:
    """Jittered points of each group at positions 0..n-1, over a box only when n >= MIN_BOX_N, median in black."""
    median_line = {"linewidth": 2.2, "zorder": 4}
    median = {"color": MEDIAN_COLOUR} | median_line
    for position, (values, colour) in enumerate(zip(groups, colours)):
        values = np.asarray(values, dtype=float)
        values = values[~np.isnan(values)]
        if values.size >= MIN_BOX_N:
            axis.boxplot([values], positions=[position], widths=0.55, showfliers=False, patch_artist=True,
                         boxprops={"facecolor": "none", "edgecolor": "0.35"}, whiskerprops={"color": "0.35"},
                         capprops={"color": "0.35"}, medianprops=median)
        elif values.size >= 2:
            axis.hlines(np.median(values), position - 0.2, position + 0.2, colors=MEDIAN_COLOUR, **median_line)
        axis.scatter(position + rng.uniform(-0.14, 0.14, values.size), values, s=14, alpha=0.75, color=colour,
                     edgecolors="none", zorder=3)
