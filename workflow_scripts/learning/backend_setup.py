"""The process environment of a training or inference job, set before Keras is imported.

Keras picks its backend once, from KERAS_BACKEND, at its first import; TensorFlow and JAX read CUDA_VISIBLE_DEVICES,
JAX_PLATFORMS and XLA_FLAGS when they start. A job script therefore calls `prepare_backend` before it imports keras
or any package module that does (this module imports neither). What it sets:

- KERAS_BACKEND = training.backend (tensorflow or jax);
- device `cpu`: CUDA_VISIBLE_DEVICES="" (neither framework opens a GPU) and, under JAX, JAX_PLATFORMS=cpu;
- deterministic under JAX: `--xla_gpu_deterministic_ops=true` appended to XLA_FLAGS (TensorFlow's switch,
  `enable_op_determinism`, is a call made after import: `devices.apply_determinism`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

BACKENDS = ("tensorflow", "jax")
DEVICES = ("auto", "gpu", "cpu")
NO_DEVICE_VALUES = ("", "-1", "NoDevFiles")  # CUDA_VISIBLE_DEVICES values that name no GPU (NoDevFiles: Slurm)
JAX_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    """Refuse a backend or device name outside its list, naming the config key."""
    if value not in allowed:
        raise ValueError(f"training.{key} must be one of {list(allowed)}, got {value!r}")


def gpus_requested(cuda_visible_devices: str | None) -> bool:
    """Whether CUDA_VISIBLE_DEVICES names at least one GPU (what a scheduler sets when it grants one)."""
    return cuda_visible_devices is not None and cuda_visible_devices.strip() not in NO_DEVICE_VALUES


def with_xla_flag(flags: str, flag: str) -> str:
    """XLA_FLAGS with `flag` added once (the option name decides whether it is already there)."""
    name = flag.split("=")[0]
    kept = [item for item in flags.split() if item.split("=")[0] != name]
    return " ".join([*kept, flag])


def backend_environment(backend: str, device: str, deterministic: bool, environ: Mapping[str, str]) -> dict:
    """The environment variables a job of this backend, device and determinism must set before the import."""
    check_choice("backend", backend, BACKENDS)
    check_choice("device", device, DEVICES)
    changes = {"KERAS_BACKEND": backend}
    if device == "cpu":
        changes["CUDA_VISIBLE_DEVICES"] = ""
        if backend == "jax":
            changes["JAX_PLATFORMS"] = "cpu"
    if backend == "jax" and deterministic:
        changes["XLA_FLAGS"] = with_xla_flag(environ.get("XLA_FLAGS", ""), JAX_DETERMINISTIC_FLAG)
    return changes


def prepare_backend(
    backend: str, device: str, deterministic: bool, environ: MutableMapping[str, str] = os.environ
) -> dict:
    """Set the job's backend environment; fail when Keras was already imported with another backend.

    Returns the variables set (for the log).
    """
    changes = backend_environment(backend, device, deterministic, environ)
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != backend:
        raise RuntimeError(
            f"training.backend is {backend} but Keras was already imported with {keras.backend.backend()}: "
            "call prepare_backend before importing keras or workflow_scripts.learning modules"
        )
    environ.update(changes)
    return changes
