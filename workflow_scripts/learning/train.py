"""Train one trait's classifier for one train/validation split with the paper's schedule, resumably.

Schedule (Levy-Jurgenson et al. 2020): Adam (lr 0.001) on binary cross-entropy; every 1/evals_per_epoch of an epoch
the validation slides are scored with `learning.slide_score` (a tile is positive when its probability is above
ensemble.threshold, 0.5 in the paper; a slide's score is its fraction of positive tiles) and the slide-level ROC AUC computed. The learning rate is multiplied by lr_factor after lr_patience
evaluations without improvement (like ReduceLROnPlateau); training stops after stop_patience evaluations without
improvement or at max_evals. The weights with the best validation slide AUC are kept; an equal AUC with a lower
validation tile loss also counts as an improvement (small validation sets saturate the AUC early).

When the validation slides hold only one class the AUC is undefined (history shows NaN); the schedule then monitors
minus the validation tile loss (binary cross-entropy of tile probabilities against their slide labels) instead, and
metrics.json says so in `selection_metric`. When a split has no labelled validation slide for the trait (small
cohorts: every validation patient out of distribution), training runs to max_evals and keeps the last weights
(`selection_metric` = last_weights); the ensemble ranks such a model last because its AUC is undefined.

An evaluation interval is steps_per_eval = round(n_train_tiles / (evals_per_epoch * global_batch)) steps (at least 1).
history.tsv has one row per evaluation: eval_step, epoch_fraction (training examples seen / training tiles),
train_loss (mean over the interval), val_slide_auc, lr (the rate used during the interval), and val_loss (mean
validation tile cross-entropy; an extra column). metrics.json's tiles_per_second is training examples per second of
wall time outside validation (it includes the one-off graph compilation, which dominates very short CPU runs).

Resumability: after every evaluation a checkpoint folder `checkpoint/eval_<k>/` is written atomically with the model
and optimizer variables, the best weights so far (hard link when unchanged), and the schedule state and history.
Because the data order is a pure function of (seed, batch number) (see `tiledata`), a run restarted from checkpoint k
continues exactly where the killed run was, and ends with the same history and weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import h5py
import keras
import numpy as np
import pandas as pd

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.learning.labels import read_labels, trait_slide_sets
from workflow_scripts.learning.model import build_model, save_model
from workflow_scripts.learning.slide_score import grouped_slide_scores, slide_auc
from workflow_scripts.learning.splits import read_splits
from workflow_scripts.slides.qc_table import passed_slides, read_qc_table
from workflow_scripts.learning.tiledata import TileIndex, build_tile_index, ordered_batches, training_batches

HISTORY_COLUMNS = ["eval_step", "epoch_fraction", "train_loss", "val_slide_auc", "lr", "val_loss"]
MIXED_POLICIES = {"mixed_float16", "mixed_bfloat16"}
CHECKPOINT_PREFIX = "eval_"
JOB_RESOURCE_KEYS = ("threads", "runtime_min", "mem_mb", "gpus")  # config `training` keys read by the rules, not here


@dataclass(frozen=True)
class TrainingSettings:
    """Hyper-parameters of one training (config key `training`)."""

    input_px: int = 512
    batch_size: int = 18  # per accelerator; the global batch is batch_size * number of GPUs
    learning_rate: float = 0.001
    evals_per_epoch: int = 16
    lr_patience: int = 10
    lr_factor: float = 0.1
    stop_patience: int = 30
    max_evals: int = 1000
    mixed_precision: bool | str = False  # True = mixed_float16; only applied when a GPU is present
    bn_momentum: float | None = None  # None keeps Keras' 0.99
    workers: int = 4  # decoding threads
    max_val_tiles_per_slide: int | None = None  # None scores every validation tile at each evaluation
    predict_batch_size: int = 64  # per accelerator, for validation scoring and prediction
    threshold: float = 0.5  # tile call threshold of the slide score (config ensemble.threshold, shared with evaluation)

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> TrainingSettings:
        """Build settings from the config mapping, rejecting unknown keys so typos do not pass silently."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(config) - known - set(JOB_RESOURCE_KEYS))
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        settings = cls(**{key: value for key, value in config.items() if key in known})
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise on values the schedule cannot run with."""
        positive = (
            "input_px", "batch_size", "evals_per_epoch", "lr_patience", "stop_patience", "max_evals", "workers",
            "predict_batch_size",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"training.{name} must be >= 1, got {getattr(self, name)}")
        if self.input_px < 75:
            raise ValueError(f"training.input_px must be >= 75 for Inception v3, got {self.input_px}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"training.lr_factor must be in (0, 1), got {self.lr_factor}")
        if self.learning_rate <= 0:
            raise ValueError(f"training.learning_rate must be > 0, got {self.learning_rate}")
        mixed_precision_policy(self.mixed_precision, has_gpu=True)


@dataclass(frozen=True)
class TrainingOutputs:
    """Where one training writes its results."""

    model: Path
    history: Path
    metrics: Path
    checkpoint: Path

    @classmethod
    def beside(cls, model: str | os.PathLike, history: str | os.PathLike, metrics: str | os.PathLike) -> TrainingOutputs:
        """Outputs with the checkpoint folder next to the model file."""
        model = Path(model)
        return cls(model, Path(history), Path(metrics), model.parent / "checkpoint")


@dataclass
class ScheduleState:
    """What the plateau schedule remembers between evaluations."""

    lr: float
    best_score: float = -math.inf
    best_loss: float = math.inf  # validation tile loss at the best score: breaks ties between equal scores
    best_eval: int = 0
    since_best: int = 0
    since_lr_change: int = 0
    stop_reason: str | None = None


def mixed_precision_policy(mixed_precision: bool | str, has_gpu: bool) -> str:
    """The Keras dtype policy to train with: mixed only when configured and a GPU is present."""
    if mixed_precision in (False, None, "", "float32", "none"):
        return "float32"
    policy = "mixed_float16" if mixed_precision is True else str(mixed_precision)
    if policy not in MIXED_POLICIES:
        raise ValueError(f"training.mixed_precision must be true/false or one of {sorted(MIXED_POLICIES)}, got {mixed_precision!r}")
    return policy if has_gpu else "float32"


def update_schedule(
    state: ScheduleState, score: float, eval_step: int, settings: TrainingSettings, loss: float = math.inf
) -> tuple[ScheduleState, bool]:
    """Advance the plateau schedule by one evaluation; return the new state and whether the score improved.

    An equal score with a lower validation `loss` counts as an improvement: with a handful of validation slides
    the slide AUC saturates at 1.0 early, and the loss then tells a converging model from a lucky early one.
    """
    loss = math.inf if math.isnan(loss) else loss
    improved = score > state.best_score or (score == state.best_score and loss < state.best_loss)
    if improved:
        state = replace(state, best_score=score, best_loss=loss, best_eval=eval_step, since_best=0, since_lr_change=0)
    else:
        state = replace(state, since_best=state.since_best + 1, since_lr_change=state.since_lr_change + 1)
        if state.since_lr_change >= settings.lr_patience:
            state = replace(state, lr=state.lr * settings.lr_factor, since_lr_change=0)
    if state.since_best >= settings.stop_patience:
        state = replace(state, stop_reason="no_improvement")
    elif eval_step >= settings.max_evals:
        state = replace(state, stop_reason="max_evals")
    return state, improved


def tile_loss(tile_probabilities: np.ndarray, tile_labels: np.ndarray) -> float:
    """Mean binary cross-entropy of tile probabilities against the labels of their slides."""
    p = np.clip(np.asarray(tile_probabilities, np.float64).reshape(-1), 1e-7, 1 - 1e-7)
    y = np.asarray(tile_labels, np.float64).reshape(-1)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def select_slides(
    labels: pd.DataFrame, splits: pd.DataFrame, qc: pd.DataFrame, trait: str, split: int, stores: Mapping[str, Path]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and validation slides (slide_id, patient_id, label, store) of a trait and split: labelled 0/1, QC pass, tiles > 0."""
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
        raise ValueError(f"trait {trait} split {split}: training slides hold a single class {sorted(set(train['label']))}")
    return train, val


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Use a Keras dtype policy inside the block and restore the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def data_parallel() -> Iterator[int]:
    """Replicate the model on every visible GPU (MirroredStrategy under TensorFlow, DataParallel under JAX); yield the replica count."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if len(gpus) > 1:
            strategy = tf.distribute.MirroredStrategy()
            with strategy.scope():
                yield strategy.num_replicas_in_sync
            return
        yield 1
        return
    if backend == "jax":
        gpus = keras.distribution.list_devices("gpu")
        if len(gpus) > 1:
            previous = keras.distribution.distribution()
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=gpus))
            try:
                yield len(gpus)
            finally:
                keras.distribution.set_distribution(previous)
            return
        yield 1
        return
    raise RuntimeError(f"unsupported Keras backend {backend!r}: use tensorflow or jax")


def has_gpu() -> bool:
    """Whether the active backend sees a GPU."""
    return bool(keras.distribution.list_devices("gpu")) if keras.backend.backend() == "jax" else _tf_has_gpu()


def _tf_has_gpu() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def write_arrays(path: Path, groups: Mapping[str, Sequence[np.ndarray]]) -> None:
    """Write lists of arrays to HDF5 (group/00000, ...), without timestamps, so identical weights give identical files."""
    with h5py.File(path, "w") as file:
        for name, arrays in groups.items():
            group = file.create_group(name)
            for position, array in enumerate(arrays):
                group.create_dataset(f"{position:05d}", data=np.asarray(array), track_times=False)


def read_arrays(path: Path, group: str) -> list[np.ndarray]:
    """Read back one group of arrays written by `write_arrays`, in order."""
    with h5py.File(path, "r") as file:
        if group not in file:
            raise KeyError(f"{path}: no group {group!r}")
        return [file[group][key][...] for key in sorted(file[group])]


def optimizer_arrays(model: keras.Model) -> list[np.ndarray]:
    """Current values of the optimizer's variables (iterations, Adam moments, loss scale)."""
    return [keras.ops.convert_to_numpy(variable) for variable in model.optimizer.variables]


def restore_optimizer(model: keras.Model, arrays: Sequence[np.ndarray], source: Path) -> None:
    """Build the optimizer and load saved variable values into it."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    variables = model.optimizer.variables
    if len(variables) != len(arrays):
        raise ValueError(f"{source}: checkpoint has {len(arrays)} optimizer variables, the optimizer {len(variables)}")
    for variable, value in zip(variables, arrays):
        variable.assign(value)


def latest_checkpoint(folder: Path) -> Path | None:
    """The most recent complete checkpoint in `folder` (folders appear only when complete), or None."""
    if not folder.is_dir():
        return None
    done = sorted(path for path in folder.iterdir() if path.name.startswith(CHECKPOINT_PREFIX) and path.is_dir())
    return done[-1] if done else None


@dataclass
class RunRecord:
    """Everything a checkpoint stores besides arrays."""

    run_key: dict
    eval_step: int
    schedule: ScheduleState
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    validation_seconds: float = 0.0

    def to_json(self) -> str:
        """Serialise for state.json."""
        return json.dumps({**asdict(self), "schedule": asdict(self.schedule)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        """Parse state.json."""
        data = json.loads(text)
        data["schedule"] = ScheduleState(**data["schedule"])
        return cls(**data)


def write_checkpoint(folder: Path, record: RunRecord, model: keras.Model, best_weights: Path | None, is_best: bool) -> Path:
    """Write checkpoint eval_<k> atomically, then delete older ones; return the best-weights file inside it."""
    target = folder / f"{CHECKPOINT_PREFIX}{record.eval_step:06d}"
    with atomic_path(target) as temporary:
        temporary.mkdir()
        write_arrays(temporary / "state.h5", {"model": model.get_weights(), "optimizer": optimizer_arrays(model)})
        # best.h5 holds the best weights in group "model": this checkpoint's own state when it is the best so far
        _link_or_copy(temporary / "state.h5" if is_best else best_weights, temporary / "best.h5")
        (temporary / "state.json").write_text(record.to_json())
    for old in folder.iterdir():
        if old.name.startswith(CHECKPOINT_PREFIX) and old.name < target.name:
            shutil.rmtree(old, ignore_errors=True)
    return target / "best.h5"


def _link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link an unchanged file into the new checkpoint (free), copying where links are not supported."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def predict_probabilities(model: keras.Model, index: TileIndex, settings: TrainingSettings, n_replicas: int) -> np.ndarray:
    """Tile probabilities of every indexed tile, in index order."""
    if index.n_tiles == 0:
        return np.zeros(0, np.float32)
    global_batch = settings.predict_batch_size * n_replicas
    n_batches = math.ceil(index.n_tiles / global_batch)
    batches = ((batch,) for batch in ordered_batches(index, global_batch, settings.input_px, workers=settings.workers))
    probabilities = model.predict(batches, steps=n_batches, verbose=0)
    return np.asarray(probabilities, np.float32).reshape(-1)[: index.n_tiles]


class EvaluationCallback(keras.callbacks.Callback):
    """At the end of each Keras 'epoch' (= one evaluation interval): score validation slides, run the schedule, checkpoint."""

    def __init__(
        self,
        record: RunRecord,
        val_index: TileIndex,
        settings: TrainingSettings,
        global_batch: int,
        steps_per_eval: int,
        n_train_tiles: int,
        checkpoint: Path,
        best_weights: Path | None,
        log: Callable[[str], None],
        after_evaluation: Callable[[int], None] | None,
    ) -> None:
        super().__init__()
        self.record = record
        self.val_index = val_index
        self.settings = settings
        self.global_batch = global_batch
        self.steps_per_eval = steps_per_eval
        self.n_train_tiles = n_train_tiles
        self.checkpoint = checkpoint
        self.best_weights = best_weights
        self.log = log
        self.after_evaluation = after_evaluation
        self.scored_slides = val_index.tiles_per_store() > 0
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Evaluate after eval interval `epoch` (0-based) and decide on lr and stopping."""
        eval_step = epoch + 1
        started = time.monotonic()
        if self.val_index.n_tiles == 0:
            auc = val_loss = math.nan
            score = float(eval_step)  # no validation slides: every evaluation counts as the best, the last weights win
        else:
            probabilities = predict_probabilities(
                self.model, self.val_index, self.settings, self.global_batch // self.settings.batch_size
            )
            scores = grouped_slide_scores(probabilities, self.val_index.tiles_per_store(), self.settings.threshold)
            auc = slide_auc(self.val_index.slide_labels[self.scored_slides], scores[self.scored_slides])
            val_loss = tile_loss(probabilities, self.val_index.labels) if len(probabilities) else math.nan
            score = auc if not math.isnan(auc) else (-val_loss if not math.isnan(val_loss) else 0.0)
        lr_used = self.record.schedule.lr
        schedule, improved = update_schedule(self.record.schedule, score, eval_step, self.settings, val_loss)
        if schedule.lr != lr_used:
            self.model.optimizer.learning_rate.assign(schedule.lr)
        now = time.monotonic()
        self.record.validation_seconds += now - started
        self.record.seconds += now - self.started
        self.started = now
        self.record.eval_step = eval_step
        self.record.schedule = schedule
        self.record.history.append(
            {
                "eval_step": eval_step,
                "epoch_fraction": eval_step * self.steps_per_eval * self.global_batch / self.n_train_tiles,
                "train_loss": float((logs or {}).get("loss", math.nan)),
                "val_slide_auc": auc,
                "lr": lr_used,
                "val_loss": val_loss,
            }
        )
        self.best_weights = write_checkpoint(
            self.checkpoint, self.record, self.model, self.best_weights, improved
        )
        self.log(
            f"eval {eval_step}: train_loss {self.record.history[-1]['train_loss']:.4f} val_slide_auc {auc:.4f} "
            f"val_loss {val_loss:.4f} lr {lr_used:g}{' (best)' if improved else ''}"
        )
        if schedule.stop_reason is not None:
            self.model.stop_training = True
        if self.after_evaluation is not None:
            self.after_evaluation(eval_step)


def train(
    train_index: TileIndex,
    val_index: TileIndex,
    settings: TrainingSettings,
    seed: int,
    outputs: TrainingOutputs,
    trait: str = "",
    split: int = 0,
    log: Callable[[str], None] = print,
    after_evaluation: Callable[[int], None] | None = None,
) -> dict:
    """Train (or resume) one classifier and write model.keras (best weights), history.tsv and metrics.json.

    `after_evaluation(eval_step)` is called after each checkpoint is written (tests use it to simulate a kill).
    """
    settings.validate()
    if train_index.n_tiles == 0:
        raise ValueError(f"trait {trait} split {split}: no training tiles (no labelled training slide passed QC)")
    if val_index.n_tiles == 0:
        log(
            f"WARNING trait {trait} split {split}: no labelled validation slide (every validation patient is out of "
            "distribution for this trait); training runs to max_evals and keeps the last weights, and the ensemble "
            "ranks this model last"
        )
    run_seed = seed + split
    policy = mixed_precision_policy(settings.mixed_precision, has_gpu())
    keras.utils.set_random_seed(run_seed)
    with dtype_policy(policy), data_parallel() as n_replicas:
        global_batch = settings.batch_size * n_replicas
        steps_per_eval = max(1, round(train_index.n_tiles / (settings.evals_per_epoch * global_batch)))
        run_key = {
            "seed": run_seed,
            "global_batch": global_batch,
            "steps_per_eval": steps_per_eval,
            "n_train_tiles": train_index.n_tiles,
            "n_val_tiles": val_index.n_tiles,
            "trait": trait,
            "split": split,
            "policy": policy,
            "settings": trajectory_settings(settings),
        }
        model = build_model(settings.input_px, bn_momentum=settings.bn_momentum)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate), loss="binary_crossentropy")
        # Built before the first step, the optimizer's variables exist when fit() traces its train function, which
        # is then traced once instead of twice (measured: 53 -> 30 s to the first step on CPU at 75 px).
        model.optimizer.build(model.trainable_variables)
        record, best_weights = _resume_or_start(model, outputs.checkpoint, run_key, settings, log)
        log(
            f"training {trait} split {split}: {train_index.n_tiles} tiles of {train_index.n_slides} slides, "
            f"validation {val_index.n_tiles} tiles of {val_index.n_slides} slides; {n_replicas} replica(s), global batch "
            f"{global_batch}, {steps_per_eval} steps per evaluation, policy {policy}, starting after eval {record.eval_step}"
        )
        if record.schedule.stop_reason is None:
            callback = EvaluationCallback(
                record, val_index, settings, global_batch, steps_per_eval, train_index.n_tiles,
                outputs.checkpoint, best_weights, log, after_evaluation,
            )
            batches = training_batches(
                train_index, global_batch, settings.input_px, run_seed,
                start_step=record.eval_step * steps_per_eval, workers=settings.workers,
            )
            try:
                model.fit(
                    batches, steps_per_epoch=steps_per_eval, epochs=settings.max_evals,
                    initial_epoch=record.eval_step, callbacks=[callback], verbose=0,
                )
            finally:
                batches.close()
            record, best_weights = callback.record, callback.best_weights
    return _write_outputs(record, best_weights, settings, outputs, train_index, val_index, trait, split, policy)


def trajectory_settings(settings: TrainingSettings) -> dict:
    """The settings a checkpoint must share with the run resuming it (max_evals may grow; worker counts do not matter)."""
    kept = asdict(settings)
    for free in ("max_evals", "workers", "predict_batch_size"):
        kept.pop(free)
    return kept


def _resume_or_start(
    model: keras.Model, checkpoint: Path, run_key: dict, settings: TrainingSettings, log: Callable[[str], None]
) -> tuple[RunRecord, Path | None]:
    """Load the latest checkpoint into model and optimizer, or start a fresh record."""
    latest = latest_checkpoint(checkpoint)
    if latest is None:
        checkpoint.mkdir(parents=True, exist_ok=True)
        return RunRecord(run_key=run_key, eval_step=0, schedule=ScheduleState(lr=settings.learning_rate)), None
    record = RunRecord.from_json((latest / "state.json").read_text())
    if record.run_key != run_key:
        raise ValueError(
            f"{latest}: checkpoint belongs to a different run {record.run_key}, this run is {run_key}; "
            "delete the checkpoint folder to start over"
        )
    if record.schedule.stop_reason == "max_evals" and record.eval_step < settings.max_evals:
        record.schedule = replace(record.schedule, stop_reason=None)  # max_evals was raised: train on
    model.set_weights(read_arrays(latest / "state.h5", "model"))
    restore_optimizer(model, read_arrays(latest / "state.h5", "optimizer"), latest)
    model.optimizer.learning_rate.assign(record.schedule.lr)
    log(f"resuming from {latest} (eval {record.eval_step}, best {record.schedule.best_score:.4f} at eval {record.schedule.best_eval})")
    return record, latest / "best.h5"


def _write_outputs(
    record: RunRecord,
    best_weights: Path | None,
    settings: TrainingSettings,
    outputs: TrainingOutputs,
    train_index: TileIndex,
    val_index: TileIndex,
    trait: str,
    split: int,
    policy: str,
) -> dict:
    """Save the best weights as a float32 inference model, the history table and the metrics."""
    if best_weights is None:
        raise RuntimeError(f"trait {trait} split {split}: training ended before any evaluation")
    with dtype_policy("float32"):
        export = build_model(settings.input_px, bn_momentum=settings.bn_momentum)
    export.set_weights(read_arrays(best_weights, "model"))
    save_model(export, outputs.model)
    history = pd.DataFrame(record.history, columns=HISTORY_COLUMNS)
    with atomic_path(outputs.history) as temporary:
        history.to_csv(temporary, sep="\t", index=False, lineterminator="\n", float_format="%.6g")
    best_row = history[history["eval_step"] == record.schedule.best_eval].iloc[0]
    training_seconds = max(record.seconds - record.validation_seconds, 1e-9)
    n_trained = record.eval_step * record.run_key["steps_per_eval"] * record.run_key["global_batch"]
    metrics = {
        "trait": trait,
        "split": split,
        "best_val_slide_auc": None if math.isnan(best_row["val_slide_auc"]) else float(best_row["val_slide_auc"]),
        "best_eval_step": int(record.schedule.best_eval),
        "selection_metric": (
            "last_weights" if val_index.n_tiles == 0
            else "val_loss" if math.isnan(best_row["val_slide_auc"]) else "val_slide_auc"
        ),
        "stop_reason": record.schedule.stop_reason,
        "n_evals": int(record.eval_step),
        "n_train_tiles": train_index.n_tiles,
        "n_train_slides": train_index.n_slides,
        "n_val_tiles": val_index.n_tiles,
        "n_val_slides": val_index.n_slides,
        "seconds": round(record.seconds, 3),
        "tiles_per_second": round(n_trained / training_seconds, 3),
        "dtype_policy": policy,
    }
    with atomic_path(outputs.metrics) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def train_from_tables(
    labels_path: str | os.PathLike,
    splits_path: str | os.PathLike,
    qc_path: str | os.PathLike,
    store_paths: Sequence[str | os.PathLike],
    settings: TrainingSettings,
    seed: int,
    trait: str,
    split: int,
    outputs: TrainingOutputs,
    log: Callable[[str], None] = print,
) -> dict:
    """Select the trait/split's slides from the labels, splits and QC tables and train on their tile stores."""
    labels = read_labels(labels_path)
    splits = read_splits(splits_path)
    qc = read_qc_table(qc_path)
    stores = {Path(path).stem: Path(path) for path in store_paths}
    train_slides, val_slides = select_slides(labels, splits, qc, trait, split, stores)
    train_index = build_tile_index(list(train_slides["store"]), list(train_slides["label"]))
    val_index = build_tile_index(
        list(val_slides["store"]), list(val_slides["label"]), settings.max_val_tiles_per_slide, seed=seed + split
    )
    return train(train_index, val_index, settings, seed, outputs, trait, split, log)
