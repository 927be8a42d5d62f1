"""Checkpoints of a training, so a killed job resumes exactly where it stopped.

Folder contract: after every evaluation k the training writes `checkpoint/eval_<k>/` (k zero-padded to 6 digits)
atomically (built under a temporary name, renamed when complete, so every folder present is complete), then
deletes the older ones: the disk holds only what resume needs, the latest state and the best weights (at 512 px
Inception v3, ~90 MB of weights: state.h5 ~3x that with the Adam moments, best.h5 1x). When a training has written
its outputs it removes the whole folder (`remove_checkpoints`). It holds:

- state.h5: group `model` (model.get_weights(), in order), group `optimizer` (the optimizer's variables:
  iterations, Adam moments, loss scale) and, only for models with random layers (a head's Dropout), group `random`
  (the seed generators' states, which get_weights leaves out), datasets named 00000, 00001, ... written without
  timestamps;
- best.h5: group `model` with the best weights so far (written anew when this evaluation is the best, else a hard
  link to the previous folder's best.h5, which costs no disk; checkpoints of older versions may link state.h5);
- state.json: the `RunRecord` (run key, eval step, schedule state, history rows, wall and validation seconds).

Because the data order is a pure function of (seed, batch number) (see `tiledata`), a run restarted from checkpoint
k continues exactly where the killed run was, and ends with the same history and weights. A checkpoint whose run key
(seed, batch, steps per evaluation, tile counts, trait, split, policy, trajectory settings) differs is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import h5py
import keras
import numpy as np

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.learning.schedule import ScheduleState
from workflow_scripts.learning.settings import TrainingSettings

CHECKPOINT_PREFIX = "eval_"


def write_arrays(path: Path, groups: Mapping[str, Sequence[np.ndarray]]) -> None:
    """Write lists of arrays to HDF5 (group/00000, ...) without timestamps: identical weights give identical files."""
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


def random_state_variables(model: keras.Model) -> list:
    """The model's seed-generator states (Dropout's): non-trainable variables that `get_weights` leaves out."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.non_trainable_variables if id(variable) not in weights]


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


def write_checkpoint(
    folder: Path, record: RunRecord, model: keras.Model, best_weights: Path | None, is_best: bool
) -> Path:
    """Write checkpoint eval_<k> atomically, then delete older ones; return the best-weights file inside it."""
    target = folder / f"{CHECKPOINT_PREFIX}{record.eval_step:06d}"
    weights = model.get_weights()
    state = {"model": weights, "optimizer": optimizer_arrays(model)}
    seeds = random_state_variables(model)
    if seeds:  # only then: the state of a model without random layers is written as before
        state["random"] = [keras.ops.convert_to_numpy(variable) for variable in seeds]
    with atomic_path(target) as temporary:
        temporary.mkdir()
        write_arrays(temporary / "state.h5", state)
        if is_best:  # the weights alone: the optimizer state of the best evaluation is never needed again
            write_arrays(temporary / "best.h5", {"model": weights})
        else:
            _link_or_copy(best_weights, temporary / "best.h5")
        (temporary / "state.json").write_text(record.to_json())
    for old in folder.iterdir():
        if old.name.startswith(CHECKPOINT_PREFIX) and old.name < target.name:
            shutil.rmtree(old, ignore_errors=True)
    return target / "best.h5"


def remove_checkpoints(folder: Path) -> None:
    """Delete a finished training's checkpoint folder: its outputs are written, nothing is left to resume."""
    shutil.rmtree(folder, ignore_errors=True)


def _link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link an unchanged file into the new checkpoint (free), copying where links are not supported."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def resume_or_start(
    model: keras.Model, checkpoint: Path, run_key: dict, settings: TrainingSettings, log: Callable[[str], None]
) -> tuple[RunRecord, Path | None]:
    """Load the latest checkpoint into model and optimizer, or start a fresh record; return it and the best weights."""
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
    seeds = random_state_variables(model)
    for variable, value in zip(seeds, read_arrays(latest / "state.h5", "random") if seeds else []):
        variable.assign(value)
    model.optimizer.learning_rate.assign(record.schedule.lr)
    log(
        f"resuming from {latest} (eval {record.eval_step}, best {record.schedule.best_score:.4f} "
        f"at eval {record.schedule.best_eval})"
    )
    return record, latest / "best.h5"
