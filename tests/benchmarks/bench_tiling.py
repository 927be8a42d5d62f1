"""Benchmark: our tiler vs the paper's naive tiling, and vs the JPEG-decode bound, on a synthetic 40x slide.

Run: python tests/benchmarks/bench_tiling.py [--cache DIR] [--sample N] [--threads T]
The slide (40,960 x 30,720 px at 0.25 um/px, ~54% tissue) is written once into the cache folder. All methods
run in one child process (a shared, loaded machine slows them alike), each timed by its CPU time
(time.process_time, all threads) and its own peak RSS (VmHWM, reset between methods). The decode bound is
measured after each run of our tiler and averaged: full-size decode of the level-0 source tiles under the
kept tiles (the goal's bound), with the 1/2-size scaled decode our tiler uses reported beside it. The naive
method (one level-0 read_region of 1024 px per grid cell, Lanczos to 512, per-pixel brightness test for background) is timed on a seeded random sample of grid cells and extrapolated to the whole grid; the
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
    from workflow_scripts.demo.slidewriter import SyntheticHE, write_aperio_slide

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
    """The paper's method on a random sample of grid cells (CPU time of the loop only, imports excluded)."""
    import openslide
    from PIL import Image

    span = int(TILE_PX * TARGET_MPP / MPP)
    cells = grid_cells()
    chosen = sorted(random.Random(0).sample(cells, min(sample, len(cells))), key=lambda c: (c[1], c[0]))
    kept = []
    started, cpu_started = time.perf_counter(), time.process_time()
    with openslide.OpenSlide(slide_path) as slide:
        for col, row in chosen:
            tile = slide.read_region((col * span, row * span), 0, (span, span)).convert("RGB")
            tile = tile.resize((TILE_PX, TILE_PX), Image.Resampling.LANCZOS)
            pixels = np.asarray(tile)
            background = (pixels.mean(axis=2) > NAIVE_BRIGHT).mean()
            if background < MAX_BACKGROUND:
                kept.append((col, row))
    return {
        "wall": time.perf_counter() - started,
        "work_cpu": time.process_time() - cpu_started,
        "cells": [list(c) for c in chosen],
        "kept": [list(c) for c in kept],
    }


def child_ours(slide_path: Path, threads: int) -> dict:
    """Our tiler end to end (mask, focus check, tile reading, JPEG encoding, store writing); CPU of all threads."""
    from workflow_scripts.slides.tiling import TilingConfig, tile_slide

    with tempfile.TemporaryDirectory() as folder:
        started, cpu_started = time.perf_counter(), time.process_time()
        qc = tile_slide(
            slide_path,
            Path(folder) / "s.h5",
            "bench",
            "P",
            TilingConfig(tile_px=TILE_PX, target_mpp=TARGET_MPP),
            threads,
        )
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "wall": wall,
        "work_cpu": cpu,
        "kept": [list(c) for c in qc.kept_cells],
        "status": qc.status,
        "reason": qc.reason,
    }


def child_decode(slide_path: Path, kept: list[list[int]]) -> dict:
    """The bound: decode once each level-0 source tile under the kept tiles, one thread, nothing else.

    Independent of the tiler's code. Three decoders: libjpeg-turbo (simplejpeg) at full size into one reused RGBX
    buffer, the fastest full decode we know (the bound); the same at the tiles' size (1/2: libjpeg's scaled IDCT,
    what our tiler does for a 40x slide tiled at 20x; for reference); tifffile's decode into a new array per tile
    (for reference).
    """
    import os

    import simplejpeg
    import tifffile

    span = TILE_PX * TARGET_MPP / MPP
    with tifffile.TiffFile(slide_path) as tiff:
        page = tiff.pages[0]
        tile_h, tile_w = page.tilelength, page.tilewidth
        across = -(-page.imagewidth // tile_w)
        keys: set[tuple[int, int]] = set()
        for col, row in kept:
            x, y, size = int(round(col * span)), int(round(row * span)), int(round(span))
            keys |= {
                (c, r)
                for r in range(y // tile_h, (y + size - 1) // tile_h + 1)
                for c in range(x // tile_w, (x + size - 1) // tile_w + 1)
            }
        indices = [r * across + c for c, r in sorted(keys, key=lambda k: (k[1], k[0]))]
        descriptor = os.open(slide_path, os.O_RDONLY)
        try:
            buffer = np.empty((tile_h, tile_w, 4), np.uint8)
            scale = int(span // TILE_PX)

            def fastest(index: int) -> None:
                data = os.pread(descriptor, int(page.databytecounts[index]), int(page.dataoffsets[index]))
                simplejpeg.decode_jpeg(data, colorspace="RGBX", buffer=buffer)

            def scaled(index: int) -> None:
                data = os.pread(descriptor, int(page.databytecounts[index]), int(page.dataoffsets[index]))
                simplejpeg.decode_jpeg(
                    data, colorspace="RGBX", buffer=buffer, min_height=tile_h // scale, min_width=tile_w // scale
                )

            def with_tifffile(index: int) -> None:
                data = os.pread(descriptor, int(page.databytecounts[index]), int(page.dataoffsets[index]))
                page.decode(data, index, jpegtables=page.jpegtables)

            timings = {}
            for name, decode in (("reused_buffer", fastest), ("scaled", scaled), ("tifffile", with_tifffile)):
                started, cpu_started = time.perf_counter(), time.process_time()
                for index in indices:
                    decode(index)
                timings[name] = {"wall": time.perf_counter() - started, "work_cpu": time.process_time() - cpu_started}
        finally:
            os.close(descriptor)
    return {
        **timings["reused_buffer"],
        "scaled": timings["scaled"],
        "tifffile": timings["tifffile"],
        "source_tiles": len(keys),
        "scale": scale,
    }


def peak_rss_mib() -> float:
    """This process's peak RSS since the last reset_peak_rss() (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start a new VmHWM period (Linux >= 4.0), so each method's peak is its own; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_all(slide_path: Path, threads: list[int], sample: int) -> dict:
    """All methods in one process, the bound measured after each run of ours, so machine load hits them alike."""
    import openslide  # noqa: F401  (imports before any timing)

    import workflow_scripts.slides.tiling  # noqa: F401

    results: dict = {"rss_reset": reset_peak_rss()}
    for number, count in enumerate(threads):
        reset_peak_rss()
        results[f"ours_{count}"] = {**child_ours(slide_path, count), "peak_rss_mib": peak_rss_mib()}
        results["decode_before" if number == 0 else "decode_after"] = child_decode(
            slide_path, results[f"ours_{threads[0]}"]["kept"]
        )
    if len(threads) == 1:
        results["decode_after"] = results["decode_before"]
    reset_peak_rss()
    results["naive"] = {**child_naive(slide_path, sample), "peak_rss_mib": peak_rss_mib()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bench_tiling_cache")
    parser.add_argument("--sample", type=int, default=150, help="grid cells the naive method is timed on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs="+")
    options = parser.parse_args()
    if options.child:
        slide_path, threads = Path(options.child[0]), sorted({1, int(options.child[1])})
        print(json.dumps(child_all(slide_path, threads, int(options.child[2]))))
        return

    options.cache.mkdir(parents=True, exist_ok=True)
    slide = ensure_slide(options.cache)
    n_cells = len(grid_cells())
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(slide), str(options.threads), str(options.sample)],
        check=True,
        capture_output=True,
        text=True,
    )
    results = json.loads(output.stdout.strip().splitlines()[-1])
    ours = {int(key.split("_")[1]): value for key, value in results.items() if key.startswith("ours_")}
    best = ours[options.threads]
    kept_ours = {tuple(c) for c in best["kept"]}
    if any({tuple(c) for c in r["kept"]} != kept_ours for r in ours.values()):
        print("WARNING: kept sets differ between thread counts")
    before, after, naive = results["decode_before"], results["decode_after"], results["naive"]
    decode_cpu = (before["work_cpu"] + after["work_cpu"]) / 2
    tifffile_cpu = (before["tifffile"]["work_cpu"] + after["tifffile"]["work_cpu"]) / 2
    scaled_cpu = (before["scaled"]["work_cpu"] + after["scaled"]["work_cpu"]) / 2
    sampled = {tuple(c) for c in naive["cells"]}
    kept_naive = {tuple(c) for c in naive["kept"]}
    disagree = len((kept_ours & sampled) ^ kept_naive)
    union = len(kept_naive | (kept_ours & sampled))
    n_kept = len(kept_ours)
    scale = n_cells / len(sampled)
    rss = (lambda value: f"{value:.0f}") if results["rss_reset"] else (lambda value: "n/a")

    rows = [
        (
            "naive (paper)",
            naive["work_cpu"] * scale,
            naive["wall"] * scale,
            rss(naive["peak_rss_mib"]),
            f"extrapolated from {len(sampled)} of {n_cells} cells",
        ),
        *[
            (f"ours, {t} thread(s)", r["work_cpu"], r["wall"], rss(r["peak_rss_mib"]), r["status"])
            for t, r in ours.items()
        ],
        (
            "decode bound",
            decode_cpu,
            (before["wall"] + after["wall"]) / 2,
            "",
            f"{before['source_tiles']} source tiles, libjpeg-turbo into a reused buffer (mean of {before['work_cpu']:.2f} and {after['work_cpu']:.2f})",
        ),
        (
            f"decode at 1/{before['scale']} size",
            scaled_cpu,
            (before["scaled"]["wall"] + after["scaled"]["wall"]) / 2,
            "",
            "same tiles, libjpeg-turbo scaled IDCT straight to tile resolution (reference)",
        ),
        (
            "decode, tifffile",
            tifffile_cpu,
            (before["tifffile"]["wall"] + after["tifffile"]["wall"]) / 2,
            "",
            "same tiles, tifffile's decode, new array per tile (reference)",
        ),
    ]
    print(
        f"slide {SLIDE_PX[0]}x{SLIDE_PX[1]} px at {MPP} um/px, grid {n_cells} cells, {n_kept} kept tiles of {TILE_PX} px at {TARGET_MPP} um/px"
    )
    print("all methods ran in one process; cpu s = CPU time (user+system, all threads) of the work, imports excluded")
    print(f"{'method':<22}{'cpu s':>9}{'wall s':>9}{'kept tiles/cpu-s':>18}{'peak RSS MiB':>14}  note")
    for name, cpu, wall, peak, note in rows:
        print(f"{name:<22}{cpu:>9.2f}{wall:>9.1f}{n_kept / cpu:>18.1f}{peak:>14}  {note}")
    naive_rate = n_kept / (naive["work_cpu"] * scale)
    bound_rate, tifffile_rate, scaled_rate = n_kept / decode_cpu, n_kept / tifffile_cpu, n_kept / scaled_cpu
    decode_factor = before["scale"]
    peak = max(r["peak_rss_mib"] for r in ours.values())
    print()
    print(f"{'goal (per core = kept tiles per CPU-second)':<52}{'measured':>10}  {'target':<10}met")
    for t, r in ours.items():
        rate = n_kept / r["work_cpu"]
        print(
            f"{f'speed-up vs naive, {t} thread(s)':<52}{rate / naive_rate:>9.1f}x  {'>= 5x':<10}{verdict(rate / naive_rate >= 5)}"
        )
        print(
            f"{f'fraction of decode bound, {t} thread(s)':<52}{rate / bound_rate:>10.0%}  {'>= 40%':<10}{verdict(rate / bound_rate >= 0.4)}"
        )
        print(
            f"{f'  same, bound decoded at 1/{decode_factor} size, {t} thread(s)':<52}{rate / scaled_rate:>10.0%}  {'(info)':<10}"
        )
        print(f"{f'  same, bound decoded by tifffile, {t} thread(s)':<52}{rate / tifffile_rate:>10.0%}  {'(info)':<10}")
    share = disagree / max(1, union)
    print(
        f"{f'kept-set disagreement with naive ({disagree} of {union} on sample)':<52}{share:>10.1%}  {'<= 1%':<10}{verdict(share <= 0.01)}"
    )
    print(
        f"{'peak RSS, ours':<52}{rss(peak):>6} MiB  {'< 1024':<10}{verdict(peak < 1024) if results['rss_reset'] else 'n/a'}"
    )


def verdict(met: bool) -> str:
    """A goal's status for the table."""
    return "yes" if met else "NO"


if __name__ == "__main__":
    main()
