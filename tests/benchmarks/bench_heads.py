"""Benchmark: one logistic and one MLP head of one trait and split, trained to early stop on CPU on a BRCA-sized cohort.

Cohort: --slides 761 slides of --tiles ~1,000 tiles (900-1,100, seeded), features of width --dim 1,536. Labels as in
the paper: the top and bottom 20% of patients are labelled (40% of the slides, 304 of 761), the rest unlabelled;
one train/validation split of the labelled slides (80/20). Only the labelled slides' features are written (the job
reads no other), as real feature stores (`featurestore.write_features`) in a temporary folder, and read back through
`featuredata.build_feature_index` as a training job does: the read time and the memory of the index are reported.

Signal: real embeddings carry a weak, slide-level signal; so that early stopping comes in realistic time, 8 of the D
dimensions carry a slide effect (2 * label - 1) * 0.5 + N(0, 1) per slide plus N(0, 1) tile noise (validation slide
AUC ~0.8-0.9, fluctuating, so stop_patience ends the run). The schedule is the paper's (evals_per_epoch 16,
lr_patience 10, lr_factor 0.1, stop_patience 30), batch 256, learning rate 0.001, validation on every tile.

Reported: wall time and evaluations per head, tiles/s, peak RSS of the process (getrusage) after reading and after
each head, and the extrapolation to 50 heads on an 8-core node: each head is one single-threaded job
(`limit_cpu_threads(1)`, as the workflow runs them); 8 jobs in parallel are assumed to scale linearly over cores
(independent processes; memory bandwidth is the caveat), so 50 heads take ceil(50 / 8) x (slowest head's wall time);
memory per job is the peak RSS measured here. Goals: 50 heads < 30 min on 8 cores, < 8 GB per job.

Run: python tests/benchmarks/bench_heads.py [--slides 761] [--tiles 1000] [--dim 1536] [--threads 1]
     [--predict-batch 64] [--kinds logistic mlp]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU benchmark

import keras  # noqa: E402
import numpy as np  # noqa: E402

from workflow_scripts.features.featurestore import FeatureAttrs, SlideFeatures, feature_path, write_features  # noqa: E402
from workflow_scripts.learning.featuredata import build_feature_index  # noqa: E402
from workflow_scripts.learning.heads import HeadSettings, head_training_settings  # noqa: E402
from workflow_scripts.learning.model import limit_cpu_threads  # noqa: E402
from workflow_scripts.learning.settings import RunSpec, TrainingOutputs  # noqa: E402
from workflow_scripts.learning.throughput import peak_host_rss_bytes  # noqa: E402
from workflow_scripts.learning.train import train_head  # noqa: E402

SIGNAL_DIMS = 8
GIB = 1024**3


def write_cohort(folder: Path, n_slides: int, tiles: int, dim: int, seed: int = 0) -> tuple[list[Path], list[int]]:
    """Feature stores of the labelled slides (top/bottom 20% of n_slides) and their labels, alternating classes."""
    rng = np.random.default_rng(seed)
    n_labelled = 2 * round(0.2 * n_slides)
    paths, labels = [], []
    for number in range(n_labelled):
        label = number % 2
        n_tiles = int(rng.integers(int(tiles * 0.9), int(tiles * 1.1) + 1))
        features = rng.standard_normal((n_tiles, dim), dtype=np.float32)
        features[:, :SIGNAL_DIMS] += (2 * label - 1) * 0.5 + rng.standard_normal()
        rows = np.arange(n_tiles, dtype=np.int64)
        slide_id = f"slide_{number:04d}"
        slide = SlideFeatures(slide_id, features, np.stack([rows % 100, rows // 100], 1) * 512, rows,
                              FeatureAttrs("encoder", "synthetic", "", 224, n_tiles))
        paths.append(write_features(feature_path(folder, slide_id), slide))
        labels.append(label)
    return paths, labels


def main() -> None:
    """Build the cohort, train the heads and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=761)
    parser.add_argument("--tiles", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--predict-batch", type=int, default=64, help="training.predict_batch_size (config: 64)")
    parser.add_argument("--kinds", nargs="+", default=["logistic", "mlp"])
    args = parser.parse_args()
    limit_cpu_threads(args.threads)
    print(f"device: cpu ({os.cpu_count()} cores visible, {args.threads} thread(s) per head), backend "
          f"{keras.backend.backend()}, keras {keras.__version__}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench_heads-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        paths, labels = write_cohort(folder / "features", args.slides, args.tiles, args.dim)
        written = time.perf_counter() - started
        n_train = round(0.8 * len(paths))
        started = time.perf_counter()
        train_index = build_feature_index(paths[:n_train], labels[:n_train])
        val_index = build_feature_index(paths[n_train:], labels[n_train:])
        read = time.perf_counter() - started
        size = (train_index.features.nbytes + val_index.features.nbytes) / GIB
        print(f"cohort: {args.slides} slides, {len(paths)} labelled: train {train_index.n_slides} slides "
              f"{train_index.n_tiles} tiles, val {val_index.n_slides} slides {val_index.n_tiles} tiles, D {args.dim}")
        print(f"feature stores written in {written:.1f} s; read into memory in {read:.1f} s "
              f"({size:.2f} GiB of features); peak RSS after reading {peak_host_rss_bytes() / GIB:.2f} GiB")
        # the workflow's own mapping from config `training` + features.head (its scoring batch: >= 4,096 rows)
        schedule = dict(evals_per_epoch=16, lr_patience=10, lr_factor=0.1, stop_patience=30, max_evals=1000,
                        workers=1, predict_batch_size=args.predict_batch, device="cpu")
        settings = head_training_settings(schedule, HeadSettings())
        print(f"validation and prediction batch: {settings.predict_batch_size} rows")
        walls = []
        print("| head | wall s | evals | best eval | best val AUC | stop | train tiles/s | val tiles/s | peak RSS GiB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for kind in args.kinds:
            outputs = TrainingOutputs.beside(folder / kind / "model.keras", folder / kind / "history.tsv",
                                             folder / kind / "metrics.json")
            started = time.perf_counter()
            metrics = train_head(train_index, val_index, settings, HeadSettings(kind=kind), RunSpec("T", 0, 0),
                                 outputs, log=lambda line: None)
            walls.append(time.perf_counter() - started)
            print(f"| {kind} | {walls[-1]:.1f} | {metrics['n_evals']} | {metrics['best_eval_step']} | "
                  f"{metrics['best_val_slide_auc']:.3f} | {metrics['stop_reason']} | {metrics['tiles_per_second']:.0f} "
                  f"| {metrics['val_tiles_per_second']:.0f} | {peak_host_rss_bytes() / GIB:.2f} |")
        rounds = math.ceil(50 / 8)
        print(f"50 heads on 8 cores (one single-thread job per head, 8 at a time, linear scaling assumed): "
              f"{rounds} rounds x slowest head {max(walls):.0f} s (+ {read:.0f} s reading each) = "
              f"{rounds * (max(walls) + read) / 60:.1f} min; all MLP heads: {rounds * (walls[-1] + read) / 60:.1f} min; "
              f"memory per job <= {peak_host_rss_bytes() / GIB:.2f} GiB (goals: < 30 min, < 8 GB)")


if __name__ == "__main__":
    main()
