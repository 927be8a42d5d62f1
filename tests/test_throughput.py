"""Throughput arithmetic of the training log and metrics.json, against hand-computed answers."""

from __future__ import annotations

import math
import resource

import pytest

from workflow_scripts.learning.throughput import (
    RESOURCE_KEYS,
    IntervalTiming,
    evaluations_left,
    format_duration,
    gpu_seconds,
    images_per_second,
    peak_device_bytes,
    peak_host_rss_bytes,
    resource_metrics,
)


def test_images_per_second_and_untimed_stretches() -> None:
    assert images_per_second(576, 4.0) == 144.0
    assert math.isnan(images_per_second(0, 3.0)) and math.isnan(images_per_second(10, 0.0))


def test_evaluations_left_to_max_evals_and_to_the_early_stop_horizon() -> None:
    # eval 40 of 1000, 12 evaluations since the best, patience 30: 960 to go, 18 before early stopping
    assert evaluations_left(40, 12, 1000, 30) == (960, 18)
    # the horizon never lies beyond max_evals: eval 995, 2 since the best -> 5 left either way
    assert evaluations_left(995, 2, 1000, 30) == (5, 5)
    # at the stop itself nothing is left
    assert evaluations_left(42, 30, 1000, 30) == (958, 0)
    assert evaluations_left(1000, 0, 1000, 30) == (0, 0)


def test_gpu_seconds_are_wall_seconds_times_gpus() -> None:
    assert gpu_seconds(3600.0, 4) == 14400.0
    assert gpu_seconds(3600.0, 0) == 0.0


def test_format_duration() -> None:
    assert format_duration(3 * 3600 + 7 * 60 + 5.4) == "3:07:05"
    assert format_duration(59.6) == "0:01:00"
    assert format_duration(math.nan) == "?" and format_duration(math.inf) == "?"


def test_progress_line_rates_and_estimates() -> None:
    # 100 steps of global batch 18 in 12 s, then 960 validation tiles in 3 s: 150 and 320 img/s, 15 s per evaluation
    timing = IntervalTiming(train_images=1800, train_seconds=12.0, val_images=960, val_seconds=3.0)
    assert timing.seconds == 15.0
    line = timing.progress_line(elapsed=125.0, left_to_max=960, left_to_stop=18)
    assert line == (
        "train 150.0 img/s, validation 320.0 img/s; elapsed 0:02:05, left to max_evals (960 evals) 4:00:00, "
        "to the early-stop horizon (18 evals) 0:04:30"
    )


def test_progress_line_without_validation_tiles() -> None:
    line = IntervalTiming(180, 2.0, 0, 0.0).progress_line(2.0, 1, 1)
    assert line.startswith("train 90.0 img/s, validation nan img/s")


def test_resource_metrics_convert_units_and_mark_missing_values() -> None:
    metrics = resource_metrics(
        seconds=7200.0, val_tiles=24000, val_seconds=60.0, n_gpus=2, host_peak=3 * 1024**3, device_peak=40 * 1024**3
    )
    assert tuple(metrics) == RESOURCE_KEYS
    assert metrics == {
        "val_tiles_per_second": 400.0,
        "gpu_seconds": 14400.0,
        "peak_host_rss_mb": 3072.0,
        "peak_device_memory_mb": 40960.0,
    }
    cpu = resource_metrics(100.0, 0, 0.0, 0, 1024**2, None)
    assert cpu["val_tiles_per_second"] is None and cpu["peak_device_memory_mb"] is None and cpu["gpu_seconds"] == 0


def test_peak_host_rss_is_getrusage_in_bytes() -> None:
    # Linux reports ru_maxrss in KiB; the peak only grows, so it lies between two readings around the call
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = peak_host_rss_bytes()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert before <= peak <= after and peak > 10 * 1024**2  # a Python with numpy and pytest holds more than 10 MiB


def test_no_device_memory_on_a_machine_without_gpus() -> None:
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    assert peak_device_bytes("tensorflow") is None
    assert peak_device_bytes("torch") is None  # a backend without a reader reports nothing
