"""The one writer and reader of a training's history.tsv and metrics.json.

history.tsv (written with `common.tables.write_tsv`): one row per evaluation, columns HISTORY_COLUMNS:
eval_step (1-based), epoch_fraction (training examples seen / training tiles), train_loss (mean over the
interval), val_slide_auc (NaN when the validation slides hold one class or none), lr (the rate used during the
interval), val_loss (mean validation tile cross-entropy; NaN without validation slides).

metrics.json (sorted keys, 2-space indent), keys METRICS_KEYS plus, added by `train`, the images/s, GPU-seconds and
peak-memory keys `throughput.RESOURCE_KEYS` (documented there); METRICS_KEYS: trait, split; best_val_slide_auc (null
when undefined) and best_eval_step of the kept weights; selection_metric (val_slide_auc, val_loss or last_weights:
what chose them, see `schedule`); stop_reason (no_improvement or max_evals); n_evals; n_train_tiles, n_train_slides,
n_val_tiles, n_val_slides; seconds (wall time of the training, validation included); tiles_per_second (training
examples per second of wall time outside validation, one-off graph compilation included); dtype_policy. A training
also records where and how it computed, keys DEVICE_KEYS (`devices.device_facts`): backend (tensorflow or jax),
device (gpu or cpu), device_names (list), n_devices (model replicas: the global batch is batch_size times this),
compute_capability (lowest of the GPUs, "8.0"; null on CPU), deterministic (whether deterministic ops were
requested) and versions (object: keras, numpy and tensorflow, or jax and jaxlib). And, added by `train` from its
feed (`feeds`), the model family, FAMILY_KEYS: model_family (inception_v3 or features) and, for features only,
HEAD_KEYS: head_kind (logistic or mlp), feature_dim (D), encoder and weights_sha256 (of the feature stores' encoder,
"" when unknown). Files written before these keys existed lack them; `read_metrics_file(path, required=...)` names
the file and the missing keys when a reader needs them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.tables import read_table, write_tsv

if TYPE_CHECKING:  # annotations only: the analysis stage reads these files without Keras (envs/analysis.yaml)
    from workflow_scripts.learning.checkpoint import RunRecord
    from workflow_scripts.learning.tiledata import TileIndex

HISTORY_COLUMNS = ["eval_step", "epoch_fraction", "train_loss", "val_slide_auc", "lr", "val_loss"]
METRICS_KEYS = (
    "trait", "split", "best_val_slide_auc", "best_eval_step", "selection_metric", "stop_reason", "n_evals",
    "n_train_tiles", "n_train_slides", "n_val_tiles", "n_val_slides", "seconds", "tiles_per_second", "dtype_policy",
)
FAMILY_KEYS = ("model_family",)
HEAD_KEYS = ("head_kind", "feature_dim", "encoder", "weights_sha256")
DEVICE_KEYS = (
    "backend", "device", "device_names", "n_devices", "compute_capability", "deterministic", "versions",
)


def history_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """History rows (one dict per evaluation) as a table with the contract's columns, in order."""
    return pd.DataFrame(list(rows), columns=HISTORY_COLUMNS)


def write_history(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Write history.tsv atomically in the workflow's one TSV form."""
    write_tsv(history_frame(rows), path)


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """Read history.tsv, failing naming the file when a contract column is missing."""
    return read_table(path, required=HISTORY_COLUMNS)[HISTORY_COLUMNS]


def run_metrics(
    record: RunRecord, train_index: TileIndex, val_index: TileIndex, device: Mapping[str, object] | None = None
) -> dict:
    """The metrics.json content of a finished run (trait, split and policy come from its run key).

    `device` holds the DEVICE_KEYS (exactly those) and is merged in.
    """
    if device is not None and set(device) != set(DEVICE_KEYS):
        raise ValueError(f"device facts must have the keys {list(DEVICE_KEYS)}, got {sorted(device)}")
    history = history_frame(record.history)
    best_row = history[history["eval_step"] == record.schedule.best_eval].iloc[0]
    training_seconds = max(record.seconds - record.validation_seconds, 1e-9)
    n_trained = record.eval_step * record.run_key["steps_per_eval"] * record.run_key["global_batch"]
    best_auc = float(best_row["val_slide_auc"])
    return dict(device or {}) | {
        "trait": record.run_key["trait"],
        "split": record.run_key["split"],
        "best_val_slide_auc": None if math.isnan(best_auc) else best_auc,
        "best_eval_step": int(record.schedule.best_eval),
        "selection_metric": (
            "last_weights" if val_index.n_tiles == 0 else "val_loss" if math.isnan(best_auc) else "val_slide_auc"
        ),
        "stop_reason": record.schedule.stop_reason,
        "n_evals": int(record.eval_step),
        "n_train_tiles": train_index.n_tiles,
        "n_train_slides": train_index.n_slides,
        "n_val_tiles": val_index.n_tiles,
        "n_val_slides": val_index.n_slides,
        "seconds": round(record.seconds, 3),
        "tiles_per_second": round(n_trained / training_seconds, 3),
        "dtype_policy": record.run_key["policy"],
    }


def write_metrics_file(metrics: dict, path: str | os.PathLike) -> None:
    """Write metrics.json atomically (sorted keys, so reruns are byte-identical apart from the timings)."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def read_metrics_file(path: str | os.PathLike, required: Sequence[str] = ()) -> dict:
    """Read one metrics.json; an unreadable or non-object file, or one without a `required` key, names the file."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable metrics file ({error})") from error
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: metrics file does not hold a JSON object")
    missing = [key for key in required if key not in metrics]
    if missing:
        raise ValueError(f"{path}: metrics file lacks {missing} (written by an older version? retrain to add them)")
    return metrics
