"""The slide viewer's data: per slide, an image of the whole slide and one row per tile for the overlays.

Coordinates are level-0 pixels of the slide with y negated (x grows right, y = -level-0 y grows up), so the
image and the tile squares share one plot space: the image spans x 0..width and y 0..-height, a tile with level-0
top-left (x, y) spans x x..x+side and y -y..-(y+side).  Colours are the heterogeneity maps' (analysis.maps):
the heterogeneity layer colours a tile by its combination of the chosen heterogeneity traits, the layer of trait
k colours its positive tiles with the colour of the combination "trait k only" and its negative tiles with
NONE_COLOUR.  A tile's score of a trait is the mean tile probability of the trait's chosen ensemble members (its
call is the ensemble's majority vote, as in the cartography).  The image is the slide read by OpenSlide
(get_thumbnail, long side at most `max_px`), or the tile store's thumbnail when the slide file is gone.
The page that shows these is written by analysis.viewer_page.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import simplejpeg
from matplotlib.colors import to_hex
from PIL import Image

from workflow_scripts.analysis.cartography import StoreLayout, read_cartography, read_store_layout, tensor_layout
from workflow_scripts.analysis.ensemble import align_by_coords, chosen_splits, read_members
from workflow_scripts.analysis.heterogeneity import combination_ids, combination_label, positive_and_mask, select_traits
from workflow_scripts.analysis.maps import DEFAULT_ALPHA, NONE_COLOUR, combination_palette, overlay_alpha
from workflow_scripts.learning.predictions import prediction_path, read_predictions
from workflow_scripts.slides.reading import SlideError, open_slide
from workflow_scripts.slides.tilestore import TileStore

SLIDE_SOURCE = "slide"
STORE_SOURCE = "tile store thumbnail"
MAX_PX_RANGE = (64, 16384)  # viewer.max_px: JPEG and canvas limits are far above; below 64 px a slide is a blur


@dataclass(frozen=True)
class ViewerSettings:
    """How the viewer's slide images are made (cap on their long side, JPEG quality) and the overlays' first opacity."""

    max_px: int = 1024
    jpeg_quality: int = 75
    opacity: float = DEFAULT_ALPHA

    @classmethod
    def from_config(cls, section: dict, maps: dict | None = None) -> ViewerSettings:
        """Settings from the config's `viewer` section (and `maps.alpha`), naming a key whose value is out of range."""
        settings = cls(int(section.get("max_px", cls.max_px)), int(section.get("jpeg_quality", cls.jpeg_quality)),
                       overlay_alpha(maps or {}))
        if not MAX_PX_RANGE[0] <= settings.max_px <= MAX_PX_RANGE[1]:
            raise ValueError(f"config key viewer.max_px must be in {MAX_PX_RANGE[0]}..{MAX_PX_RANGE[1]}, "
                             f"got {settings.max_px}")
        if not 1 <= settings.jpeg_quality <= 100:
            raise ValueError(f"config key viewer.jpeg_quality must be in 1..100, got {settings.jpeg_quality}")
        return settings


@dataclass(frozen=True)
class SlideImage:
    """The whole slide as RGB pixels, the level-0 size they cover and where they came from."""

    pixels: np.ndarray
    level0_size: tuple[float, float]
    source: str


def capped(pixels: np.ndarray, max_px: int) -> np.ndarray:
    """The image shrunk (aspect kept, box filter) so its long side is at most max_px; small images unchanged."""
    height, width = pixels.shape[:2]
    if max(height, width) <= max_px:
        return pixels
    scale = max_px / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))


def read_slide_image(store_path: str | os.PathLike, max_px: int, log: logging.Logger | None = None) -> SlideImage:
    """The slide at most max_px on its long side from its file (the store's source_path), else the store thumbnail."""
    log = log or logging.getLogger(__name__)
    with TileStore(store_path) as store:
        source_path = str(store.attrs.get("source_path", ""))
        thumbnail, downsample = store.thumbnail, store.thumbnail_downsample
    if source_path and Path(source_path).is_file():
        try:
            slide = open_slide(source_path)
            try:
                pixels = np.asarray(slide.get_thumbnail((max_px, max_px)).convert("RGB"))
                return SlideImage(capped(pixels, max_px), tuple(map(float, slide.dimensions)), SLIDE_SOURCE)
            finally:
                slide.close()
        except SlideError as error:
            log.warning("%s: %s; showing the tile store's thumbnail", store_path, error)
    else:
        log.warning("%s: slide file %r not found; showing the tile store's thumbnail", store_path, source_path)
    size = (thumbnail.shape[1] * downsample, thumbnail.shape[0] * downsample)
    return SlideImage(capped(thumbnail, max_px), size, STORE_SOURCE)


def jpeg_data_uri(pixels: np.ndarray, quality: int) -> str:
    """An RGB image as a data: URI, so the page needs no other file."""
    encoded = simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=quality, colorspace="RGB")
    return "data:image/jpeg;base64," + base64.b64encode(encoded).decode("ascii")


def mean_member_scores(
    prediction_dirs: dict[str, Path], layout: StoreLayout, traits: Sequence[str], members: pd.DataFrame
) -> np.ndarray:
    """(N tiles, K traits) mean probability of each trait's chosen models, in the store's tile order."""
    columns = []
    for trait in traits:
        path = prediction_path(prediction_dirs[trait], layout.slide_id)
        if not path.exists():
            raise FileNotFoundError(f"slide {layout.slide_id}: no predictions of trait {trait} at {path}")
        predictions = read_predictions(path, trait)
        scores = predictions.columns(chosen_splits(members, trait)).mean(axis=1)
        columns.append(align_by_coords(layout.coords, predictions.coords, scores, layout.slide_id, str(path)))
    return np.stack(columns, axis=1) if columns else np.zeros((len(layout.coords), 0))


def hex_colours(rgb: np.ndarray) -> list[str]:
    """CSS colours of RGB float rows, the form the page's glyphs take."""
    return [to_hex(tuple(row)) for row in np.asarray(rgb, dtype=float).reshape(-1, 3)]


def tile_table(
    layout: StoreLayout,
    tensor: np.ndarray,
    traits: list[str],
    chosen: list[str],
    scores: np.ndarray,
) -> dict[str, list]:
    """One row per tile: its square in plot space, grid cell, combination (name, colour) and per-trait call, score
    and layer colour (columns call_k, score_k, colour_k for traits[k])."""
    cols, rows = layout.grid[:, 0], layout.grid[:, 1]
    calls = tensor[rows, cols]
    positive, _ = positive_and_mask(select_traits(tensor, traits, chosen, layout.slide_id))
    ids = combination_ids(positive[rows, cols])
    palette = combination_palette(len(chosen))
    side = layout.level0_tile_px
    left, top = layout.coords[:, 0].astype(float), -layout.coords[:, 1].astype(float)
    table = {"left": left.tolist(), "right": (left + side).tolist(), "top": top.tolist(),
             "bottom": (top - side).tolist(), "col": cols.tolist(), "row": rows.tolist(),
             "combination": [combination_label(int(i), chosen) if i else "none positive" for i in ids],
             "het_colour": hex_colours(np.array([palette[int(i)] for i in ids]).reshape(-1, 3))}
    single = combination_palette(max(2, len(traits)))
    for k in range(len(traits)):
        is_positive = calls[:, k] == 1
        table[f"call_{k}"] = ["+" if value else "-" for value in is_positive]
        table[f"score_{k}"] = [round(float(value), 4) for value in scores[:, k]]
        colours = np.where(is_positive[:, None], single[1 << k], NONE_COLOUR)
        table[f"colour_{k}"] = hex_colours(colours)
    return table


@dataclass(frozen=True)
class SlideView:
    """Everything the page shows of one slide: its row of the slide list, image and tile table."""

    slide_id: str
    summary: dict
    image_uri: str
    image_px: tuple[int, int]
    level0_size: tuple[float, float]
    image_source: str
    tiles: dict[str, list]


def slide_view(
    slide: dict, store_path: str | os.PathLike, cartography_path: Path, chosen: list[str], scores_from: dict,
    settings: ViewerSettings, log: logging.Logger,
) -> tuple[SlideView, list[str]]:
    """The view of one slide (and its cartography's traits) from its hti.tsv row, tile store and cartography."""
    tensor, traits, _ = read_cartography(cartography_path)
    layout = tensor_layout(read_store_layout(store_path), tensor, str(cartography_path))
    scores = mean_member_scores(scores_from["dirs"], layout, traits, scores_from["members"])
    image = read_slide_image(store_path, settings.max_px, log)
    tiles = tile_table(layout, tensor, traits, chosen, scores)
    view = SlideView(layout.slide_id, slide, jpeg_data_uri(image.pixels, settings.jpeg_quality),
                     (int(image.pixels.shape[1]), int(image.pixels.shape[0])), image.level0_size, image.source, tiles)
    return view, traits


def slide_views(
    hti_table: pd.DataFrame,
    stores: Sequence[str | os.PathLike],
    cartography_dir: str | os.PathLike,
    chosen: list[str],
    prediction_paths: Sequence[str | os.PathLike],
    members_path: str | os.PathLike,
    settings: ViewerSettings,
    log: logging.Logger | None = None,
) -> tuple[list[SlideView], list[str]]:
    """The views of every slide of hti.tsv (the QC-passed slides) in its order, and the cartographies' traits."""
    log = log or logging.getLogger(__name__)
    store_by_id = {Path(path).stem: path for path in stores}
    scores_from = {"dirs": {Path(path).name: Path(path) for path in prediction_paths},
                   "members": read_members(members_path)}
    views, traits = [], None
    for slide in hti_table.to_dict("records"):
        slide_id = str(slide["slide_id"])
        if slide_id not in store_by_id:
            raise FileNotFoundError(f"no tile store given for slide {slide_id} of hti.tsv")
        view, slide_traits = slide_view(slide, store_by_id[slide_id], Path(cartography_dir) / f"{slide_id}.h5",
                                        chosen, scores_from, settings, log)
        if traits is not None and slide_traits != traits:
            raise ValueError(f"slide {slide_id}: cartography traits {slide_traits} differ from {traits}")
        traits = slide_traits
        views.append(view)
        log.info("%s: %d tiles, image %dx%d px from the %s, %.0f KB", slide_id, len(view.tiles["left"]),
                 *view.image_px, view.image_source, len(view.image_uri) / 1024)
    return views, list(traits or chosen)
