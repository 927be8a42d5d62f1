"""Write real Aperio-style pyramidal SVS files (tiled JPEG TIFF), so tests and the demo use slides OpenSlide opens.

The level-0 image is pulled band by band from a region callable, so a 40,000 x 30,000 px slide is written
without ever holding it in memory. Reduced levels are block averages of each level-0 band, accumulated in
disk-backed scratch arrays and written as separate tiled IFDs after level 0, as Aperio scanners do.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from workflow_scripts.common.atomic import atomic_path

RegionReader = Callable[[int, int, int, int], np.ndarray]

APERIO_HEADER = "Aperio Image Library v12.0.15"


def aperio_description(
    width: int, height: int, tile_px: int, jpeg_quality: int, mpp: float | None, app_mag: float | None
) -> str:
    """Build the ImageDescription OpenSlide uses to recognise an Aperio slide and read MPP/AppMag from it."""
    geometry = f"{width}x{height} [0,0 {width}x{height}] ({tile_px}x{tile_px}) JPEG/RGB Q={jpeg_quality}"
    fields = [f"{APERIO_HEADER} \r\n{geometry}"]
    if app_mag is not None:
        fields.append(f"AppMag = {app_mag:g}")
    if mpp is not None:
        fields.append(f"MPP = {mpp:.4f}")
    fields.append("ScanScope ID = SYNTHETIC")
    return "|".join(fields)


def _as_region_reader(source: RegionReader | np.ndarray) -> RegionReader:
    """Let callers pass either a callable or a whole in-memory image (small test slides)."""
    if callable(source):
        return source
    image = np.asarray(source)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"slide image must be uint8 (height, width, 3), got {image.dtype} {image.shape}")
    return lambda x, y, w, h: image[y : y + h, x : x + w]


def _block_mean(band: np.ndarray, factor: int) -> np.ndarray:
    """Average factor x factor blocks (area downsampling), dropping a partial block at the right/bottom edge."""
    if factor == 1:
        return band
    rows, cols = band.shape[0] // factor, band.shape[1] // factor
    blocks = band[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor, 3)
    return (blocks.mean(axis=(1, 3), dtype=np.float32) + 0.5).astype(np.uint8)


def _tiles_of(image: np.ndarray, tile_px: int) -> Iterator[np.ndarray]:
    """Cut an image (a band or a whole level) into row-major tiles, padding the edges with white."""
    height, width = image.shape[:2]
    for y in range(0, height, tile_px):
        for x in range(0, width, tile_px):
            tile = image[y : y + tile_px, x : x + tile_px]
            if tile.shape[:2] != (tile_px, tile_px):
                padded = np.full((tile_px, tile_px, 3), 255, np.uint8)
                padded[: tile.shape[0], : tile.shape[1]] = tile
                tile = padded
            yield np.ascontiguousarray(tile)


def _reduced_levels(scratch: Path, factors: Sequence[int], width: int, height: int) -> dict[int, np.ndarray]:
    """Disk-backed arrays for the reduced pyramid levels, filled band by band while level 0 is written."""
    return {
        factor: np.lib.format.open_memmap(
            scratch / f"level_{factor}.npy",
            mode="w+",
            dtype=np.uint8,
            shape=(max(1, height // factor), max(1, width // factor), 3),
        )
        for factor in factors
    }


def _level0_tiles(
    reader: RegionReader, size: tuple[int, int], band_px: int, tile_px: int, reduced: dict[int, np.ndarray]
) -> Iterator[np.ndarray]:
    """Level-0 tiles in row-major order, read band by band; each band is also averaged into the reduced levels."""
    width, height = size
    for band_y in range(0, height, band_px):
        band_h = min(band_px, height - band_y)
        band = np.asarray(reader(0, band_y, width, band_h), dtype=np.uint8)[..., :3]
        if band.shape[:2] != (band_h, width):
            raise ValueError(f"read_region returned {band.shape} for a {width}x{band_h} band at y={band_y}")
        for factor, level in reduced.items():
            small = _block_mean(band, factor)
            start = band_y // factor
            rows = min(small.shape[0], level.shape[0] - start)
            cols = min(small.shape[1], level.shape[1])
            level[start : start + rows, :cols] = small[:rows, :cols]
        for row_start in range(0, band_h, tile_px):
            yield from _tiles_of(band[row_start : row_start + tile_px], tile_px)


def write_aperio_slide(
    path: str | os.PathLike,
    size: tuple[int, int],
    read_region: RegionReader | np.ndarray,
    mpp: float | None = 0.25,
    app_mag: float | None = 40,
    downsamples: Sequence[int] = (1, 4, 16),
    tile_px: int = 256,
    jpeg_quality: int = 90,
) -> Path:
    """Write a pyramidal Aperio SVS of `size` = (width, height) whose pixels come from read_region(x, y, w, h).

    mpp/app_mag None omit that field (a slide without resolution metadata); downsamples must start with 1.
    """
    width, height = int(size[0]), int(size[1])
    factors = [int(d) for d in downsamples]
    if factors[0] != 1 or sorted(set(factors)) != factors:
        raise ValueError(f"downsamples must be increasing integers starting at 1, got {downsamples}")
    if tile_px % 16:
        raise ValueError(f"tile_px must be a multiple of 16 for a tiled TIFF, got {tile_px}")
    reader = _as_region_reader(read_region)
    description = aperio_description(width, height, tile_px, jpeg_quality, mpp, app_mag)
    page_options = dict(
        tile=(tile_px, tile_px),
        photometric="rgb",
        compression="jpeg",
        compressionargs={"level": jpeg_quality},
        dtype=np.uint8,
        metadata=None,
    )
    final = Path(path)
    with atomic_path(final) as temporary, tempfile.TemporaryDirectory(dir=final.parent, prefix=".levels-") as scratch:
        reduced = _reduced_levels(Path(scratch), factors[1:], width, height)
        level0 = _level0_tiles(reader, (width, height), math.lcm(tile_px, *factors), tile_px, reduced)
        with tifffile.TiffWriter(temporary, bigtiff=width * height * 3 > 2**31) as tif:
            tif.write(level0, shape=(height, width, 3), description=description, **page_options)
            for level in reduced.values():
                level_h, level_w = level.shape[:2]
                shared = description.split("|", 1)[1]
                level_description = f"{APERIO_HEADER} \r\n{width}x{height} -> {level_w}x{level_h} - |{shared}"
                tif.write(_tiles_of(level, tile_px), shape=level.shape, description=level_description, **page_options)
    return final


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in microns
PINK = np.array([232, 150, 196], np.float32)
PURPLE = np.array([82, 48, 140], np.float32)
GLASS = np.array([243, 241, 245], np.float32)
NUCLEUS_SPACING_UM = 12.0
NUCLEUS_RADIUS_UM = 3.0
DEFOCUS_SIGMA_UM = 4.0


@dataclass(frozen=True)
class SyntheticHE:
    """H&E-like pixels defined in microns, so the same tissue can be scanned at any resolution.

    Tissue is pink stroma with purple nuclei on a jittered 12 um lattice; in `blurred` boxes the nuclei are
    rendered out of focus (Gaussian profile, sigma 4 um); `pen` boxes are filled with marker ink colours.
    Call it as a slidewriter region reader: pattern(x, y, w, h) -> uint8 (h, w, 3) at `mpp`.
    """

    mpp: float
    tissue: tuple[Box, ...]
    blurred: tuple[Box, ...] = ()
    pen: tuple[tuple[Box, tuple[int, int, int]], ...] = ()
    seed: int = 0

    def __call__(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Render a level-0 region."""
        u = ((np.arange(x, x + width, dtype=np.float32) + 0.5) * self.mpp)[None, :]
        v = ((np.arange(y, y + height, dtype=np.float32) + 0.5) * self.mpp)[:, None]
        column, row = np.floor(u / NUCLEUS_SPACING_UM), np.floor(v / NUCLEUS_SPACING_UM)
        weight = (self._nucleus_distance2(u, v, column, row) < NUCLEUS_RADIUS_UM**2).astype(np.float32)
        if self.blurred:
            in_blur = self._inside(self.blurred, u, v)
            if in_blur.any():
                soft = np.zeros_like(weight)
                for step_x in (-1, 0, 1):
                    for step_y in (-1, 0, 1):
                        distance2 = self._nucleus_distance2(u, v, column + step_x, row + step_y)
                        soft += np.exp(-distance2 / (2 * DEFOCUS_SIGMA_UM**2))
                weight = np.where(in_blur, np.minimum(0.8 * soft, 1.0), weight)
        tissue_here = self._inside(self.tissue, u, v)[..., None]
        stain = PINK + weight[..., None] * (PURPLE - PINK)
        image = np.where(tissue_here, stain, GLASS)
        for box, colour in self.pen:
            image = np.where(self._inside((box,), u, v)[..., None], np.asarray(colour, np.float32), image)
        return (image + 0.5).astype(np.uint8)

    def _nucleus_distance2(self, u: np.ndarray, v: np.ndarray, column: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Squared distance (um^2) to the jittered nucleus of lattice cell (column, row)."""
        mixed = (column.astype(np.int64) * 73856093) ^ (row.astype(np.int64) * 19349663) ^ (self.seed * 83492791)
        jitter_x = (mixed % 1000) / 1000.0 * 6.0 + 3.0
        jitter_y = ((mixed // 1000) % 1000) / 1000.0 * 6.0 + 3.0
        return (u - column * NUCLEUS_SPACING_UM - jitter_x) ** 2 + (v - row * NUCLEUS_SPACING_UM - jitter_y) ** 2

    @staticmethod
    def _inside(boxes: Sequence[Box], u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Pixels whose centres fall inside any of the boxes."""
        inside = np.zeros((v.shape[0], u.shape[1]), bool)
        for x0, y0, x1, y1 in boxes:
            inside |= ((v >= y0) & (v < y1)) & ((u >= x0) & (u < x1))
        return inside
