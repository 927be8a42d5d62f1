"""Train one trait's classifier for one train/validation split with the paper's schedule, resumably.

This module runs the training: it picks the trait/split's slides, builds and compiles the model, feeds Keras the
deterministic batches of `tiledata`, and at the end of every evaluation interval (one Keras 'epoch') scores the
validation slides, advances the schedule (`schedule`: what is monitored, lr decay, early stopping, best weights),
and writes a checkpoint (`checkpoint`: folder contract and exact resume). At the end it saves the best weights as a
float32 model.keras and writes history.tsv and metrics.json (`run_outputs`: their columns and keys; `throughput`:
the images/s, GPU-seconds and peak memory keys), then removes the checkpoint folder. Each evaluation logs its
training and validation images/s, the elapsed time and the estimated time left (`throughput.progress_line`).

An evaluation interval is steps_per_eval = round(n_train_tiles / (evals_per_epoch * global_batch)) steps (at least 1).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from workflow_scripts.learning.checkpoint import (
    RunRecord,
    read_arrays,
    remove_checkpoints,
    resume_or_start,
    write_checkpoint,
)
from workflow_scripts.learning.devices import (
    apply_determinism,
    data_parallel,
    device_facts,
    dtype_policy,
    has_gpu,
    mixed_precision_policy,
    optimizer_for,
    select_devices,
)
from workflow_scripts.learning.labels import read_labels, trait_slide_sets
from workflow_scripts.learning.model import build_model, save_model
from workflow_scripts.learning.run_outputs import run_metrics, write_history, write_metrics_file
from workflow_scripts.learning.schedule import monitored_score, tile_loss, update_schedule
from workflow_scripts.learning.settings import RunSpec, TrainingOutputs, TrainingSettings, trajectory_settings
from workflow_scripts.learning.slide_score import grouped_slide_scores, slide_auc
from workflow_scripts.learning.splits import read_splits
from workflow_scripts.learning.throughput import IntervalTiming, evaluations_left, measured_resources
from workflow_scripts.learning.tiledata import TileIndex, build_tile_index, ordered_batches, training_batches
from workflow_scripts.slides.qc_table import passed_slides, read_qc_table


def select_slides(
    labels: pd.DataFrame, splits: pd.DataFrame, qc: pd.DataFrame, trait: str, split: int, stores: Mapping[str, Path]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and validation slides (slide_id, patient_id, label, store) of a trait and split.

    Kept: labelled 0/1, QC pass, more than 0 tiles.
    """
    sets = trait_slide_sets(labels, splits, qc, trait, split)
    n_tiles = passed_slides(qc).set_index("slide_id")["n_tiles"]
    sets = sets[sets["label"].notna() & (sets["slide_id"].map(n_tiles).fillna(0) > 0)].copy()
    missing = sorted(set(sets.loc[sets["role"].isin(["train", "val"]), "slide_id"]) - set(stores))
    if missing:
        raise FileNotFoundError(f"no tile store given for slide(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    sets["store"] = sets["slide_id"].map(stores)
    sets["label"] = sets["label"].astype(int)
    chosen = ["slide_id", "patient_id", "label", "store"]
    train = sets[sets["role"] == "train"][chosen].reset_index(drop=True)
    val = sets[sets["role"] == "val"][chosen].reset_index(drop=True)
    if train.empty:
        raise ValueError(f"trait {trait} split {split}: no training slide with a label and tiles")
    if len(set(train["label"])) < 2:
        raise ValueError(
            f"trait {trait} split {split}: training slides hold a single class {sorted(set(train['label']))}"
        )
    return train, val


def predict_probabilities(
    model: keras.Model, index: TileIndex, settings: TrainingSettings, n_replicas: int
) -> np.ndarray:
    """Tile probabilities of every indexed tile, in index order."""
    if index.n_tiles == 0:
        return np.zeros(0, np.float32)
    global_batch = settings.predict_batch_size * n_replicas
    n_batches = math.ceil(index.n_tiles / global_batch)
    # a short last batch is padded: one shape, one traced function, and JAX DataParallel splits it evenly
    batches = (
        (_padded(batch, global_batch),)
        for batch in ordered_batches(index, global_batch, settings.input_px, workers=settings.workers)
    )
    probabilities = model.predict(batches, steps=n_batches, verbose=0)
    return np.asarray(probabilities, np.float32).reshape(-1)[: index.n_tiles]


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """The batch filled up to `size` rows with blank tiles (their scores are dropped)."""
    if len(batch) >= size:
        return batch
    return np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)])


class EvaluationCallback(keras.callbacks.Callback):
    """At the end of each Keras 'epoch' (= one evaluation interval): score validation, run the schedule, checkpoint.

    The interval's geometry (global batch, steps per evaluation, training tiles) is read from the record's run key.
    """

    def __init__(
        self,
        record: RunRecord,
        val_index: TileIndex,
        settings: TrainingSettings,
        checkpoint: Path,
        best_weights: Path | None,
        log: Callable[[str], None],
        after_evaluation: Callable[[int], None] | None,
    ) -> None:
        super().__init__()
        self.record = record
        self.val_index = val_index
        self.settings = settings
        self.checkpoint = checkpoint
        self.best_weights = best_weights
        self.log = log
        self.after_evaluation = after_evaluation
        self.scored_slides = val_index.tiles_per_store() > 0
        self.started = time.monotonic()

    def score_validation(self) -> tuple[float, float]:
        """Slide AUC and tile loss of the validation slides (NaN, NaN without validation tiles)."""
        if self.val_index.n_tiles == 0:
            return math.nan, math.nan
        n_replicas = self.record.run_key["global_batch"] // self.settings.batch_size
        probabilities = predict_probabilities(self.model, self.val_index, self.settings, n_replicas)
        scores = grouped_slide_scores(probabilities, self.val_index.tiles_per_store(), self.settings.threshold)
        auc = slide_auc(self.val_index.slide_labels[self.scored_slides], scores[self.scored_slides])
        val_loss = tile_loss(probabilities, self.val_index.labels) if len(probabilities) else math.nan
        return auc, val_loss

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Evaluate after eval interval `epoch` (0-based) and decide on lr and stopping."""
        eval_step = epoch + 1
        started = time.monotonic()
        auc, val_loss = self.score_validation()
        score = monitored_score(auc, val_loss, eval_step, has_validation=self.val_index.n_tiles > 0)
        lr_used = self.record.schedule.lr
        schedule, improved = update_schedule(self.record.schedule, score, eval_step, self.settings, val_loss)
        if schedule.lr != lr_used:
            self.model.optimizer.learning_rate.assign(schedule.lr)
        now = time.monotonic()
        timing = IntervalTiming(
            self.record.run_key["steps_per_eval"] * self.record.run_key["global_batch"], started - self.started,
            self.val_index.n_tiles, now - started,
        )
        self.record.validation_seconds += now - started
        self.record.seconds += now - self.started
        self.started = now
        self.record.eval_step = eval_step
        self.record.schedule = schedule
        key = self.record.run_key
        self.record.history.append(
            {
                "eval_step": eval_step,
                "epoch_fraction": eval_step * key["steps_per_eval"] * key["global_batch"] / key["n_train_tiles"],
                "train_loss": float((logs or {}).get("loss", math.nan)),
                "val_slide_auc": auc,
                "lr": lr_used,
                "val_loss": val_loss,
            }
        )
        self.best_weights = write_checkpoint(self.checkpoint, self.record, self.model, self.best_weights, improved)
        self.log(
            f"eval {eval_step}: train_loss {self.record.history[-1]['train_loss']:.4f} val_slide_auc {auc:.4f} "
            f"val_loss {val_loss:.4f} lr {lr_used:g}{' (best)' if improved else ''}"
        )
        left = evaluations_left(eval_step, schedule.since_best, self.settings.max_evals, self.settings.stop_patience)
        self.log(f"eval {eval_step}: {timing.progress_line(self.record.seconds, *left)}")
        if schedule.stop_reason is not None:
            self.model.stop_training = True
        if self.after_evaluation is not None:
            self.after_evaluation(eval_step)


def train(
    train_index: TileIndex,
    val_index: TileIndex,
    settings: TrainingSettings,
    run: RunSpec,
    outputs: TrainingOutputs,
    log: Callable[[str], None] = print,
    after_evaluation: Callable[[int], None] | None = None,
) -> dict:
    """Train (or resume) one classifier and write model.keras (best weights), history.tsv and metrics.json.

    `after_evaluation(eval_step)` is called after each checkpoint is written (tests use it to simulate a kill).
    """
    _check_indexes(train_index, val_index, settings, run, log)
    devices = select_devices(settings.device)
    policy = mixed_precision_policy(settings.mixed_precision, devices.has_gpu, devices.capability)
    determinism = apply_determinism(devices.backend, settings.deterministic)
    keras.utils.set_random_seed(run.run_seed)
    with dtype_policy(policy), data_parallel(devices) as n_replicas:
        facts = device_facts(devices, n_replicas, settings.deterministic)
        log(_device_line(facts, policy, determinism))
        run_key = _run_key(train_index, val_index, settings, run, policy, n_replicas)
        model = build_model(settings.input_px, bn_momentum=settings.bn_momentum)
        model.compile(optimizer=optimizer_for(policy, settings.learning_rate), loss="binary_crossentropy")
        # Built before the first step, the optimizer's variables exist when fit() traces its train function, which
        # is then traced once instead of twice (measured: 53 -> 30 s to the first step on CPU at 75 px).
        model.optimizer.build(model.trainable_variables)
        record, best_weights = resume_or_start(model, outputs.checkpoint, run_key, settings, log)
        log(
            f"training {run.trait} split {run.split}: {train_index.n_tiles} tiles of {train_index.n_slides} slides, "
            f"validation {val_index.n_tiles} tiles of {val_index.n_slides} slides; {n_replicas} replica(s), "
            f"global batch {run_key['global_batch']}, {run_key['steps_per_eval']} steps per evaluation, "
            f"policy {policy}, starting after eval {record.eval_step}"
        )
        if record.schedule.stop_reason is None:
            callback = EvaluationCallback(
                record, val_index, settings, outputs.checkpoint, best_weights, log, after_evaluation
            )
            _fit(model, train_index, settings, record, callback)
            record, best_weights = callback.record, callback.best_weights
        metrics = _write_outputs(record, best_weights, settings, outputs, (train_index, val_index), facts)
    remove_checkpoints(outputs.checkpoint)  # the outputs are complete: resuming is no longer needed
    return metrics


def _device_line(facts: dict, policy: str, determinism: str) -> str:
    """The log line naming where and how the training computes, with the library versions."""
    versions = ", ".join(f"{name} {version}" for name, version in facts["versions"].items())
    return (
        f"devices: {facts['device']} x{facts['n_devices']} {facts['device_names']} (compute capability "
        f"{facts['compute_capability']}), backend {facts['backend']}, policy {policy}, deterministic "
        f"{facts['deterministic']} ({determinism}); {versions}"
    )


def check_backend(settings: TrainingSettings) -> None:
    """Refuse to train when Keras runs another backend than training.backend (KERAS_BACKEND was set too late)."""
    if keras.backend.backend() != settings.backend:
        raise RuntimeError(
            f"training.backend is {settings.backend} but Keras runs {keras.backend.backend()}: set KERAS_BACKEND "
            "before keras is imported (workflow_scripts.learning.backend_setup.prepare_backend)"
        )


def _check_indexes(
    train_index: TileIndex, val_index: TileIndex, settings: TrainingSettings, run: RunSpec, log: Callable[[str], None]
) -> None:
    """Validate settings, refuse a run without training tiles and warn about one without validation tiles."""
    settings.validate()
    check_backend(settings)
    if train_index.n_tiles == 0:
        raise ValueError(
            f"trait {run.trait} split {run.split}: no training tiles (no labelled training slide passed QC)"
        )
    if val_index.n_tiles == 0:
        log(
            f"WARNING trait {run.trait} split {run.split}: no labelled validation slide (every validation patient is "
            "out of distribution for this trait); training runs to max_evals and keeps the last weights, and the "
            "ensemble ranks this model last"
        )


def _run_key(
    train_index: TileIndex, val_index: TileIndex, settings: TrainingSettings, run: RunSpec, policy: str, n_replicas: int
) -> dict:
    """What a checkpoint must share with the run resuming it, including the evaluation interval's geometry."""
    global_batch = settings.batch_size * n_replicas
    return {
        "seed": run.run_seed,
        "global_batch": global_batch,
        "steps_per_eval": max(1, round(train_index.n_tiles / (settings.evals_per_epoch * global_batch))),
        "n_train_tiles": train_index.n_tiles,
        "n_val_tiles": val_index.n_tiles,
        "trait": run.trait,
        "split": run.split,
        "policy": policy,
        "settings": trajectory_settings(settings),
    }


def _fit(
    model: keras.Model,
    train_index: TileIndex,
    settings: TrainingSettings,
    record: RunRecord,
    callback: EvaluationCallback,
) -> None:
    """Run Keras' fit from the record's evaluation step on, one 'epoch' per evaluation interval."""
    key = record.run_key
    batches = training_batches(
        train_index, key["global_batch"], settings.input_px, key["seed"],
        start_step=record.eval_step * key["steps_per_eval"], workers=settings.workers,
    )
    try:
        model.fit(
            batches, steps_per_epoch=key["steps_per_eval"], epochs=settings.max_evals,
            initial_epoch=record.eval_step, callbacks=[callback], verbose=0,
        )
    finally:
        batches.close()


def _write_outputs(
    record: RunRecord,
    best_weights: Path | None,
    settings: TrainingSettings,
    outputs: TrainingOutputs,
    indexes: tuple[TileIndex, TileIndex],
    facts: dict,
) -> dict:
    """Save the best weights as a float32 inference model, the history table and the metrics; return the metrics."""
    train_index, val_index = indexes
    if best_weights is None:
        raise RuntimeError(
            f"trait {record.run_key['trait']} split {record.run_key['split']}: training ended before any evaluation"
        )
    with dtype_policy("float32"):
        export = build_model(settings.input_px, bn_momentum=settings.bn_momentum)
    export.set_weights(read_arrays(best_weights, "model"))
    save_model(export, outputs.model)
    write_history(record.history, outputs.history)
    metrics = run_metrics(record, train_index, val_index, facts)
    n_gpus = record.run_key["global_batch"] // settings.batch_size if has_gpu() else 0
    metrics.update(measured_resources(
        record.seconds, record.eval_step * val_index.n_tiles, record.validation_seconds, n_gpus, keras.backend.backend()
    ))
    write_metrics_file(metrics, outputs.metrics)
    return metrics


def train_from_tables(
    labels_path: str | os.PathLike,
    splits_path: str | os.PathLike,
    qc_path: str | os.PathLike,
    store_paths: Sequence[str | os.PathLike],
    settings: TrainingSettings,
    run: RunSpec,
    outputs: TrainingOutputs,
    log: Callable[[str], None] = print,
) -> dict:
    """Select the trait/split's slides from the labels, splits and QC tables and train on their tile stores.

    The devices are checked first: a job given a GPU it cannot use fails before reading any table or tile.
    """
    settings.validate()
    check_backend(settings)
    select_devices(settings.device)
    labels = read_labels(labels_path)
    splits = read_splits(splits_path)
    qc = read_qc_table(qc_path)
    stores = {Path(path).stem: Path(path) for path in store_paths}
    train_slides, val_slides = select_slides(labels, splits, qc, run.trait, run.split, stores)
    train_index = build_tile_index(list(train_slides["store"]), list(train_slides["label"]))
    val_index = build_tile_index(
        list(val_slides["store"]), list(val_slides["label"]), settings.max_val_tiles_per_slide, seed=run.run_seed
    )
    return train(train_index, val_index, settings, run, outputs, log)
