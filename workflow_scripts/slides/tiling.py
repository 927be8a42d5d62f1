"""Cut a slide into tissue tiles at a fixed physical resolution and write them to a tile store, with QC.

Grid: square cells of tile_px pixels at target_mpp, i.e. level0_tile_px = tile_px * target_mpp / source_mpp
level-0 pixels, starting at the slide's top-left corner; only whole cells are used. Each cell's tissue and
background fractions come from a low-resolution mask (MASK_CELL_PX pixels per cell, tissue.py), so background
is never read at full resolution; its pen-ink fraction comes from that image averaged to a fixed physical
scale (tissue.PEN_MPP or coarser), so ink QC does not depend on tile_px. Each tissue cell is then read once,
from the coarsest level that still has target resolution, resized with an area (integer factor) or Lanczos
(other factor) filter, focus-checked on that tile brought to ~1 um/px, and, when sharp, encoded and streamed
into the store.

Fast path: for JPEG/deflate tiled TIFFs (Aperio SVS, generic tiled TIFF) the compressed source tiles are read
with os.pread and decoded (libjpeg-turbo, GIL released) into a reused band buffer, each source tile once, in
row-ordered bands of up to BAND_CELLS cells, on a thread pool; cells are cut from the band without copying.
When a cell is exactly 2, 4 or 8 times tile_px at the level read (a 40x slide tiled at 20x) and the tiles are
plain JPEG, libjpeg decodes them straight at 1/2, 1/4 or 1/8 size (scaled IDCT: the top-left 4x4, 2x2 or 1x1
DCT coefficients of each 8x8 block, i.e. a low-pass before decimation), which is cheaper than a full decode
plus a box reduce and leaves a quarter (or less) of the pixels to paste. Any other format goes through OpenSlide.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import simplejpeg
import tifffile
from PIL import Image, ImageDraw

from workflow_scripts.slides import reading as slides, tissue
from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.slides.qc_table import QC_COLUMNS
from workflow_scripts.slides.tilestore import TileStoreWriter, encode_tile, write_tile_store

FAST_PATH_VENDORS = ("aperio", "generic-tiff")
MASK_CELL_PX = 32  # mask pixels per grid cell side: 8 um/px for 512 px tiles at 0.5 um/px
BLUR_MPP = 1.0  # resolution of the focus check
PEN_TILE_FRACTION = 0.05  # a cell with more ink than this is dropped
RESOLUTION_TOLERANCE = 1.1  # a source up to 10% coarser than target_mpp still counts as target resolution
MASK_STRIP_PX = 2048
BAND_CELLS = 8  # cells per decoded band: 8 x 1024 x 1024 RGBX = 32 MiB at 40x
DECODE_BATCH = 8  # source tiles per thread-pool task


@dataclass(frozen=True)
class TilingConfig:
    """The `tiling` block of the workflow config; pen/blur_max_fraction are slide-level QC limits."""

    tile_px: int = 512
    target_mpp: float = 0.5
    max_background: float = 0.5
    encoding: str = "jpeg"
    jpeg_quality: int = 90
    default_mpp: float | None = None
    pen_max_fraction: float = 0.3
    blur_max_fraction: float = 0.5
    blur_threshold: float = 100.0
    min_tiles: int = 1
    fast_path: bool = True
    scaled_decode: bool = True

    def __post_init__(self) -> None:
        """Reject a bad config before any slide is touched, so it is not mistaken for bad slides."""
        if self.encoding not in ("jpeg", "raw"):
            raise ValueError(f"tiling.encoding must be 'jpeg' or 'raw', got {self.encoding!r}")
        if self.tile_px < 8 or self.target_mpp <= 0:
            raise ValueError(f"tiling.tile_px must be >= 8 and target_mpp > 0, got {self.tile_px}, {self.target_mpp}")
        if not 0.0 <= self.max_background < 1.0:
            raise ValueError(f"tiling.max_background must be in [0, 1), got {self.max_background}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"tiling.jpeg_quality must be in 1..100, got {self.jpeg_quality}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TilingConfig:
        """Build from the config dict, ignoring keys meant for other steps (e.g. `exclude`) and nulls."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in dict(params).items() if key in known and value is not None}
        if params.get("default_mpp") is None:
            values["default_mpp"] = None
        return cls(**values)


@dataclass(frozen=True)
class Grid:
    """Tile grid in level-0 pixels: cell (col,row) starts at round(col*span), round(row*span), size round(span)."""

    span: float
    n_cols: int
    n_rows: int

    @property
    def size(self) -> int:
        """Level-0 pixels read per tile."""
        return int(round(self.span))

    def origin(self, col: int, row: int) -> tuple[int, int]:
        """Level-0 top-left corner of a cell."""
        return int(round(col * self.span)), int(round(row * self.span))


@dataclass
class SlideQC:
    """One QC row (QC_COLUMNS) plus the masks and kept cells used to draw the QC thumbnail."""

    slide_id: str
    patient_id: str
    status: str = "fail"
    reason: str = ""
    mpp: float | None = None
    objective_power: float | None = None
    width: int | None = None
    height: int | None = None
    tissue_fraction: float | None = None
    pen_fraction: float | None = None
    blur_fraction: float | None = None
    n_tiles: int = 0
    thumbnail: np.ndarray | None = field(default=None, repr=False)
    tissue: np.ndarray | None = field(default=None, repr=False)
    pen: np.ndarray | None = field(default=None, repr=False)
    kept_cells: list[tuple[int, int]] = field(default_factory=list, repr=False)
    grid: Grid | None = None
    mask_downsample: float = 1.0

    def row(self) -> dict[str, Any]:
        """The QC table row."""
        values = asdict(self)
        return {column: values[column] for column in QC_COLUMNS}


def plan_grid(width: int, height: int, source_mpp: float, tile_px: int, target_mpp: float) -> Grid:
    """Whole cells of tile_px * target_mpp microns covering the slide from its top-left corner."""
    span = tile_px * target_mpp / source_mpp
    return Grid(span, int(width // span), int(height // span))


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


def finish_tile(region: Image.Image, config: TilingConfig, pixels: np.ndarray | None = None) -> tuple[float, np.ndarray | bytes]:
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


def read_low_res(slide: openslide.OpenSlide, downsample: float) -> np.ndarray:
    """Whole slide at `downsample` level-0 px per pixel, read in strips from the best pyramid level."""
    level = slides.level_for_downsample(slide.level_downsamples, downsample)
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
        strip = slides.read_rgb(slide, level, 0, int(round(y0 * level_downsample)), level_w, y1 - y0)
        image[top:bottom] = np.asarray(Image.fromarray(strip).resize((out_w, bottom - top), Image.Resampling.BOX))
    return image


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
        if scale != 1 and not (scale in (2, 4, 8) and self._plain_jpeg and self.page.tilewidth % scale == 0 == self.page.tilelength % scale):
            self.close()
            raise ValueError(f"{self.path.name}: tiles of the {level_size[0]}x{level_size[1]} level cannot be decoded at 1/{scale} size")
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
                pixels = simplejpeg.decode_jpeg(data, colorspace="RGBX", buffer=out, min_height=self.tile_h, min_width=self.tile_w)
                if pixels.shape[:2] == (self.tile_h, self.tile_w):
                    return out
                pixels = pixels.copy()
            else:
                pixels, _, _ = self._decode(data, index, jpegtables=self._jpegtables)
                pixels = pixels.reshape(pixels.shape[-3:])
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{self.path.name}: cannot decode tile {key} of the {self.width}x{self.height} level: {error}") from error
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
            band[top - band_y : bottom - band_y, left - band_x : right - band_x] = tile[top - tile_y : bottom - tile_y, left - tile_x : right - tile_x]


def decode_scale(cell_px: float, tile_px: int) -> int:
    """2, 4 or 8 when a cell at the level read is exactly that many times tile_px (so cells fall on whole scaled pixels), else 1."""
    for scale in (2, 4, 8):
        if cell_px == scale * tile_px:
            return scale
    return 1


def fast_reader_for(slide: openslide.OpenSlide, path: Path, level: int, scale: int = 1) -> TiffLevelReader | None:
    """A direct TIFF reader for this level when the format allows it (at 1/scale size if it can), else None (use OpenSlide)."""
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
        regions.append(Region(int(round(x / downsample)), int(round(y / downsample)), int(round(grid.span / downsample))))
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


Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], Iterator[Any]]
TileResult = tuple[float, "np.ndarray | bytes"]


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
    needs = [sorted(set().union(*(reader.tiles_for(regions[i].x, regions[i].y, regions[i].size, regions[i].size) for i in band)), key=lambda key: (key[1], key[0])) for band in bands]
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
            return finish_tile(image, config, band[region.y - band_y : region.y - band_y + region.size, region.x - band_x : region.x - band_x + region.size])

        yield from mapper(build, members)
        done += len(members)
        progress(done)
        for key in [key for key in kept if last_use[key] <= number]:
            del kept[key]


def iter_tiles_openslide(
    slide: openslide.OpenSlide,
    grid: Grid,
    cells: Sequence[tuple[int, int]],
    level: int,
    config: TilingConfig,
    mapper: Mapper,
    chunk: int,
    progress: Callable[[int], None],
) -> Iterator[TileResult]:
    """Focus score and tile of each cell read with OpenSlide from `level` (OpenSlide handles are thread-safe)."""
    downsample = slide.level_downsamples[level]

    def build(cell: tuple[int, int]) -> TileResult:
        x, y = grid.origin(*cell)
        size = int(round(grid.span / downsample))
        return finish_tile(Image.fromarray(slides.read_rgb(slide, level, x, y, size, size)), config)

    for start in range(0, len(cells), chunk):
        stop = min(len(cells), start + chunk)
        yield from mapper(build, cells[start:stop])
        progress(stop)


class SlideRejected(Exception):
    """A readable slide fails QC (the message is the reason); raised inside the store writer to discard its tiles."""


def tile_slide(
    slide_path: str | os.PathLike,
    store_path: str | os.PathLike,
    slide_id: str,
    patient_id: str,
    config: TilingConfig,
    threads: int = 1,
    log: logging.Logger | None = None,
) -> SlideQC:
    """Tile one slide into store_path and return its QC; any failure gives a fail row and a zero-tile store."""
    log = log or logging.getLogger(__name__)
    qc = SlideQC(slide_id=slide_id, patient_id=patient_id)
    slide_path = Path(slide_path)
    started = time.perf_counter()
    try:
        _tile_into(slide_path, store_path, config, max(1, int(threads)), log, qc)
    except (slides.SlideError, openslide.OpenSlideError, OSError, ValueError, RuntimeError, LookupError) as error:
        log.error("%s: tiling failed: %s", slide_id, error, exc_info=not isinstance(error, slides.SlideError))
        qc.status, qc.reason, qc.n_tiles, qc.kept_cells = "fail", f"{type(error).__name__}: {error}", 0, []
        if isinstance(error, slides.SlideError):
            qc.reason = str(error)
    if qc.status == "fail":
        _write_empty_store(store_path, slide_id, slide_path, config, qc)
    log.info("%s: %s%s, %d tiles in %.1f s", slide_id, qc.status, f" ({qc.reason})" if qc.reason else "", qc.n_tiles, time.perf_counter() - started)
    return qc


def _tile_into(slide_path: Path, store_path: str | os.PathLike, config: TilingConfig, threads: int, log: logging.Logger, qc: SlideQC) -> None:
    """The body of tile_slide; raises on unusable slides, sets qc.status/reason for QC failures."""
    with slides.open_slide(slide_path) as slide:
        qc.width, qc.height = slide.dimensions
        resolution = slides.slide_resolution(slide, config.default_mpp, qc.slide_id)
        qc.mpp, qc.objective_power = resolution.mpp, resolution.objective_power
        log.info("%s: %dx%d px, %.4f um/px (from %s), %d levels", qc.slide_id, qc.width, qc.height, qc.mpp, resolution.source, slide.level_count)
        if resolution.mpp > config.target_mpp * RESOLUTION_TOLERANCE:
            raise slides.SlideError(f"{qc.slide_id}: resolution {resolution.mpp:.3f} um/px is coarser than the target {config.target_mpp} um/px")
        grid = plan_grid(qc.width, qc.height, resolution.mpp, config.tile_px, config.target_mpp)
        qc.grid = grid
        mask_downsample = grid.span / MASK_CELL_PX
        thumbnail = read_low_res(slide, mask_downsample)
        coarse_pen, pen_factor = tissue.coarse_pen_mask(thumbnail, mask_downsample * resolution.mpp)
        pen = tissue.expand_mask(coarse_pen, pen_factor, thumbnail.shape[:2])
        tissue_pixels = tissue.tissue_mask(thumbnail, pen=pen)
        qc.thumbnail, qc.tissue, qc.pen, qc.mask_downsample = thumbnail, tissue_pixels, pen, mask_downsample
        qc.tissue_fraction = float(tissue_pixels.mean())
        cell_px = grid.span / mask_downsample
        tissue_cells = tissue.cell_fractions(tissue_pixels, cell_px, grid.n_cols, grid.n_rows)
        pen_cells = tissue.cell_fractions(coarse_pen, cell_px / pen_factor, grid.n_cols, grid.n_rows)
        foreground = tissue_cells + pen_cells >= 1.0 - config.max_background
        inked = foreground & (pen_cells > PEN_TILE_FRACTION)
        qc.pen_fraction = float(inked.sum() / max(1, foreground.sum()))
        candidates = [(int(col), int(row)) for row, col in zip(*np.nonzero(foreground & ~inked & (tissue_cells >= 1.0 - config.max_background)))]
        log.info("%s: grid %dx%d cells of %.1f level-0 px, %d foreground, %d inked, %d tissue candidates", qc.slide_id, grid.n_cols, grid.n_rows, grid.span, int(foreground.sum()), int(inked.sum()), len(candidates))
        failure = _qc_failure(qc, None, config)
        if failure:
            qc.status, qc.reason = "fail", failure
            return
        try:
            _write_tiles(slide, slide_path, store_path, grid, candidates, tissue_cells, resolution.mpp, config, threads, log, qc)
        except SlideRejected as rejection:
            qc.status, qc.reason = "fail", str(rejection)
            return
        qc.status, qc.reason, qc.n_tiles = "pass", "", len(qc.kept_cells)


def _qc_failure(qc: SlideQC, n_kept: int | None, config: TilingConfig) -> str:
    """The QC fail reason for a readable slide, or '' when it passes; before reading, blur and n_kept are None."""
    if qc.pen_fraction is not None and qc.pen_fraction > config.pen_max_fraction:
        return f"pen ink on {qc.pen_fraction:.0%} of tissue tiles (max {config.pen_max_fraction:.0%})"
    if qc.blur_fraction is not None and qc.blur_fraction > config.blur_max_fraction:
        return f"out of focus: {qc.blur_fraction:.0%} of tissue tiles blurred (max {config.blur_max_fraction:.0%})"
    if n_kept is not None and n_kept < config.min_tiles:
        return f"{n_kept} tissue tiles, fewer than min_tiles={config.min_tiles}"
    return ""


def _write_tiles(
    slide: openslide.OpenSlide,
    slide_path: Path,
    store_path: str | os.PathLike,
    grid: Grid,
    candidates: list[tuple[int, int]],
    tissue_cells: np.ndarray,
    source_mpp: float,
    config: TilingConfig,
    threads: int,
    log: logging.Logger,
    qc: SlideQC,
) -> None:
    """Read each candidate once: focus-check it and stream the sharp ones into the store; SlideRejected on QC failure."""
    level = slides.level_for_downsample(slide.level_downsamples, grid.span / config.tile_px)
    downsample = slide.level_downsamples[level]
    scale = decode_scale(grid.span / downsample, config.tile_px) if config.scaled_decode else 1
    reader = fast_reader_for(slide, slide_path, level, scale) if config.fast_path else None
    step = max(1, len(candidates) // 10)
    started = time.perf_counter()
    reported = [0]

    def progress(done: int) -> None:
        if done - reported[0] >= step or done == len(candidates):
            reported[0] = done
            elapsed = time.perf_counter() - started
            log.info("%s: %d/%d tiles read (%.1f tiles/s)", qc.slide_id, done, len(candidates), done / max(elapsed, 1e-9))

    method = "OpenSlide" if reader is None else "direct TIFF decoding" + (f" at 1/{reader.scale} size" if reader.scale > 1 else "")
    log.info("%s: reading %d tiles from level %d (downsample %.2f) via %s, %d threads", qc.slide_id, len(candidates), level, downsample, method, threads)
    kept: list[tuple[int, int]] = []
    writer = TileStoreWriter(store_path, qc.slide_id, _store_attrs(grid, source_mpp, slide_path, config), config.encoding, config.jpeg_quality, qc.thumbnail, qc.mask_downsample)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool, writer:
            mapper: Mapper = pool.map if threads > 1 else map
            if reader is not None:
                results = iter_tiles_fast(reader, level_regions(grid, candidates, downsample * reader.scale), config, mapper, BAND_CELLS, progress)
            else:
                results = iter_tiles_openslide(slide, grid, candidates, level, config, mapper, max(8, 4 * threads), progress)
            for cell, (score, tile) in zip(candidates, results):
                if score >= config.blur_threshold:
                    writer.append(tile, grid.origin(*cell), cell, float(tissue_cells[cell[1], cell[0]]))
                    kept.append(cell)
            qc.kept_cells = kept
            qc.blur_fraction = float((len(candidates) - len(kept)) / max(1, len(candidates)))
            failure = _qc_failure(qc, len(kept), config)
            if failure:
                raise SlideRejected(failure)
    finally:
        if reader is not None:
            reader.close()


def _store_attrs(grid: Grid | None, source_mpp: float | None, slide_path: Path, config: TilingConfig) -> dict[str, Any]:
    """File attributes of a tile store (SPEC item 2)."""
    return {
        "tile_px": config.tile_px,
        "mpp": config.target_mpp,
        "level0_tile_px": float(grid.span) if grid else 0.0,
        "source_mpp": float(source_mpp) if source_mpp else 0.0,
        "source_path": str(slide_path),
        "grid_shape": (grid.n_cols, grid.n_rows) if grid else (0, 0),
    }


def _write_empty_store(store_path: str | os.PathLike, slide_id: str, slide_path: Path, config: TilingConfig, qc: SlideQC) -> None:
    """A zero-tile store, so a failed slide still produces every declared output."""
    write_tile_store(
        store_path,
        slide_id,
        np.zeros((0, 2), np.int64),
        np.zeros((0, 2), np.int32),
        np.zeros(0, np.float32),
        [],
        _store_attrs(qc.grid, qc.mpp, slide_path, config),
        config.encoding,
        config.jpeg_quality,
        qc.thumbnail,
        qc.mask_downsample,
    )


def qc_image(qc: SlideQC, max_px: int = 1024) -> Image.Image:
    """QC thumbnail: tissue tinted green, pen ink red, kept tiles outlined blue, status and reason written on top."""
    if qc.thumbnail is None:
        image = Image.new("RGB", (640, 160), "white")
    else:
        pixels = qc.thumbnail.astype(np.float32)
        if qc.tissue is not None:
            pixels[qc.tissue] = 0.6 * pixels[qc.tissue] + 0.4 * np.array([0, 200, 0], np.float32)
        if qc.pen is not None:
            pixels[qc.pen] = np.array([255, 0, 0], np.float32)
        image = Image.fromarray(pixels.astype(np.uint8))
        if qc.grid is not None:
            draw = ImageDraw.Draw(image)
            cell = qc.grid.span / qc.mask_downsample
            for col, row in qc.kept_cells:
                draw.rectangle([col * cell, row * cell, (col + 1) * cell - 1, (row + 1) * cell - 1], outline=(0, 0, 255))
        scale = max_px / max(image.size)
        if scale < 1:
            image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.Resampling.BOX)
        if image.width < 320:
            factor = math.ceil(320 / image.width)
            image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    text = f"{qc.slide_id}: {qc.status}, {qc.n_tiles} tiles"
    if qc.reason:
        text += f"\n{qc.reason}"
    draw.multiline_text((4, 4), text, fill=(0, 0, 0))
    return image
