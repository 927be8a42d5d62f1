"""Throughput a training makes visible: images/s, time left, GPU-seconds and peak memory.

The training log gets one `progress_line` per evaluation: training images/s and validation-scoring images/s of the
interval just ended (measured separately), the elapsed wall time, and estimates of the time left to max_evals and to
the early-stop horizon (the evaluations after which stop_patience would stop the run if nothing improves from now on).
Estimates use the last interval's wall time per evaluation (training plus validation), so the one-off graph
compilation of the first interval does not inflate them after the first evaluation.

metrics.json gets the `RESOURCE_KEYS` (see `resource_metrics`): val_tiles_per_second (validation tiles scored per
second of validation wall time; null without validation tiles), gpu_seconds (wall seconds of the training times the
GPUs it used; 0 on CPU), peak_host_rss_mb (this process's peak resident memory, from getrusage) and
peak_device_memory_mb (the largest per-GPU peak the backend reports: JAX `memory_stats()['peak_bytes_in_use']`,
TensorFlow `get_memory_info()['peak']`; null on CPU or when the backend reports nothing).
"""

from __future__ import annotations

import math
import resource
import sys
from dataclasses import dataclass

RESOURCE_KEYS = ("val_tiles_per_second", "gpu_seconds", "peak_host_rss_mb", "peak_device_memory_mb")
MIB = 1024 * 1024


def images_per_second(images: float, seconds: float) -> float:
    """Rate of a timed stretch; NaN when nothing was timed (no images or no time), so a log never divides by zero."""
    return images / seconds if images > 0 and seconds > 0 else math.nan


def evaluations_left(eval_step: int, since_best: int, max_evals: int, stop_patience: int) -> tuple[int, int]:
    """(evaluations to max_evals, evaluations to the early-stop horizon) after evaluation `eval_step`.

    The horizon is where stop_patience evaluations without improvement would be reached if none improves from now
    on, never beyond max_evals.
    """
    to_max = max(0, max_evals - eval_step)
    return to_max, min(to_max, max(0, stop_patience - since_best))


def gpu_seconds(wall_seconds: float, n_gpus: int) -> float:
    """Accelerator time billed for a run: wall seconds times the GPUs it held (0 on CPU)."""
    return wall_seconds * max(0, n_gpus)


def format_duration(seconds: float) -> str:
    """Seconds as h:mm:ss (or '?' when unknown), short enough for a log line."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


@dataclass(frozen=True)
class IntervalTiming:
    """What one evaluation interval did and how long it took: training and validation measured apart."""

    train_images: int
    train_seconds: float
    val_images: int
    val_seconds: float

    @property
    def seconds(self) -> float:
        """Wall time of the whole interval, validation included."""
        return self.train_seconds + self.val_seconds

    def progress_line(self, elapsed: float, left_to_max: int, left_to_stop: int) -> str:
        """The log's throughput line: rates of this interval, elapsed time and the two estimates of time left."""
        train_rate = images_per_second(self.train_images, self.train_seconds)
        val_rate = images_per_second(self.val_images, self.val_seconds)
        return (
            f"train {train_rate:.1f} img/s, validation {val_rate:.1f} img/s; elapsed {format_duration(elapsed)}, "
            f"left to max_evals ({left_to_max} evals) {format_duration(left_to_max * self.seconds)}, "
            f"to the early-stop horizon ({left_to_stop} evals) {format_duration(left_to_stop * self.seconds)}"
        )


def peak_host_rss_bytes() -> int:
    """Peak resident memory of this process (getrusage reports KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def peak_device_bytes(backend: str) -> int | None:
    """Largest per-GPU peak of allocated memory the backend reports, or None (CPU, or no statistics)."""
    peaks: list[int] = []
    if backend == "jax":
        import jax

        for device in jax.devices():
            stats = device.memory_stats() if device.platform == "gpu" else None
            if stats and "peak_bytes_in_use" in stats:
                peaks.append(int(stats["peak_bytes_in_use"]))
    elif backend == "tensorflow":
        import tensorflow as tf

        for position, _ in enumerate(tf.config.list_logical_devices("GPU")):
            peaks.append(int(tf.config.experimental.get_memory_info(f"GPU:{position}")["peak"]))
    return max(peaks) if peaks else None


def resource_metrics(
    seconds: float, val_tiles: int, val_seconds: float, n_gpus: int, host_peak: int, device_peak: int | None
) -> dict:
    """The RESOURCE_KEYS of metrics.json from a run's totals (bytes in, MiB out)."""
    val_rate = images_per_second(val_tiles, val_seconds)
    return {
        "val_tiles_per_second": None if math.isnan(val_rate) else round(val_rate, 3),
        "gpu_seconds": round(gpu_seconds(seconds, n_gpus), 3),
        "peak_host_rss_mb": round(host_peak / MIB, 1),
        "peak_device_memory_mb": None if device_peak is None else round(device_peak / MIB, 1),
    }


def measured_resources(seconds: float, val_tiles: int, val_seconds: float, n_gpus: int, backend: str) -> dict:
    """`resource_metrics` with this process's peak host memory and the backend's peak device memory read now."""
    return resource_metrics(seconds, val_tiles, val_seconds, n_gpus, peak_host_rss_bytes(), peak_device_bytes(backend))
