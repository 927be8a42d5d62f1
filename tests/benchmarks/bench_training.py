"""Benchmark: training images/s of the Inception v3 classifier under the active KERAS_BACKEND, on random uint8 tiles.

Baseline in the same process: inference images/s of the same model at the same batch (the forward pass alone),
so the ratio shows what the backward pass and the optimizer cost. The one-off graph compilation (first step) is
reported separately: on CPU it dominates short trainings.

Run: python tests/benchmarks/bench_training.py [--px 75] [--batch 16] [--steps 10] [--mixed-precision] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from workflow_scripts.learning.model import limit_cpu_threads  # noqa: E402


def main() -> None:
    """Time compilation, training steps and inference batches; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--px", type=int, default=75)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (only applied on a GPU)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    limit_cpu_threads(args.threads)

    import keras
    import numpy as np

    from workflow_scripts.learning.devices import dtype_policy, has_gpu, mixed_precision_policy
    from workflow_scripts.learning.model import build_model

    gpu = has_gpu()
    policy = mixed_precision_policy(args.mixed_precision, gpu)
    devices = keras.distribution.list_devices("gpu") if gpu else keras.distribution.list_devices("cpu")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.batch, args.px, args.px, 3), dtype=np.uint8)
    y = rng.integers(0, 2, size=(args.batch, 1)).astype(np.float32)
    with dtype_policy(policy):
        model = build_model(args.px, bn_momentum=0.9)
        model.compile(optimizer=keras.optimizers.Adam(0.001), loss="binary_crossentropy")
    started = time.perf_counter()
    model.train_on_batch(x, y)
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss).reshape(-1)[0])  # wait for the device
    train_rate = args.steps * args.batch / (time.perf_counter() - started)
    model.predict_on_batch(x)
    started = time.perf_counter()
    for _ in range(args.steps):
        out = model.predict_on_batch(x)
    np.asarray(out)
    predict_rate = args.steps * args.batch / (time.perf_counter() - started)

    print(f"backend {keras.backend.backend()}, device {devices[0]} (x{len(devices)} seen, first used), policy {policy}, "
          f"{args.threads} CPU threads")
    print(f"input {args.px} px, batch {args.batch}, {args.steps} timed steps")
    print(f"{'measure':<34}{'value':>12}")
    print(f"{'first train step (compile), s':<34}{compile_seconds:>12.1f}")
    print(f"{'training images/s':<34}{train_rate:>12.1f}")
    print(f"{'inference images/s (baseline)':<34}{predict_rate:>12.1f}")
    print(f"{'training / inference':<34}{train_rate / predict_rate:>11.2f}x")


if __name__ == "__main__":
    main()
