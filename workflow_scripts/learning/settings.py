"""What one training is told: its hyper-parameters (config key `training`), its run identity and its output paths."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from workflow_scripts.common.seeds import stable_seed
from workflow_scripts.learning.backend_setup import BACKENDS, DEVICES, check_choice

# config `training` keys read by the rules, not here (conda_env picks the rules' software environment)
JOB_RESOURCE_KEYS = ("threads", "runtime_min", "mem_mb", "gpus", "conda_env")
PRECISION_NAMES = ("auto", "mixed_float16", "mixed_bfloat16")  # training.mixed_precision: these or true/false


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
    mixed_precision: bool | str = "auto"  # auto: by GPU compute capability (devices.auto_policy); never on CPU
    bn_momentum: float | None = None  # None keeps Keras' 0.99
    workers: int = 4  # decoding threads
    max_val_tiles_per_slide: int | None = None  # None scores every validation tile at each evaluation
    predict_batch_size: int = 64  # per accelerator, for validation scoring and prediction
    threshold: float = 0.5  # tile call threshold of the slide score (config ensemble.threshold, shared with evaluation)
    backend: str = "tensorflow"  # the Keras backend; the job script sets KERAS_BACKEND from it before importing keras
    device: str = "auto"  # auto: the GPUs granted, else the CPU; gpu: fail without one; cpu: never touch a GPU
    deterministic: bool = True  # request deterministic ops (TF op determinism, XLA deterministic GPU ops)

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
        if not isinstance(self.mixed_precision, bool) and self.mixed_precision not in PRECISION_NAMES:
            raise ValueError(
                f"training.mixed_precision must be true, false or one of {list(PRECISION_NAMES)}, "
                f"got {self.mixed_precision!r}"
            )
        check_choice("backend", self.backend, BACKENDS)
        check_choice("device", self.device, DEVICES)
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"training.deterministic must be true or false, got {self.deterministic!r}")


@dataclass(frozen=True)
class RunSpec:
    """Which model a training makes: the trait, the train/validation split and the workflow seed."""

    trait: str = ""
    split: int = 0
    seed: int = 0

    @property
    def run_seed(self) -> int:
        """The seed of this model's weights and data order, from (seed, trait, split): no two models share one."""
        entropy = stable_seed(self.seed, "train", self.trait, f"split_{self.split}")
        return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


@dataclass(frozen=True)
class TrainingOutputs:
    """Where one training writes its results."""

    model: Path
    history: Path
    metrics: Path
    checkpoint: Path

    @classmethod
    def beside(
        cls, model: str | os.PathLike, history: str | os.PathLike, metrics: str | os.PathLike
    ) -> TrainingOutputs:
        """Outputs with the checkpoint folder next to the model file."""
        model = Path(model)
        return cls(model, Path(history), Path(metrics), model.parent / "checkpoint")


def trajectory_settings(settings: TrainingSettings) -> dict:
    """The settings a checkpoint must share with the run resuming it (max_evals may grow; worker counts may change).

    The device is free too: a run may resume on another machine; the dtype policy it gives is in the run key.
    """
    kept = asdict(settings)
    for free in ("max_evals", "workers", "predict_batch_size", "device"):
        kept.pop(free)
    return kept
