"""Turn one cell's source pixels into a stored tile: resize to tile_px, focus score, JPEG or raw form."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from workflow_scripts.slides import tissue
from workflow_scripts.slides.tilestore import encode_tile
from workflow_scripts.slides.tilingconfig import TilingConfig

BLUR_MPP = 1.0  # resolution of the focus check

Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], Iterator[Any]]
TileResult = tuple[float, "np.ndarray | bytes"]


def resize_tile(region: np.ndarray, tile_px: int) -> np.ndarray:
    """Resize a square source region to tile_px: box average for integer factors, Lanczos otherwise."""
    if region.shape[:2] == (tile_px, tile_px):
        return region
    return np.asarray(resize_image(Image.fromarray(region), tile_px))


def resize_image(image: Image.Image, size: int, resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    """Square image to size x size: exact box average for an integer factor, else `resample`."""
    if image.size == (size, size):
        return image
    if image.width == image.height and image.width % size == 0:
        return image.reduce(image.width // size)
    return image.resize((size, size), resample)


def finish_tile(
    region: Image.Image, config: TilingConfig, pixels: np.ndarray | None = None
) -> tuple[float, np.ndarray | bytes]:
    """Focus score and stored form (JPEG bytes or RGB array) of one cell's region, all on the one decoded image.

    `pixels` is the same region as an array view when it is already tile-sized, so it is encoded without a copy.
    """
    tile = resize_image(region, config.tile_px)
    focus_px = max(8, int(round(config.tile_px * config.target_mpp / BLUR_MPP)))
    focus_image = resize_image(tile, focus_px, Image.Resampling.BOX) if focus_px < config.tile_px else tile
    score = tissue.laplacian_variance(np.asarray(focus_image.convert("L")))
    if pixels is None or tile is not region:
        pixels = np.asarray(tile)
    if config.encoding == "jpeg":
        return score, encode_tile(pixels, config.jpeg_quality)
    return score, np.ascontiguousarray(pixels[..., :3])
