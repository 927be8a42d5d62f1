"""The fast path of the tiler: tiles of a tiled TIFF page decoded straight into reused band buffers.

For JPEG/deflate tiled TIFFs (Aperio SVS, generic tiled TIFF) the compressed source tiles are read with
os.pread and decoded (libjpeg-turbo, GIL released) into a reused band buffer, each source tile once, in
row-ordered bands of up to BAND_CELLS cells, on a thread pool; cells are cut from the band without copying.
When a cell is exactly 2, 4 or 8 times tile_px at the level read (a 40x slide tiled at 20x) and the tiles are
plain JPEG, libjpeg decodes them straight at 1/2, 1/4 or 1/8 size (scaled IDCT: the top-left 4x4, 2x2 or 1x1
DCT coefficients of each 8x8 block, i.e. a low-pass before decimation), which is cheaper than a full decode
plus a box reduce and leaves a quarter (or less) of the pixels to paste. Any other format goes through OpenSlide
(tiling.iter_tiles_openslide); fast_reader_for says which.

Owns: TiffLevelReader, decode_scale, fast_reader_for, the cell regions at a level (Region, level_regions), the
band planning (plan_bands) and the band iteration (iter_tiles_fast).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
import simplejpeg
import tifffile
from PIL import Image

from workflow_scripts.slides.grid import Grid
from workflow_scripts.slides.tilepixels import Mapper, TileResult, finish_tile
from workflow_scripts.slides.tilingconfig import TilingConfig

FAST_PATH_VENDORS = ("aperio", "generic-tiff")
BAND_CELLS = 8  # cells per decoded band: 8 x 1024 x 1024 RGBX = 32 MiB at 40x
DECODE_BATCH = 8  # source tiles per thread-pool task


class TiffLevelReader:
    """Decodes the compressed tiles of one tiled TIFF page straight into reusable RGBX buffers, at 1/scale size.

    JPEG tiles whose colour space libjpeg reads as the TIFF declares it go through simplejpeg (libjpeg-turbo,
    GIL released, output into a given buffer, so no page faults for fresh arrays); other codecs through tifffile.
    With scale 2, 4 or 8 (plain JPEG only) libjpeg's scaled IDCT decodes each tile at that fraction of its size;
    width, height, tile_w, tile_h and every coordinate of this class are then in those scaled pixels.
    """

    def __init__(self, path: str | os.PathLike, level_size: tuple[int, int], scale: int = 1) -> None:
        self.path = Path(path)
        self._tiff = tifffile.TiffFile(self.path)
        try:
            self.page = self._find_page(level_size)
        except BaseException:
            self._tiff.close()
            raise
        self._offsets = self.page.dataoffsets
        self._counts = self.page.databytecounts
        self._decode = self.page.decode
        self._jpegtables = self.page.jpegtables
        self.tiles_across = math.ceil(level_size[0] / self.page.tilewidth)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._scratch = threading.local()
        self._plain_jpeg = self._jpeg_colours_self_described()
        self.scale = scale
        if scale != 1 and not (
            scale in (2, 4, 8) and self._plain_jpeg and self.page.tilewidth % scale == 0 == self.page.tilelength % scale
        ):
            self.close()
            raise ValueError(
                f"{self.path.name}: tiles of the {level_size[0]}x{level_size[1]} level"
                f" cannot be decoded at 1/{scale} size"
            )
        self.width, self.height = level_size[0] // scale, level_size[1] // scale
        self.tile_h, self.tile_w = self.page.tilelength // scale, self.page.tilewidth // scale

    def _find_page(self, level_size: tuple[int, int]) -> tifffile.TiffPage:
        """The tiled RGB 8-bit page with this level's size, in a codec imagecodecs decodes."""
        for page in self._tiff.pages:
            if (page.imagewidth, page.imagelength) != tuple(level_size) or not page.is_tiled:
                continue
            if page.samplesperpixel != 3 or page.bitspersample != 8 or page.planarconfig != 1 or page.imagedepth != 1:
                continue
            if page.photometric == 6 and page.compression != 7:
                continue
            if page.photometric in (2, 6) and page.compression in (1, 5, 7, 8, 32946, 50000):
                return page
        raise LookupError(f"{self.path.name}: no directly decodable tiled page of size {level_size}")

    def _jpeg_colours_self_described(self) -> bool:
        """True when libjpeg alone reads the tiles' colour space as the TIFF declares it (Aperio RGB-JPEG is not)."""
        if self.page.compression != 7:
            return False
        filled = np.flatnonzero(np.asarray(self._counts))
        if not len(filled):
            return False
        try:
            colorspace = simplejpeg.decode_jpeg_header(self._read(int(filled[0])))[2]
        except ValueError:
            return False
        return (colorspace, self.page.photometric) in (("YCbCr", 6), ("RGB", 2))

    def close(self) -> None:
        """Release the file handles."""
        os.close(self._fd)
        self._tiff.close()

    def __enter__(self) -> TiffLevelReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def tiles_for(self, x: int, y: int, width: int, height: int) -> set[tuple[int, int]]:
        """Source tile (column, row) indices under a region of this level."""
        cols = range(max(0, x) // self.tile_w, (min(self.width, x + width) - 1) // self.tile_w + 1)
        rows = range(max(0, y) // self.tile_h, (min(self.height, y + height) - 1) // self.tile_h + 1)
        return {(col, row) for row in rows for col in cols}

    def _read(self, index: int) -> bytes:
        """The complete JPEG/compressed stream of one tile (shared JPEG tables spliced in)."""
        count = int(self._counts[index])
        data = os.pread(self._fd, count, int(self._offsets[index]))
        if len(data) != count:
            raise OSError(f"{self.path.name}: truncated file, tile {index} has {len(data)} of {count} bytes")
        if self._jpegtables is not None and self.page.compression == 7:
            return bytes(self._jpegtables[:-2]) + data[2:]
        return data

    def new_tile(self) -> np.ndarray:
        """An RGBX buffer of one source tile."""
        return np.empty((self.tile_h, self.tile_w, 4), np.uint8)

    def scratch(self) -> np.ndarray:
        """This thread's reusable RGBX tile buffer."""
        buffer = getattr(self._scratch, "tile", None)
        if buffer is None:
            buffer = self._scratch.tile = self.new_tile()
        return buffer

    def decode_into(self, key: tuple[int, int], out: np.ndarray) -> np.ndarray:
        """Decode one source tile into `out` (tile_h, tile_w, 4); an empty tile (scanner skipped it) is white."""
        index = key[1] * self.tiles_across + key[0]
        if int(self._counts[index]) == 0:
            out[...] = 255
            return out
        data = self._read(index)
        try:
            if self._plain_jpeg:
                pixels = simplejpeg.decode_jpeg(
                    data, colorspace="RGBX", buffer=out, min_height=self.tile_h, min_width=self.tile_w
                )
                if pixels.shape[:2] == (self.tile_h, self.tile_w):
                    return out
                pixels = pixels.copy()
            else:
                pixels, _, _ = self._decode(data, index, jpegtables=self._jpegtables)
                pixels = pixels.reshape(pixels.shape[-3:])
        except (ValueError, RuntimeError) as error:
            raise ValueError(
                f"{self.path.name}: cannot decode tile {key} of the {self.width}x{self.height} level: {error}"
            ) from error
        out[...] = 255
        height, width = min(self.tile_h, pixels.shape[0]), min(self.tile_w, pixels.shape[1])
        out[:height, :width, :3] = pixels[:height, :width, :3]
        return out

    def decode(self, key: tuple[int, int]) -> np.ndarray:
        """One source tile as a new RGB array."""
        return np.ascontiguousarray(self.decode_into(key, self.new_tile())[..., :3])

    def paste(self, band: np.ndarray, band_x: int, band_y: int, key: tuple[int, int], tile: np.ndarray) -> None:
        """Copy the part of a decoded tile that lies inside the image and inside `band` (origin band_x, band_y)."""
        tile_x, tile_y = key[0] * self.tile_w, key[1] * self.tile_h
        left, top = max(band_x, tile_x), max(band_y, tile_y)
        right = min(band_x + band.shape[1], tile_x + self.tile_w, self.width)
        bottom = min(band_y + band.shape[0], tile_y + self.tile_h, self.height)
        if right > left and bottom > top:
            band[top - band_y : bottom - band_y, left - band_x : right - band_x] = tile[
                top - tile_y : bottom - tile_y, left - tile_x : right - tile_x
            ]


def decode_scale(cell_px: float, tile_px: int) -> int:
    """2, 4 or 8 when a cell at the level read is that many times tile_px (cells on whole scaled pixels), else 1."""
    for scale in (2, 4, 8):
        if cell_px == scale * tile_px:
            return scale
    return 1


def fast_reader_for(slide: openslide.OpenSlide, path: Path, level: int, scale: int = 1) -> TiffLevelReader | None:
    """A direct TIFF reader for this level (at 1/scale size if it can) when the format allows, else None: OpenSlide."""
    if slide.properties.get(openslide.PROPERTY_NAME_VENDOR) not in FAST_PATH_VENDORS:
        return None
    for attempt in dict.fromkeys((scale, 1)):
        try:
            return TiffLevelReader(path, slide.level_dimensions[level], attempt)
        except (LookupError, tifffile.TiffFileError, ValueError):
            continue
    return None


@dataclass(frozen=True)
class Region:
    """A cell's square in level pixels (x, y of the top-left corner, side)."""

    x: int
    y: int
    size: int


def level_regions(grid: Grid, cells: Sequence[tuple[int, int]], downsample: float) -> list[Region]:
    """Each cell's square at a pyramid level with this downsample."""
    regions = []
    for cell in cells:
        x, y = grid.origin(*cell)
        size = int(round(grid.span / downsample))
        regions.append(Region(int(round(x / downsample)), int(round(y / downsample)), size))
    return regions


def plan_bands(regions: Sequence[Region], max_width: int) -> list[list[int]]:
    """Group row-major regions into runs on one grid row whose bounding band is at most max_width wide."""
    bands: list[list[int]] = []
    for index, region in enumerate(regions):
        if bands:
            first = regions[bands[-1][0]]
            if region.y == first.y and region.x + region.size - first.x <= max_width:
                bands[-1].append(index)
                continue
        bands.append([index])
    return bands


def iter_tiles_fast(
    reader: TiffLevelReader,
    regions: Sequence[Region],
    config: TilingConfig,
    mapper: Mapper,
    band_cells: int,
    progress: Callable[[int], None],
) -> Iterator[TileResult]:
    """Focus score and tile of each region, decoding every source tile once into a reused band buffer.

    A source tile shared with a later band (grid not aligned to the TIFF tiles) is decoded into its own array
    and kept until that band is done; the others are decoded into a per-thread scratch buffer and pasted.
    """
    bands = plan_bands(regions, band_cells * max(region.size for region in regions)) if regions else []
    needs = [_source_tiles(reader, [regions[i] for i in band]) for band in bands]
    last_use = {key: number for number, keys in enumerate(needs) for key in keys}
    kept: dict[tuple[int, int], np.ndarray] = {}
    memory = np.empty(0, np.uint8)
    done = 0
    for number, (band_indices, keys) in enumerate(zip(bands, needs)):
        members = [regions[i] for i in band_indices]
        band_x, band_y = min(r.x for r in members), min(r.y for r in members)
        width = max(r.x + r.size for r in members) - band_x
        height = max(r.y + r.size for r in members) - band_y
        if memory.size < (height + 1) * width * 4:
            memory = np.empty((height + 1) * width * 4, np.uint8)
        band = memory[: height * width * 4].reshape(height, width, 4)
        if band_x + width > reader.width or band_y + height > reader.height:
            band[...] = 255

        def place(batch: Sequence[tuple[int, int]]) -> None:
            for key in batch:
                tile = kept.get(key)
                if tile is None:
                    shared = last_use[key] > number
                    tile = reader.decode_into(key, reader.new_tile() if shared else reader.scratch())
                    if shared:
                        kept[key] = tile
                reader.paste(band, band_x, band_y, key, tile)

        for _ in mapper(place, [keys[start : start + DECODE_BATCH] for start in range(0, len(keys), DECODE_BATCH)]):
            pass
        stride, view = width * 4, memoryview(memory)

        def build(region: Region) -> TileResult:
            offset = ((region.y - band_y) * width + (region.x - band_x)) * 4
            image = Image.frombuffer("RGBX", (region.size, region.size), view[offset:], "raw", "RGBX", stride, 1)
            top, left = region.y - band_y, region.x - band_x
            return finish_tile(image, config, band[top : top + region.size, left : left + region.size])

        yield from mapper(build, members)
        done += len(members)
        progress(done)
        for key in [key for key in kept if last_use[key] <= number]:
            del kept[key]


def _source_tiles(reader: TiffLevelReader, members: Sequence[Region]) -> list[tuple[int, int]]:
    """The source tiles under a band's regions, row-major (the order they are decoded in)."""
    keys = set().union(*(reader.tiles_for(region.x, region.y, region.size, region.size) for region in members))
    return sorted(keys, key=lambda key: (key[1], key[0]))
