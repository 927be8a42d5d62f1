"""The paper's classifier: an Inception v3 trained from scratch with one sigmoid unit per trait.

Backend-agnostic Keras 3 code: it runs under KERAS_BACKEND=tensorflow (the default) and jax.

Input convention: the model takes RGB tiles as they come out of the tile store (uint8 in [0, 255]) and its first
layer rescales them to [-1, 1] (the Inception convention, x / 127.5 - 1). Keeping the scaling inside the model means
training, validation and prediction cannot disagree about it, and batches travel to the accelerator as uint8
(four times fewer bytes than float32).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import keras

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.learning.backend_setup import with_xla_flag

INPUT_DTYPE = "uint8"


def build_model(input_px: int, bn_momentum: float | None = None, name: str = "inception_v3_trait") -> keras.Model:
    """Build the untrained Inception v3 + Dense(1, sigmoid) classifier, optionally with faster-moving BatchNorm stats.

    `bn_momentum` replaces Keras' default moving-average momentum (0.99) in every BatchNormalization layer; short
    from-scratch runs need ~0.9 so that the inference-mode statistics used for validation catch up with the weights.
    The output layer is float32 even under a mixed-precision policy, so probabilities and the loss stay accurate.
    """
    if input_px < 75:
        raise ValueError(f"Inception v3 needs input_px >= 75, got {input_px}")
    inputs = keras.Input(shape=(input_px, input_px, 3), dtype=INPUT_DTYPE, name="tiles")
    scaled = keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="scale_to_unit_range")(inputs)
    backbone = keras.applications.InceptionV3(
        weights=None, include_top=False, pooling="avg", input_shape=(input_px, input_px, 3)
    )
    if bn_momentum is not None:
        set_batchnorm_momentum(backbone, bn_momentum)
    features = backbone(scaled)
    probability = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="trait_probability")(features)
    return keras.Model(inputs, probability, name=name)


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> int:
    """Set the moving-statistics momentum of every BatchNormalization layer (recursively); return how many changed."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1), got {momentum}")
    changed = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            changed += 1
    return changed


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """List the layers of a model and of every model nested in it."""
    found: list[keras.layers.Layer] = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
    return found


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Save a model atomically; Keras insists on a `.keras` name, so save beside the target and rename."""
    final = Path(path)
    if final.suffix != ".keras":
        raise ValueError(f"model path must end in .keras: {final}")
    with atomic_path(final) as temporary:
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.stem}-") as folder:
            staged = Path(folder) / final.name
            model.save(staged)
            os.replace(staged, temporary)


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a trained classifier for inference (without its optimizer)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return keras.models.load_model(path, compile=False)


def limit_cpu_threads(n_threads: int) -> None:
    """Cap the backend's CPU thread pools to the job's allocation so parallel jobs do not oversubscribe cores.

    Must run before the backend executes its first operation (TensorFlow fixes its pools then).
    """
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(n_threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(n_threads, 2))
        except RuntimeError:
            pass  # TensorFlow already initialised in this process; its pools keep their size.
    elif keras.backend.backend() == "jax" and n_threads == 1:
        # XLA reads this when its CPU client starts (first computation); it has no knob for N > 1 threads.
        flags = os.environ.get("XLA_FLAGS", "")
        for flag in ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"):
            flags = with_xla_flag(flags, flag)
        os.environ["XLA_FLAGS"] = flags
