"""Cut a slide into tissue tiles at a fixed physical resolution and write them to a tile store, with QC.

Grid (grid.py): square cells of tile_px pixels at target_mpp, i.e. level0_tile_px = tile_px * target_mpp /
source_mpp level-0 pixels, starting at the slide's top-left corner; only whole cells are used. Each cell's tissue
and background fractions come from a low-resolution mask (MASK_CELL_PX pixels per cell, tissue.py), so background
is never read at full resolution; its pen-ink fraction comes from that image averaged to a fixed physical
scale (tissue.PEN_MPP or coarser), so ink QC does not depend on tile_px. Each tissue cell is then read once,
from the coarsest level that still has target resolution, resized with an area (integer factor) or Lanczos
(other factor) filter, focus-checked on that tile brought to ~1 um/px, and, when sharp, encoded and streamed
into the store (tilepixels.py). Tiled JPEG/deflate TIFFs are read by direct decoding (tiffreader.py, which
explains the fast path), anything else through OpenSlide (iter_tiles_openslide).

Owns: tile_slide and its QC chain (resolution, masks, candidate cells, focus, slide-level QC limits), the QC row
(SlideQC) and the plan of one slide's tiling (TilingPlan). The store format is tilestore.py's, the QC table
format qc_table.py's, the QC thumbnail qc_thumbnail.py's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openslide
from PIL import Image

from workflow_scripts.slides import reading as slides
from workflow_scripts.slides import tissue
from workflow_scripts.slides.grid import Grid, plan_grid
from workflow_scripts.slides.qc_table import QC_COLUMNS
from workflow_scripts.slides.tiffreader import BAND_CELLS, decode_scale, fast_reader_for, iter_tiles_fast, level_regions
from workflow_scripts.slides.tilepixels import Mapper, TileResult, finish_tile
from workflow_scripts.slides.tilestore import StoreAttrs, TileStoreWriter
from workflow_scripts.slides.tilingconfig import TilingConfig

__all__ = [
    "Grid", "SlideQC", "SlideRejected", "TilingConfig", "TilingPlan", "plan_grid", "tile_slide", "unopened_slide"
]

MASK_CELL_PX = 32  # mask pixels per grid cell side: 8 um/px for 512 px tiles at 0.5 um/px
PEN_TILE_FRACTION = 0.05  # a cell with more ink than this is dropped
RESOLUTION_TOLERANCE = 1.1  # a source up to 10% coarser than target_mpp still counts as target resolution


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


@dataclass(frozen=True)
class TilingPlan:
    """What the masks decided for one slide: its grid, the cells to read (row-major) and every cell's tissue share."""

    grid: Grid
    candidates: list[tuple[int, int]]
    tissue_cells: np.ndarray  # (n_rows, n_cols) tissue fraction of each cell
    source_mpp: float


class SlideRejected(Exception):
    """A readable slide fails QC (the message is the reason); raised inside the store writer to discard its tiles."""


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
        with _store_writer(store_path, slide_path, config, qc):
            pass  # a zero-tile store, so a failed slide still produces every declared output
    reason = f" ({qc.reason})" if qc.reason else ""
    log.info("%s: %s%s, %d tiles in %.1f s", slide_id, qc.status, reason, qc.n_tiles, time.perf_counter() - started)
    return qc


def unopened_slide(
    store_path: str | os.PathLike,
    slide_id: str,
    patient_id: str,
    reason: str,
    config: TilingConfig,
    slide_path: str | os.PathLike = "",
) -> SlideQC:
    """The fail QC of a slide that is never opened (e.g. its download failed for good), with its zero-tile store."""
    qc = SlideQC(slide_id=slide_id, patient_id=patient_id, status="fail", reason=reason)
    with _store_writer(store_path, slide_path, config, qc):
        pass
    return qc


def _tile_into(
    slide_path: Path,
    store_path: str | os.PathLike,
    config: TilingConfig,
    threads: int,
    log: logging.Logger,
    qc: SlideQC,
) -> None:
    """The body of tile_slide; raises on unusable slides, sets qc.status/reason for QC failures."""
    with slides.open_slide(slide_path) as slide:
        plan = _plan_tiles(slide, config, log, qc)
        failure = _qc_failure(qc, None, config)
        if failure:
            qc.status, qc.reason = "fail", failure
            return
        try:
            _write_tiles(slide, slide_path, store_path, plan, config, threads, log, qc)
        except SlideRejected as rejection:
            qc.status, qc.reason = "fail", str(rejection)
            return
        qc.status, qc.reason, qc.n_tiles = "pass", "", len(qc.kept_cells)


def _plan_tiles(slide: openslide.OpenSlide, config: TilingConfig, log: logging.Logger, qc: SlideQC) -> TilingPlan:
    """Resolution, grid and candidate cells of an open slide, filling in the QC fields known before reading."""
    qc.width, qc.height = slide.dimensions
    resolution = slides.slide_resolution(slide, config.default_mpp, qc.slide_id)
    qc.mpp, qc.objective_power = resolution.mpp, resolution.objective_power
    log.info(
        "%s: %dx%d px, %.4f um/px (from %s), %d levels",
        qc.slide_id,
        qc.width,
        qc.height,
        qc.mpp,
        resolution.source,
        slide.level_count,
    )
    if resolution.mpp > config.target_mpp * RESOLUTION_TOLERANCE:
        raise slides.SlideError(
            f"{qc.slide_id}: resolution {resolution.mpp:.3f} um/px is coarser than the target {config.target_mpp} um/px"
        )
    grid = plan_grid(qc.width, qc.height, resolution.mpp, config.tile_px, config.target_mpp)
    qc.grid = grid
    tissue_cells, candidates = _select_cells(slide, grid, resolution.mpp, config, log, qc)
    return TilingPlan(grid, candidates, tissue_cells, resolution.mpp)


def _select_cells(
    slide: openslide.OpenSlide, grid: Grid, mpp: float, config: TilingConfig, log: logging.Logger, qc: SlideQC
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per-cell tissue fractions and the tissue cells without ink, from the low-resolution masks (set on qc)."""
    mask_downsample = grid.span / MASK_CELL_PX
    thumbnail = slides.read_low_res(slide, mask_downsample)
    coarse_pen, pen_factor = tissue.coarse_pen_mask(thumbnail, mask_downsample * mpp)
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
    chosen = foreground & ~inked & (tissue_cells >= 1.0 - config.max_background)
    candidates = [(int(col), int(row)) for row, col in zip(*np.nonzero(chosen))]
    log.info(
        "%s: grid %dx%d cells of %.1f level-0 px, %d foreground, %d inked, %d tissue candidates",
        qc.slide_id,
        grid.n_cols,
        grid.n_rows,
        grid.span,
        int(foreground.sum()),
        int(inked.sum()),
        len(candidates),
    )
    return tissue_cells, candidates


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
    plan: TilingPlan,
    config: TilingConfig,
    threads: int,
    log: logging.Logger,
    qc: SlideQC,
) -> None:
    """Read each candidate once: focus-check it, stream the sharp ones into the store; SlideRejected on QC failure."""
    grid, candidates = plan.grid, plan.candidates
    level = slides.level_for_downsample(slide.level_downsamples, grid.span / config.tile_px)
    downsample = slide.level_downsamples[level]
    scale = decode_scale(grid.span / downsample, config.tile_px) if config.scaled_decode else 1
    reader = fast_reader_for(slide, slide_path, level, scale) if config.fast_path else None
    progress = _progress_logger(log, qc.slide_id, len(candidates))
    method = (
        "OpenSlide"
        if reader is None
        else "direct TIFF decoding" + (f" at 1/{reader.scale} size" if reader.scale > 1 else "")
    )
    log.info(
        "%s: reading %d tiles from level %d (downsample %.2f) via %s, %d threads",
        qc.slide_id,
        len(candidates),
        level,
        downsample,
        method,
        threads,
    )
    kept: list[tuple[int, int]] = []
    try:
        with (
            ThreadPoolExecutor(max_workers=threads) as pool,
            _store_writer(store_path, slide_path, config, qc) as writer,
        ):
            mapper: Mapper = pool.map if threads > 1 else map
            if reader is not None:
                regions = level_regions(grid, candidates, downsample * reader.scale)
                results = iter_tiles_fast(reader, regions, config, mapper, BAND_CELLS, progress)
            else:
                results = iter_tiles_openslide(
                    slide, grid, candidates, level, config, mapper, max(8, 4 * threads), progress
                )
            for cell, (score, tile) in zip(candidates, results):
                if score >= config.blur_threshold:
                    writer.append(tile, grid.origin(*cell), cell, float(plan.tissue_cells[cell[1], cell[0]]))
                    kept.append(cell)
            qc.kept_cells = kept
            qc.blur_fraction = float((len(candidates) - len(kept)) / max(1, len(candidates)))
            failure = _qc_failure(qc, len(kept), config)
            if failure:
                raise SlideRejected(failure)
    finally:
        if reader is not None:
            reader.close()


def _progress_logger(log: logging.Logger, slide_id: str, total: int) -> Callable[[int], None]:
    """A callback that logs tiles read and the rate about every tenth of `total` (and at the end)."""
    step = max(1, total // 10)
    started = time.perf_counter()
    reported = [0]

    def progress(done: int) -> None:
        if done - reported[0] >= step or done == total:
            reported[0] = done
            rate = done / max(time.perf_counter() - started, 1e-9)
            log.info("%s: %d/%d tiles read (%.1f tiles/s)", slide_id, done, total, rate)

    return progress


def _store_writer(
    store_path: str | os.PathLike, slide_path: Path, config: TilingConfig, qc: SlideQC
) -> TileStoreWriter:
    """The writer of this slide's store, with whatever the QC knows so far of its grid and resolution."""
    grid = qc.grid
    attrs = StoreAttrs(
        tile_px=config.tile_px,
        mpp=config.target_mpp,
        level0_tile_px=grid.span if grid else None,
        source_mpp=qc.mpp,
        source_path=slide_path,
        grid_shape=(grid.n_cols, grid.n_rows) if grid else None,
    )
    return TileStoreWriter(
        store_path, qc.slide_id, attrs, config.encoding, config.jpeg_quality, qc.thumbnail, qc.mask_downsample
    )
