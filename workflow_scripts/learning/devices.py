"""Accelerator handling of a training: the dtype policy (mixed precision only on a GPU) and data parallelism."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

MIXED_POLICIES = {"mixed_float16", "mixed_bfloat16"}


def mixed_precision_policy(mixed_precision: bool | str, has_gpu: bool) -> str:
    """The Keras dtype policy to train with: mixed only when configured and a GPU is present."""
    if mixed_precision in (False, None, "", "float32", "none"):
        return "float32"
    policy = "mixed_float16" if mixed_precision is True else str(mixed_precision)
    if policy not in MIXED_POLICIES:
        raise ValueError(
            f"training.mixed_precision must be true/false or one of {sorted(MIXED_POLICIES)}, got {mixed_precision!r}"
        )
    return policy if has_gpu else "float32"


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
    """Replicate the model on every visible GPU (MirroredStrategy under TensorFlow, DataParallel under JAX).

    Yields the replica count.
    """
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
