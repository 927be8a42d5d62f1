"""The devices a training or inference job runs on, its precision, its determinism, and what it records of them.

- `select_devices(device)`: the GPUs the active Keras backend sees. When GPUs were granted (CUDA_VISIBLE_DEVICES names
  one) or demanded (`training.device: gpu`) but the framework sees none, it raises `GpuUnavailableError` at once,
  before any model is built or tile read, naming the cause (a CPU-only wheel, or a driver/CUDA mismatch) and the fix.
  `cpu` hides every GPU from the framework (the job script has also set CUDA_VISIBLE_DEVICES="" before the import).
- `mixed_precision_policy`: `auto` = mixed_bfloat16 on compute capability >= 8.0 (Ampere, Hopper), mixed_float16 on
  7.x (Volta, Turing), float32 on older GPUs and on CPU; `true` = mixed_float16 on any GPU; never mixed on CPU.
- `data_parallel`: the model replicated on every visible GPU (MirroredStrategy under TensorFlow, DataParallel under
  JAX); callers ask the tile pipeline for batch_size x replicas tiles per step.
- `apply_determinism`, `device_facts`: deterministic ops where the backend offers them, and the device, backend,
  policy, determinism and library versions that go into the log and metrics.json.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import keras
import numpy as np

from workflow_scripts.learning.backend_setup import DEVICES, JAX_DETERMINISTIC_FLAG, check_choice, gpus_requested

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")
JAX_GPU_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm7-plugin")


class GpuUnavailableError(RuntimeError):
    """GPUs were granted or demanded but the framework sees none."""


@dataclass(frozen=True)
class Devices:
    """What a job computes on: the backend, `gpu` or `cpu`, the device names and the lowest GPU compute capability."""

    backend: str
    kind: str
    names: tuple[str, ...]
    capability: tuple[int, int] | None = None

    @property
    def has_gpu(self) -> bool:
        """Whether the job computes on GPUs."""
        return self.kind == "gpu"


def mixed_precision_policy(
    mixed_precision: bool | str, has_gpu: bool, capability: tuple[int, int] | None = None
) -> str:
    """The Keras dtype policy to train with: float32 on CPU; on a GPU what the setting and its capability allow."""
    if mixed_precision in (False, None, "", "float32", "none"):
        return "float32"
    if mixed_precision is True:
        policy = "mixed_float16"
    elif mixed_precision == "auto":
        policy = auto_policy(capability)
    elif mixed_precision in MIXED_POLICIES:
        policy = str(mixed_precision)
    else:
        raise ValueError(
            f"training.mixed_precision must be auto, true, false or one of {list(MIXED_POLICIES)}, "
            f"got {mixed_precision!r}"
        )
    return policy if has_gpu else "float32"


def auto_policy(capability: tuple[int, int] | None) -> str:
    """bfloat16 where tensor cores do it (>= 8.0), float16 on 7.x, float32 on older or unknown GPUs."""
    if capability is None or capability < (7, 0):
        return "float32"
    return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Use a Keras dtype policy inside the block and restore the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def optimizer_for(policy: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam, wrapped in dynamic loss scaling under mixed_float16 (float16 gradients underflow without it).

    Keras 3.15's compile() would wrap it too (auto_scale_loss, when the model's policy is mixed_float16); wrapping
    here makes the optimizer, and so the checkpoint's optimizer variables, independent of that default.
    """
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    return keras.optimizers.LossScaleOptimizer(adam) if policy == "mixed_float16" else adam


@contextlib.contextmanager
def data_parallel(devices: Devices) -> Iterator[int]:
    """Replicate the model on every GPU of `devices` (MirroredStrategy / DataParallel); yield the replica count."""
    if not devices.has_gpu or len(devices.names) < 2:
        yield 1
        return
    if devices.backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        with strategy.scope():
            yield strategy.num_replicas_in_sync
        return
    previous = keras.distribution.distribution()
    gpus = keras.distribution.list_devices("gpu")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=gpus))
    try:
        yield len(gpus)
    finally:
        keras.distribution.set_distribution(previous)


def select_devices(device: str = "auto", environ: Mapping[str, str] = os.environ) -> Devices:
    """The devices of this job; raises GpuUnavailableError when GPUs are granted or demanded but none is seen."""
    check_choice("device", device, DEVICES)
    backend = keras.backend.backend()
    if device == "cpu":
        _hide_gpus(backend)
        return Devices(backend, "cpu", ("cpu",))
    names, capability = visible_gpus(backend)
    cuda_visible = environ.get("CUDA_VISIBLE_DEVICES")
    if not names and (device == "gpu" or gpus_requested(cuda_visible)):
        raise GpuUnavailableError(
            gpu_missing_message(backend, device, cuda_visible, cpu_only_build(backend), library_versions(backend))
        )
    if not names:
        return Devices(backend, "cpu", ("cpu",))
    return Devices(backend, "gpu", names, capability)


def visible_gpus(backend: str) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """Names of the GPUs the backend sees and their lowest compute capability."""
    if backend == "tensorflow":
        import tensorflow as tf

        details = [tf.config.experimental.get_device_details(gpu) for gpu in tf.config.list_physical_devices("GPU")]
        names = tuple(str(item.get("device_name", f"GPU:{n}")) for n, item in enumerate(details))
        capabilities = [tuple(item["compute_capability"]) for item in details if item.get("compute_capability")]
    elif backend == "jax":
        import jax

        try:
            gpus = [item for item in jax.devices() if item.platform == "gpu"]
        except RuntimeError:
            gpus = []
        names = tuple(str(item.device_kind) for item in gpus)
        capabilities = [
            tuple(int(part) for part in str(item.compute_capability).split(".")[:2])
            for item in gpus if getattr(item, "compute_capability", None)
        ]
    else:
        raise RuntimeError(f"unsupported Keras backend {backend!r}: use tensorflow or jax")
    return names, (min(capabilities) if capabilities else None)


def _hide_gpus(backend: str) -> None:
    """Keep the framework off every GPU (a no-op where the job script already hid them before the import)."""
    if backend == "tensorflow":
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # already initialised: the GPUs it opened stay visible
            tf.config.set_visible_devices([], "GPU")
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_device", jax.devices("cpu")[0])


def cpu_only_build(backend: str) -> bool:
    """Whether the installed framework cannot use a GPU at all (tensorflow-cpu, or jax without a CUDA plugin)."""
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.test.is_built_with_cuda()
    return not any(_installed(name) for name in JAX_GPU_PLUGINS)


def _installed(distribution: str) -> bool:
    """Whether a Python distribution is installed."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def gpu_missing_message(
    backend: str, device: str, cuda_visible: str | None, cpu_only: bool, versions: Mapping[str, str]
) -> str:
    """The error of a job that was given GPUs the framework cannot see: the cause and the fix."""
    framework = "TensorFlow" if backend == "tensorflow" else "JAX"
    why = "training.device is gpu" if device == "gpu" else f"CUDA_VISIBLE_DEVICES={cuda_visible!r} names a GPU"
    head = f"{why}, but {framework} {versions.get(backend, '?')} sees no GPU. "
    if cpu_only and backend == "tensorflow":
        wheel = "tensorflow-cpu" if _installed("tensorflow-cpu") else "a TensorFlow without CUDA"
        cause = (
            f"Cause: the installed TensorFlow is a CPU-only wheel ({wheel}). Fix: install the GPU build with "
            "`make venv GPU=1` (replaces tensorflow-cpu by tensorflow[and-cuda]), or `pip uninstall -y "
            "tensorflow-cpu && pip install '.[gpu]'`; with --software-deployment-method conda set "
            "training.conda_env: gpu."
        )
    elif cpu_only:
        cause = (
            "Cause: the installed jaxlib is CPU-only (no jax-cuda12-plugin). Fix: `make venv GPU=jax`, or "
            "`pip install '.[jax-gpu]'`; with --software-deployment-method conda set training.conda_env: jax_gpu."
        )
    else:
        build_info = (
            "python -c 'import tensorflow as tf; print(tf.sysconfig.get_build_info())'"
            if backend == "tensorflow" else "python -c 'import jax; jax.print_environment_info()'"
        )
        cause = (
            f"Cause: {framework} is a CUDA build but cannot open the GPU, usually a driver/CUDA mismatch (a driver "
            f"older than the CUDA the wheel was built for) or a GPU the job was not given. Check: `nvidia-smi` must "
            f"list the GPU and a CUDA version at least that of `{build_info}`."
        )
    return head + cause + " To train on the CPU on purpose, set training.device: cpu."


def apply_determinism(backend: str, deterministic: bool) -> str:
    """Request deterministic ops where the backend offers them; return what was done, for the log."""
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.framework import config as tf_config

        if deterministic:
            tf.config.experimental.enable_op_determinism()
            return "TensorFlow op determinism enabled"
        tf_config.disable_op_determinism()
        return "TensorFlow op determinism off"
    flags = os.environ.get("XLA_FLAGS", "")
    if not deterministic:
        return "XLA deterministic GPU ops not requested"
    if JAX_DETERMINISTIC_FLAG in flags.split():
        return f"XLA_FLAGS has {JAX_DETERMINISTIC_FLAG}"
    return f"WARNING: XLA_FLAGS lacks {JAX_DETERMINISTIC_FLAG} (set it before JAX starts; CPU XLA is deterministic)"


def library_versions(backend: str) -> dict[str, str]:
    """Versions of Keras, NumPy and the backend framework, as recorded in metrics.json."""
    versions = {"keras": keras.__version__, "numpy": np.__version__}
    if backend == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax
        import jaxlib

        versions["jax"] = jax.__version__
        versions["jaxlib"] = jaxlib.__version__
    return versions


def device_facts(devices: Devices, n_replicas: int, deterministic: bool) -> dict:
    """The device fields of metrics.json (`run_outputs.DEVICE_KEYS`)."""
    return {
        "backend": devices.backend,
        "device": devices.kind,
        "device_names": list(devices.names),
        "n_devices": int(n_replicas),
        "compute_capability": None if devices.capability is None else ".".join(map(str, devices.capability)),
        "deterministic": bool(deterministic),
        "versions": library_versions(devices.backend),
    }


def has_gpu() -> bool:
    """Whether the active backend sees a GPU."""
    return bool(visible_gpus(keras.backend.backend())[0])
