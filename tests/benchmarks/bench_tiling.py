"""Benchmark: our tiler vs the paper's naive tiling, and vs the JPEG-decode bound, on a synthetic 40x slide.

Run: python tests/benchmarks/bench_tiling.py [--cache DIR] [--sample N] [--threads T]
The slide (40,960 x 30,720 px at 0.25 um/px, ~54% tissue) is written once into the cache folder. Each method
runs in its own subprocess, which reports its wall time, CPU time (getrusage) and peak RSS (/proc VmHWM).
The naive method (one level-0 read_region of 1024 px per grid cell, Lanczos to 512, per-pixel brightness test
for background) is timed on a seeded random sample of grid cells and extrapolated to the whole grid; the
kept-set agreement is measured on that sample.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SLIDE_PX = (40960, 30720)
MPP = 0.25
TISSUE_UM = ((800.0, 600.0, 5600.0, 6900.0), (6400.0, 1200.0, 9500.0, 5200.0))
TILE_PX = 512
TARGET_MPP = 0.5
MAX_BACKGROUND = 0.5
NAIVE_BRIGHT = 220  # the paper's code: a pixel is background when its mean RGB exceeds this


def periodic_region(texture: np.ndarray):
    """A region reader tiling a pre-rendered tissue texture inside TISSUE_UM and glass outside (fast to write)."""
    period = texture.shape[0]
    glass = np.array([243, 241, 245], np.uint8)

    def read(x: int, y: int, w: int, h: int) -> np.ndarray:
        rows = np.arange(y, y + h)
        cols = np.arange(x, x + w)
        out = np.empty((h, w, 3), np.uint8)
        out[:] = glass
        for x0, y0, x1, y1 in TISSUE_UM:
            row_in = ((rows + 0.5) * MPP >= y0) & ((rows + 0.5) * MPP < y1)
            col_in = ((cols + 0.5) * MPP >= x0) & ((cols + 0.5) * MPP < x1)
            if row_in.any() and col_in.any():
                r, c = np.nonzero(row_in)[0], np.nonzero(col_in)[0]
                block = texture[(rows[r] % period)[:, None], (cols[c] % period)[None, :]]
                out[r[0] : r[-1] + 1, c[0] : c[-1] + 1] = block
        return out

    return read


def ensure_slide(cache: Path) -> Path:
    """Write the benchmark slide once."""
    from workflow_scripts.slidewriter import SyntheticHE, write_aperio_slide

    path = cache / f"bench_{SLIDE_PX[0]}x{SLIDE_PX[1]}.svs"
    if not path.exists():
        texture = SyntheticHE(MPP, ((0.0, 0.0, 1e9, 1e9),), seed=7)(0, 0, 1536, 1536)
        started = time.perf_counter()
        write_aperio_slide(path, SLIDE_PX, periodic_region(texture), mpp=MPP, app_mag=40, downsamples=(1, 4, 16))
        print(f"wrote {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


def grid_cells() -> list[tuple[int, int]]:
    """All grid cells of the benchmark slide."""
    span = TILE_PX * TARGET_MPP / MPP
    return [(col, row) for row in range(int(SLIDE_PX[1] // span)) for col in range(int(SLIDE_PX[0] // span))]


def child_naive(slide_path: Path, sample: int) -> dict:
    """The paper's method on a random sample of grid cells."""
    import openslide
    from PIL import Image

    span = int(TILE_PX * TARGET_MPP / MPP)
    cells = grid_cells()
    chosen = sorted(random.Random(0).sample(cells, min(sample, len(cells))), key=lambda c: (c[1], c[0]))
    kept = []
    started = time.perf_counter()
    with openslide.OpenSlide(slide_path) as slide:
        for col, row in chosen:
            tile = slide.read_region((col * span, row * span), 0, (span, span)).convert("RGB")
            tile = tile.resize((TILE_PX, TILE_PX), Image.Resampling.LANCZOS)
            pixels = np.asarray(tile)
            background = (pixels.mean(axis=2) > NAIVE_BRIGHT).mean()
            if background < MAX_BACKGROUND:
                kept.append((col, row))
    return {"wall": time.perf_counter() - started, "cells": [list(c) for c in chosen], "kept": [list(c) for c in kept]}


def child_ours(slide_path: Path, threads: int) -> dict:
    """Our tiler end to end (mask, focus check, tile reading, JPEG encoding, store writing)."""
    from workflow_scripts.tiling import TilingConfig, tile_slide

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        qc = tile_slide(slide_path, Path(folder) / "s.h5", "bench", "P", TilingConfig(tile_px=TILE_PX, target_mpp=TARGET_MPP), threads)
        wall = time.perf_counter() - started
    return {"wall": wall, "kept": [list(c) for c in qc.kept_cells], "status": qc.status, "reason": qc.reason}


def child_decode(slide_path: Path, kept: list[list[int]]) -> dict:
    """Lower bound: decode once each level-0 source tile under the kept tiles, one thread."""
    import openslide

    from workflow_scripts.tiling import TiffLevelReader, plan_grid

    grid = plan_grid(*SLIDE_PX, MPP, TILE_PX, TARGET_MPP)
    with openslide.OpenSlide(slide_path) as slide:
        size = slide.level_dimensions[0]
    reader = TiffLevelReader(slide_path, size)
    keys: set[tuple[int, int]] = set()
    for col, row in kept:
        x, y = grid.origin(col, row)
        keys |= reader.tiles_for(x, y, grid.size, grid.size)
    started = time.perf_counter()
    for key in sorted(keys, key=lambda k: (k[1], k[0])):
        reader.decode(key)
    wall = time.perf_counter() - started
    reader.close()
    return {"wall": wall, "source_tiles": len(keys)}


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's peak, as it survives exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(args: list[str]) -> dict:
    """Run one method in a fresh interpreter and collect its result plus CPU time and peak RSS."""
    output = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bench_tiling_cache")
    parser.add_argument("--sample", type=int, default=150, help="grid cells the naive method is timed on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs="+")
    options = parser.parse_args()
    if options.child:
        method, slide_path, extra = options.child[0], Path(options.child[1]), options.child[2:]
        if method == "naive":
            result = child_naive(slide_path, int(extra[0]))
        elif method == "ours":
            result = child_ours(slide_path, int(extra[0]))
        else:
            result = child_decode(slide_path, json.loads(Path(extra[0]).read_text()))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result.update(cpu=usage.ru_utime + usage.ru_stime, peak_rss_mib=peak_rss_mib())
        print(json.dumps(result))
        return

    options.cache.mkdir(parents=True, exist_ok=True)
    slide = ensure_slide(options.cache)
    n_cells = len(grid_cells())
    ours = {t: run_child(["ours", str(slide), str(t)]) for t in sorted({1, options.threads})}
    best = ours[options.threads]
    kept_ours = {tuple(c) for c in best["kept"]}
    kept_file = options.cache / "kept.json"
    kept_file.write_text(json.dumps(best["kept"]))
    decode = run_child(["decode", str(slide), str(kept_file)])
    naive = run_child(["naive", str(slide), str(options.sample)])
    sampled = {tuple(c) for c in naive["cells"]}
    kept_naive = {tuple(c) for c in naive["kept"]}
    disagree = len((kept_ours & sampled) ^ kept_naive)
    n_kept = len(kept_ours)
    naive_cpu_per_cell = naive["cpu"] / len(sampled)
    naive_slide_cpu = naive_cpu_per_cell * n_cells

    rows = [
        ("naive (paper)", naive_slide_cpu, naive["wall"] / len(sampled) * n_cells, naive["peak_rss_mib"], "extrapolated from %d of %d cells" % (len(sampled), n_cells)),
        *[(f"ours, {t} thread(s)", r["cpu"], r["wall"], r["peak_rss_mib"], r["status"]) for t, r in ours.items()],
        ("JPEG decode bound", decode["cpu"], decode["wall"], decode["peak_rss_mib"], f"{decode['source_tiles']} source tiles, decode only"),
    ]
    print(f"slide {SLIDE_PX[0]}x{SLIDE_PX[1]} px at {MPP} um/px, grid {n_cells} cells, {n_kept} kept tiles of {TILE_PX} px at {TARGET_MPP} um/px")
    print(f"{'method':<22}{'cpu s':>9}{'wall s':>9}{'kept tiles/cpu-s':>18}{'peak RSS MiB':>14}  note")
    for name, cpu, wall, rss, note in rows:
        rate = n_kept / cpu if name != "JPEG decode bound" else n_kept / decode["wall"]
        print(f"{name:<22}{cpu:>9.1f}{wall:>9.1f}{rate:>18.1f}{rss:>14.0f}  {note}")
    ours_rate = n_kept / best["cpu"]
    print()
    print(f"speed-up per core vs naive:      {ours_rate / (n_kept / naive_slide_cpu):6.1f}x   (goal >= 5x)")
    print(f"fraction of decode bound:        {ours_rate / (n_kept / decode['wall']):6.0%}   (goal >= 40%; per core)")
    print(f"kept-set disagreement on sample: {disagree} of {len(kept_naive | (kept_ours & sampled))} kept ({disagree / max(1, len(kept_naive | (kept_ours & sampled))):.1%}; goal <= 1%)")
    print(f"peak RSS, ours:                  {max(r['peak_rss_mib'] for r in ours.values()):6.0f} MiB (goal < 1024)")


if __name__ == "__main__":
    main()
