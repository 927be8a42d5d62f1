"""Benchmark: training and inference images/s of the Inception v3 classifier, and the input pipeline's tiles/s per core.

Runs under any Keras 3 backend (KERAS_BACKEND=jax on a GPU box with JAX but no TensorFlow; tensorflow by default).
At top level it imports only the standard library, keras, numpy and the package's model builder (keras and the
standard library alone); everything else is optional and reported as "skipped: <module> missing".

For each per-GPU batch and dtype policy a fresh model is built and compiled; the first train step (graph
compilation) is timed apart, then --steps train steps on random uint8 tiles give the training images/s. Baseline in
the same process: inference images/s of the float32 model at the first batch (the forward pass alone). The input
pipeline row (`tiledata.training_batches` on 512 px JPEG q90 stores, one decoding thread, per CPU-second) tells how
many decoding cores one GPU needs (training images/s / tiles per core).

Defaults: on a GPU, 512 px, per-GPU batches 18 and 64, float32 and mixed_bfloat16, 20 steps; on CPU (a couple of
minutes on 2 cores) 75 px, batch 18, float32, 3 steps. Usage on a GPU box, from the repository root:

    KERAS_BACKEND=jax PYTHONPATH=$PWD python tests/benchmarks/bench_training.py
    KERAS_BACKEND=jax PYTHONPATH=$PWD python tests/benchmarks/bench_training.py --px 512 --batches 18 64 --steps 50

Run: python tests/benchmarks/bench_training.py [--px N] [--batches 18 64] [--policies float32 mixed_bfloat16]
     [--steps N] [--threads N] [--no-pipeline]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from workflow_scripts.learning.model import build_model, limit_cpu_threads  # noqa: E402


def gpu_devices() -> list[str]:
    """Names of the accelerators Keras' backend sees (empty on CPU)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{device.platform}:{device.id} {device.device_kind}" for device in jax.devices() if device.platform != "cpu"]
    if backend == "torch":
        import torch

        return [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [
        f"{gpu.name} {tf.config.experimental.get_device_details(gpu).get('device_name', '?')}"
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def time_training(px: int, batch: int, policy: str, steps: int) -> tuple[float, float, float]:
    """(first-step seconds, training images/s, inference images/s) of a fresh model under `policy`."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch, px, px, 3), dtype=np.uint8)
    y = rng.integers(0, 2, size=(batch, 1)).astype(np.float32)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_model(px, bn_momentum=0.9)
        model.compile(optimizer=keras.optimizers.Adam(0.001), loss="binary_crossentropy")
    finally:
        keras.config.set_dtype_policy(previous)
    started = time.perf_counter()
    float(np.asarray(model.train_on_batch(x, y)).reshape(-1)[0])
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss).reshape(-1)[0])  # wait for the device
    train_rate = steps * batch / (time.perf_counter() - started)
    np.asarray(model.predict_on_batch(x))
    started = time.perf_counter()
    for _ in range(steps):
        out = model.predict_on_batch(x)
    np.asarray(out)
    return compile_seconds, train_rate, steps * batch / (time.perf_counter() - started)


def pipeline_per_core() -> tuple[float | None, str]:
    """Tiles per CPU-second of training_batches at 512 px with one decoding thread, or None and why it was skipped."""
    for module in ("h5py", "simplejpeg", "PIL"):
        if importlib.util.find_spec(module) is None:
            return None, f"skipped: {module} missing"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_pipeline import pipeline_rate, write_stores

    with tempfile.TemporaryDirectory() as folder:
        paths = write_stores(Path(folder), 128, 512)
        _, per_core = pipeline_rate(paths, 512, 32, workers=1)
    return per_core, "512 px JPEG q90, 1 decoding thread"


def main() -> None:
    """Print the device, then a table of compile time, training and inference images/s per batch and policy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--px", type=int)
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--policies", nargs="+")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-pipeline", action="store_true", help="skip the input pipeline row")
    args = parser.parse_args()
    limit_cpu_threads(args.threads)
    gpus = gpu_devices()
    px = args.px or (512 if gpus else 75)
    batches = args.batches or ([18, 64] if gpus else [18])
    policies = args.policies or (["float32", "mixed_bfloat16"] if gpus else ["float32"])
    steps = args.steps or (20 if gpus else 3)
    device = ", ".join(gpus) if gpus else f"CPU ({os.cpu_count()} cores, {args.threads} threads)"
    print(f"backend {keras.backend.backend()} {keras.__version__}, device {device}; first device used")
    print(f"input {px} px, {steps} timed steps per row, random uint8 tiles")
    print(f"{'batch':>6}{'policy':>16}{'compile s':>11}{'train img/s':>13}{'infer img/s':>13}{'train/infer':>13}")
    train_rates = []
    for batch in batches:
        for policy in policies:
            compile_seconds, train_rate, infer_rate = time_training(px, batch, policy, steps)
            train_rates.append(train_rate)
            print(f"{batch:>6}{policy:>16}{compile_seconds:>11.1f}{train_rate:>13.1f}{infer_rate:>13.1f}"
                  f"{train_rate / infer_rate:>12.2f}x")
    per_core, note = (None, "skipped: --no-pipeline") if args.no_pipeline else pipeline_per_core()
    if per_core is None:
        print(f"input pipeline tiles/s per core: {note}")
        return
    print(f"input pipeline tiles/s per core: {per_core:.1f} ({note}); decoding cores to feed the fastest row: "
          f"{max(train_rates) / per_core:.2f}")


if __name__ == "__main__":
    main()
