"""history.tsv and metrics.json: written and read back by their one owner, with the contract's columns."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from workflow_scripts.learning.checkpoint import RunRecord
from workflow_scripts.learning.run_outputs import (
    HISTORY_COLUMNS,
    METRICS_KEYS,
    read_history,
    read_metrics_file,
    run_metrics,
    write_history,
    write_metrics_file,
)
from workflow_scripts.learning.schedule import ScheduleState
from workflow_scripts.learning.tiledata import build_tile_index

ROWS = [
    {"eval_step": 1, "epoch_fraction": 0.5, "train_loss": 0.7, "val_slide_auc": math.nan, "lr": 0.001,
     "val_loss": math.nan},
    {"eval_step": 2, "epoch_fraction": 1.0, "train_loss": 0.123456789012, "val_slide_auc": 0.75, "lr": 0.0001,
     "val_loss": 0.5},
]


def test_history_round_trips_with_nan_and_ten_digits(tmp_path: Path) -> None:
    path = tmp_path / "history.tsv"
    write_history(ROWS, path)
    history = read_history(path)
    assert list(history.columns) == HISTORY_COLUMNS
    assert math.isnan(history["val_slide_auc"][0]) and history["val_slide_auc"][1] == 0.75
    assert history["train_loss"][1] == pytest.approx(0.123456789, abs=1e-10)
    assert path.read_text().splitlines()[1].split("\t")[3] == "NaN"


def test_read_history_names_the_file_when_a_column_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "history.tsv"
    path.write_text("eval_step\tlr\n1\t0.001\n")
    with pytest.raises(ValueError, match="history.tsv"):
        read_history(path)


def test_metrics_of_a_run_without_validation_select_the_last_weights(tmp_path: Path) -> None:
    key = {"steps_per_eval": 3, "global_batch": 8, "trait": "T", "split": 2, "policy": "float32"}
    record = RunRecord(key, eval_step=2, schedule=ScheduleState(lr=0.001, best_eval=2, stop_reason="max_evals"),
                       history=ROWS, seconds=4.0, validation_seconds=1.0)
    empty = build_tile_index([], [])
    metrics = run_metrics(record, empty, empty)
    assert tuple(sorted(metrics)) == tuple(sorted(METRICS_KEYS))
    assert (metrics["trait"], metrics["split"], metrics["selection_metric"]) == ("T", 2, "last_weights")
    assert metrics["best_val_slide_auc"] == 0.75 and metrics["tiles_per_second"] == pytest.approx(2 * 3 * 8 / 3.0)
    path = tmp_path / "metrics.json"
    write_metrics_file(metrics, path)
    assert read_metrics_file(path) == metrics


def test_read_metrics_file_rejects_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable metrics file"):
        read_metrics_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_metrics_file(path)
