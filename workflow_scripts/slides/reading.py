"""Open whole-slide images with OpenSlide: physical resolution, pyramid level to read, RGB and low-res reads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

# Microns per pixel of an objective: 10 um/px divided by the magnification (40x = 0.25, 20x = 0.5).
MICRONS_AT_1X = 10.0
# Recorded MPP outside this range is not a microscope scan but a placeholder (72 dpi = 352.8 um/px in
# image-library TIFFs such as boxes.tiff), so it is treated as missing.
PLAUSIBLE_MPP = (0.01, 10.0)
MASK_STRIP_PX = 2048  # output rows of a low-resolution read are resized in strips of about this many source rows


class SlideError(RuntimeError):
    """A slide cannot be used; the message is the QC fail reason."""


@dataclass(frozen=True)
class Resolution:
    """Level-0 microns per pixel and where that number came from."""

    mpp: float
    objective_power: float | None
    source: str  # "mpp", "objective-power" or "default"


def open_slide(path: str | os.PathLike) -> openslide.OpenSlide:
    """Open a slide file, turning every OpenSlide failure into a SlideError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SlideError(f"slide file {path} does not exist")
    try:
        return openslide.OpenSlide(path)
    except (openslide.OpenSlideError, openslide.OpenSlideUnsupportedFormatError, OSError) as error:
        raise SlideError(f"OpenSlide cannot open {path.name}: {error}") from error


def objective_power(slide: openslide.OpenSlide) -> float | None:
    """The scanner's objective magnification, when recorded."""
    value = slide.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    try:
        power = float(value) if value is not None else None
    except ValueError:
        return None
    return power if power and power > 0 else None


def slide_resolution(slide: openslide.OpenSlide, default_mpp: float | None = None, name: str = "slide") -> Resolution:
    """Level-0 um/px: plausible recorded MPP, else 10/objective power, else the configured default, else SlideError."""
    power = objective_power(slide)
    value = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
    try:
        mpp = float(value) if value is not None else None
    except ValueError:
        mpp = None
    if mpp is not None and PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
        return Resolution(mpp, power, "mpp")
    if power is not None:
        return Resolution(MICRONS_AT_1X / power, power, "objective-power")
    if default_mpp is not None and default_mpp > 0:
        return Resolution(float(default_mpp), None, "default")
    raise SlideError(
        f"{name}: no resolution metadata (no MPP, no objective power) and no tiling.default_mpp configured"
    )


def level_for_downsample(downsamples: tuple[float, ...], wanted: float) -> int:
    """Coarsest pyramid level whose downsample does not exceed `wanted` (so it keeps at least the target resolution)."""
    candidates = [index for index, downsample in enumerate(downsamples) if downsample <= wanted * 1.001]
    return max(candidates, key=lambda index: downsamples[index]) if candidates else 0


def read_rgb(slide: openslide.OpenSlide, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
    """Read a region (level-0 top-left, level-sized width/height) as RGB uint8, transparent areas made white."""
    rgba = np.asarray(slide.read_region((int(x), int(y)), int(level), (int(width), int(height))))
    rgb = rgba[..., :3].copy()
    transparent = rgba[..., 3] == 0
    if transparent.any():
        rgb[transparent] = 255
    return rgb


def read_low_res(slide: openslide.OpenSlide, downsample: float) -> np.ndarray:
    """Whole slide at `downsample` level-0 px per pixel, read in strips from the best pyramid level."""
    level = level_for_downsample(slide.level_downsamples, downsample)
    level_w, level_h = slide.level_dimensions[level]
    level_downsample = slide.level_downsamples[level]
    ratio = downsample / level_downsample
    out_w = max(1, int(round(level_w / ratio)))
    out_h = max(1, int(round(level_h / ratio)))
    image = np.empty((out_h, out_w, 3), np.uint8)
    strip_rows = max(1, int(MASK_STRIP_PX // ratio))
    for top in range(0, out_h, strip_rows):
        bottom = min(out_h, top + strip_rows)
        y0 = int(round(top * ratio))
        y1 = min(level_h, max(y0 + 1, int(round(bottom * ratio))))
        strip = read_rgb(slide, level, 0, int(round(y0 * level_downsample)), level_w, y1 - y0)
        image[top:bottom] = np.asarray(Image.fromarray(strip).resize((out_w, bottom - top), Image.Resampling.BOX))
    return image
