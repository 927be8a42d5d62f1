"""The QC thumbnail of one tiled slide: what was found as tissue and ink, which tiles were kept, and the verdict."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from workflow_scripts.slides.tiling import SlideQC

TISSUE_TINT = (0, 200, 0)
PEN_COLOUR = (255, 0, 0)
KEPT_OUTLINE = (0, 0, 255)
MIN_WIDTH_PX = 320  # narrower thumbnails are enlarged so the status text fits


def qc_image(qc: SlideQC, max_px: int = 1024) -> Image.Image:
    """QC thumbnail: tissue tinted green, pen ink red, kept tiles outlined blue, status and reason written on top."""
    image = Image.new("RGB", (640, 160), "white") if qc.thumbnail is None else _overlay(qc, max_px)
    draw = ImageDraw.Draw(image)
    text = f"{qc.slide_id}: {qc.status}, {qc.n_tiles} tiles"
    if qc.reason:
        text += f"\n{qc.reason}"
    draw.multiline_text((4, 4), text, fill=(0, 0, 0))
    return image


def _overlay(qc: SlideQC, max_px: int) -> Image.Image:
    """The slide thumbnail with the masks and kept cells drawn on, at most max_px and at least MIN_WIDTH_PX wide."""
    pixels = qc.thumbnail.astype(np.float32)
    if qc.tissue is not None:
        pixels[qc.tissue] = 0.6 * pixels[qc.tissue] + 0.4 * np.array(TISSUE_TINT, np.float32)
    if qc.pen is not None:
        pixels[qc.pen] = np.array(PEN_COLOUR, np.float32)
    image = Image.fromarray(pixels.astype(np.uint8))
    if qc.grid is not None:
        draw = ImageDraw.Draw(image)
        cell = qc.grid.span / qc.mask_downsample
        for col, row in qc.kept_cells:
            draw.rectangle([col * cell, row * cell, (col + 1) * cell - 1, (row + 1) * cell - 1], outline=KEPT_OUTLINE)
    scale = max_px / max(image.size)
    if scale < 1:
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    if image.width < MIN_WIDTH_PX:
        factor = math.ceil(MIN_WIDTH_PX / image.width)
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    return image
