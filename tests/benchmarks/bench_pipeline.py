"""Benchmark: decoded, augmented training batches per second from HDF5 tile stores, vs a naive baseline.

Baseline (same process, same stores): one thread reads each tile's JPEG bytes and decodes it with Pillow, then flips.
Pipeline: `tiledata.training_batches` (simplejpeg decoding on a thread pool, cross-slide shuffle, seeded flips,
prefetch). Reported per CPU core used, against the goal of >= 250 tiles/s per core at 512 px.

Run: python tests/benchmarks/bench_pipeline.py [--tiles 384] [--px 512] [--batch 32] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from workflow_scripts.learning.tiledata import build_tile_index, training_batches
from workflow_scripts.slides.tilestore import TileStore, write_tile_store

GOAL_PER_CORE = 250.0


def he_like_tile(rng: np.random.Generator, px: int) -> np.ndarray:
    """A tile with H&E-like colours and nuclei-sized blobs, so JPEG sizes and decode times resemble real tiles."""
    small = rng.random((px // 16, px // 16))
    field = (
        np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((px, px), Image.Resampling.BICUBIC)) / 255.0
    )
    pink, purple = np.array([235, 160, 200]), np.array([90, 60, 150])
    tile = pink * (1 - field[..., None]) + purple * field[..., None] + rng.normal(0, 8, (px, px, 3))
    return np.clip(tile, 0, 255).astype(np.uint8)


REAL_TILES = Path(__file__).resolve().parents[3] / "shared" / "data" / "tiles"


def source_tiles(px: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Real 512 px H&E tiles from ../shared/data/tiles (resized to px) when present, else synthetic H&E-like tiles."""
    paths = sorted(REAL_TILES.glob("*.jp*g")) if REAL_TILES.is_dir() else []
    if paths:
        return [
            np.asarray(Image.open(path).convert("RGB").resize((px, px), Image.Resampling.BILINEAR)) for path in paths
        ]
    return [he_like_tile(rng, px) for _ in range(16)]


def write_stores(folder: Path, n_tiles: int, px: int, n_slides: int = 8) -> list[Path]:
    """Write n_slides JPEG tile stores (quality 90, 4:4:4 as tiling writes them) holding n_tiles tiles in total."""
    rng = np.random.default_rng(0)
    sources = source_tiles(px, rng)
    per_slide = n_tiles // n_slides
    paths = []
    for slide in range(n_slides):
        grid = np.stack([np.arange(per_slide) % 16, np.arange(per_slide) // 16], axis=1)
        path = folder / f"bench_{slide}.h5"
        write_tile_store(
            path,
            path.stem,
            coords=grid * px,
            grid=grid,
            tissue_fraction=np.ones(per_slide),
            tiles=[sources[(slide * per_slide + i) % len(sources)] for i in range(per_slide)],
            attrs={
                "tile_px": px,
                "mpp": 0.5,
                "level0_tile_px": px,
                "source_mpp": 0.5,
                "grid_shape": (16, per_slide // 16 + 1),
            },
            encoding="jpeg",
            jpeg_quality=90,
        )
        paths.append(path)
    return paths


def baseline_rate(paths: list[Path], seed: int = 0) -> tuple[float, float]:
    """(tiles per wall second, tiles per CPU second) of single-threaded Pillow decoding + flips in a shuffled order."""
    rng = np.random.default_rng(seed)
    stores = [TileStore(path) for path in paths]
    order = [(s, t) for s, store in enumerate(stores) for t in range(store.n_tiles)]
    rng.shuffle(order)
    started, cpu_started = time.perf_counter(), time.process_time()
    for store_id, tile_id in order:
        tile = np.asarray(Image.open(io.BytesIO(stores[store_id].read_encoded(tile_id))).convert("RGB"))
        if rng.random() < 0.5:
            tile = tile[:, ::-1]
        if rng.random() < 0.5:
            tile = tile[::-1]
        np.ascontiguousarray(tile)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for store in stores:
        store.close()
    return len(order) / elapsed, len(order) / cpu


def pipeline_rate(paths: list[Path], px: int, batch: int, workers: int) -> tuple[float, float]:
    """(tiles per wall second, tiles per CPU second) delivered by training_batches over one pass, after a warm-up batch."""
    index = build_tile_index(paths, [slide % 2 for slide in range(len(paths))])
    n_steps = index.n_tiles // batch
    batches = training_batches(index, batch, px, seed=0, n_steps=n_steps + 1, workers=workers)
    next(batches)
    started, cpu_started = time.perf_counter(), time.process_time()
    delivered = sum(len(x) for x, _ in batches)
    return delivered / (time.perf_counter() - started), delivered / (time.process_time() - cpu_started)


def main() -> None:
    """Print a table of tiles/s, tiles/s per core and the ratio to the baseline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=384)
    parser.add_argument("--px", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, min(2, os.cpu_count() or 1)])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_stores(Path(folder), args.tiles, args.px)
        baseline, baseline_cpu = baseline_rate(paths)
        kind = "real H&E" if REAL_TILES.is_dir() else "synthetic"
        print(
            f"{args.tiles} {kind} tiles of {args.px} px in {len(paths)} JPEG stores, batch {args.batch}, {os.cpu_count()} CPUs"
        )
        print("per core = tiles per CPU-second of this process (all threads), robust to other load on the machine")
        print(f"{'method':<36}{'threads':>8}{'tiles/s':>10}{'per core':>10}{'vs baseline':>13}{'goal 250':>10}")
        print(f"{'baseline: Pillow, 1 thread':<36}{1:>8}{baseline:>10.1f}{baseline_cpu:>10.1f}{1.0:>12.2f}x{'':>10}")
        for workers in args.workers:
            rate, per_core = pipeline_rate(paths, args.px, args.batch, workers)
            verdict = "ok" if per_core >= GOAL_PER_CORE else "below"
            print(
                f"{'training_batches':<36}{workers:>8}{rate:>10.1f}{per_core:>10.1f}"
                f"{per_core / baseline_cpu:>12.2f}x{verdict:>10}"
            )


if __name__ == "__main__":
    main()
