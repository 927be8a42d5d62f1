"""Train one trait's classifier for one train/validation split with the paper's schedule, resumably; both families.

This module runs the training: it picks the trait/split's slides, builds and compiles the model, feeds Keras the
deterministic batches of its family's feed (`feeds`: Inception v3 on tiles of `tiledata`, or a head of `heads` on
features of `featuredata`), and at the end of every evaluation interval (one Keras 'epoch') lets `evaluation` score
the validation slides, advance the schedule (`schedule`: what is monitored, lr decay, early stopping, best weights)
and write a checkpoint (`checkpoint`: folder contract and exact resume). At the end it saves the best weights as a
float32 model.keras and writes history.tsv and metrics.json (`run_outputs`: their columns and keys; `throughput`:
the images/s, GPU-seconds and peak memory keys), then removes the checkpoint folder. Each evaluation logs its
training and validation images/s, the elapsed time and the estimated time left (`throughput.progress_line`).

An evaluation interval is steps_per_eval = round(n_train_tiles / (evals_per_epoch * global_batch)) steps (at least 1).
`train` and `train_from_tables` train Inception v3; `train_head` and `train_head_from_tables` a head on features
(slides keyed by feature store stem = slide_id, QC table features/qc.tsv).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import keras
import pandas as pd

from workflow_scripts.learning.checkpoint import RunRecord, read_arrays, remove_checkpoints, resume_or_start
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
from workflow_scripts.learning.evaluation import EvaluationCallback
from workflow_scripts.learning.featuredata import FeatureIndex, build_feature_index
from workflow_scripts.learning.feeds import FeatureFeed, TileFeed
from workflow_scripts.learning.heads import HeadSettings
from workflow_scripts.learning.labels import read_labels, trait_slide_sets
from workflow_scripts.learning.model import save_model
from workflow_scripts.learning.run_outputs import run_metrics, write_history, write_metrics_file
from workflow_scripts.learning.settings import RunSpec, TrainingOutputs, TrainingSettings, trajectory_settings
from workflow_scripts.learning.splits import read_splits
from workflow_scripts.learning.throughput import measured_resources
from workflow_scripts.learning.tiledata import TileIndex, build_tile_index
from workflow_scripts.slides.qc_table import passed_slides, read_qc_table

Feed = TileFeed | FeatureFeed


def select_slides(
    labels: pd.DataFrame,
    splits: pd.DataFrame,
    qc: pd.DataFrame,
    trait: str,
    split: int,
    stores: Mapping[str, Path],
    kind: str = "tile",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and validation slides (slide_id, patient_id, label, store) of a trait and split.

    Kept: labelled 0/1, QC pass, more than 0 tiles.
    """
    sets = trait_slide_sets(labels, splits, qc, trait, split)
    n_tiles = passed_slides(qc).set_index("slide_id")["n_tiles"]
    sets = sets[sets["label"].notna() & (sets["slide_id"].map(n_tiles).fillna(0) > 0)].copy()
    missing = sorted(set(sets.loc[sets["role"].isin(["train", "val"]), "slide_id"]) - set(stores))
    if missing:
        raise FileNotFoundError(f"no {kind} store given for slide(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
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


def train(
    train_index: TileIndex,
    val_index: TileIndex,
    settings: TrainingSettings,
    run: RunSpec,
    outputs: TrainingOutputs,
    log: Callable[[str], None] = print,
    after_evaluation: Callable[[int], None] | None = None,
) -> dict:
    """Train (or resume) one Inception v3 classifier on tiles; write model.keras, history.tsv and metrics.json.

    `after_evaluation(eval_step)` is called after each checkpoint is written (tests use it to simulate a kill).
    """
    return train_model(TileFeed(train_index, val_index, settings), settings, run, outputs, log, after_evaluation)


def train_head(
    train_index: FeatureIndex,
    val_index: FeatureIndex,
    settings: TrainingSettings,
    head: HeadSettings,
    run: RunSpec,
    outputs: TrainingOutputs,
    log: Callable[[str], None] = print,
    after_evaluation: Callable[[int], None] | None = None,
) -> dict:
    """Train (or resume) one head on tile features; same outputs as `train`.

    The schedule comes from `settings` (see `heads.head_training_settings`); batch size and learning rate are the
    head's, whatever `settings` holds.
    Size: 8 parameters: `train`'s seven and the head's settings.
    """
    settings = replace(settings, batch_size=head.batch_size, learning_rate=head.learning_rate)
    return train_model(FeatureFeed(train_index, val_index, head), settings, run, outputs, log, after_evaluation)


def train_model(
    feed: Feed,
    settings: TrainingSettings,
    run: RunSpec,
    outputs: TrainingOutputs,
    log: Callable[[str], None] = print,
    after_evaluation: Callable[[int], None] | None = None,
) -> dict:
    """The one training loop: the feed's model on the feed's batches with the paper's schedule, resumably."""
    train_index, val_index = feed.train_index, feed.val_index
    _check_indexes(train_index, val_index, settings, run, log)
    devices = select_devices(settings.device)
    policy = mixed_precision_policy(settings.mixed_precision, devices.has_gpu, devices.capability)
    determinism = apply_determinism(devices.backend, settings.deterministic)
    keras.utils.set_random_seed(run.run_seed)
    with dtype_policy(policy), data_parallel(devices) as n_replicas:
        facts = device_facts(devices, n_replicas, settings.deterministic)
        log(_device_line(facts, policy, determinism))
        run_key = _run_key(feed, settings, run, policy, n_replicas)
        model = feed.build_model()
        model.compile(optimizer=optimizer_for(policy, settings.learning_rate), loss="binary_crossentropy")
        # Built before the first step, the optimizer's variables exist when fit() traces its train function, which
        # is then traced once instead of twice (measured: 53 -> 30 s to the first step on CPU at 75 px).
        model.optimizer.build(model.trainable_variables)
        record, best_weights = resume_or_start(model, outputs.checkpoint, run_key, settings, log)
        log(
            f"training {run.trait} split {run.split} ({feed.family}): {train_index.n_tiles} tiles of "
            f"{train_index.n_slides} slides, validation {val_index.n_tiles} tiles of {val_index.n_slides} slides; "
            f"{n_replicas} replica(s), global batch {run_key['global_batch']}, {run_key['steps_per_eval']} steps per "
            f"evaluation, policy {policy}, starting after eval {record.eval_step}"
        )
        if record.schedule.stop_reason is None:
            callback = EvaluationCallback(
                record, feed, settings, outputs.checkpoint, best_weights, log, after_evaluation
            )
            _fit(model, feed, settings, record, callback)
            record, best_weights = callback.record, callback.best_weights
        metrics = _write_outputs(record, best_weights, settings, outputs, feed, facts)
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


def _run_key(feed: Feed, settings: TrainingSettings, run: RunSpec, policy: str, n_replicas: int) -> dict:
    """What a checkpoint must share with the run resuming it, including the evaluation interval's geometry."""
    global_batch = settings.batch_size * n_replicas
    return {
        "seed": run.run_seed,
        "global_batch": global_batch,
        "steps_per_eval": max(1, round(feed.train_index.n_tiles / (settings.evals_per_epoch * global_batch))),
        "n_train_tiles": feed.train_index.n_tiles,
        "n_val_tiles": feed.val_index.n_tiles,
        "trait": run.trait,
        "split": run.split,
        "policy": policy,
        "settings": trajectory_settings(settings),
    } | feed.run_key()


def _fit(
    model: keras.Model, feed: Feed, settings: TrainingSettings, record: RunRecord, callback: EvaluationCallback
) -> None:
    """Run Keras' fit from the record's evaluation step on, one 'epoch' per evaluation interval."""
    key = record.run_key
    batches = feed.training_batches(key["global_batch"], key["seed"], record.eval_step * key["steps_per_eval"])
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
    feed: Feed,
    facts: dict,
) -> dict:
    """Save the best weights as a float32 inference model, the history table and the metrics; return the metrics."""
    if best_weights is None:
        raise RuntimeError(
            f"trait {record.run_key['trait']} split {record.run_key['split']}: training ended before any evaluation"
        )
    with dtype_policy("float32"):
        export = feed.build_model()
    export.set_weights(read_arrays(best_weights, "model"))
    save_model(export, outputs.model)
    write_history(record.history, outputs.history)
    metrics = run_metrics(record, feed.train_index, feed.val_index, facts) | feed.metrics()
    n_gpus = record.run_key["global_batch"] // settings.batch_size if has_gpu() else 0
    metrics.update(measured_resources(
        record.seconds, record.eval_step * feed.val_index.n_tiles, record.validation_seconds, n_gpus,
        keras.backend.backend(),
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
    slides = _slides_from_tables(labels_path, splits_path, qc_path, store_paths, settings, run)
    return train(*_indexes(build_tile_index, slides, settings, run), settings, run, outputs, log)


def train_head_from_tables(
    labels_path: str | os.PathLike,
    splits_path: str | os.PathLike,
    qc_path: str | os.PathLike,
    feature_paths: Sequence[str | os.PathLike],
    settings: TrainingSettings,
    head: HeadSettings,
    run: RunSpec,
    outputs: TrainingOutputs,
    log: Callable[[str], None] = print,
) -> dict:
    """Select the trait/split's slides as `train_from_tables` does and train a head on their feature stores.

    `qc_path` is the features' QC table (features/qc.tsv: feature-failed slides fail, n_tiles = embedded tiles).
    Size: 9 parameters: `train_from_tables`' eight and the head's settings.
    """
    head.validate()
    slides = _slides_from_tables(labels_path, splits_path, qc_path, feature_paths, settings, run, kind="feature")
    return train_head(*_indexes(build_feature_index, slides, settings, run), settings, head, run, outputs, log)


def _indexes(
    build: Callable, slides: tuple[pd.DataFrame, pd.DataFrame], settings: TrainingSettings, run: RunSpec
) -> tuple[TileIndex, TileIndex]:
    """The training index (every tile) and the validation index (max_val_tiles_per_slide, seeded) of the slides."""
    train_slides, val_slides = slides
    train_index = build(list(train_slides["store"]), list(train_slides["label"]))
    val_index = build(
        list(val_slides["store"]), list(val_slides["label"]), settings.max_val_tiles_per_slide, seed=run.run_seed
    )
    return train_index, val_index


def _slides_from_tables(
    labels_path: str | os.PathLike,
    splits_path: str | os.PathLike,
    qc_path: str | os.PathLike,
    store_paths: Sequence[str | os.PathLike],
    settings: TrainingSettings,
    run: RunSpec,
    kind: str = "tile",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check the settings and devices, read the tables and select the training and validation slides (`select_slides`).

    The devices are checked first: a job given a GPU it cannot use fails before reading any table or store.
    """
    settings.validate()
    check_backend(settings)
    select_devices(settings.device)
    labels = read_labels(labels_path)
    splits = read_splits(splits_path)
    qc = read_qc_table(qc_path)
    stores = {Path(path).stem: Path(path) for path in store_paths}
    return select_slides(labels, splits, qc, run.trait, run.split, stores, kind)
