"""Per-trait heads of the `features` model family: their settings (config `features.head`) and their network.

A head maps one tile's embedding (float16 or float32, shape (D,)) to the probability, float32, that the tile carries
the trait's label of its slide: `logistic` is Dense(1, sigmoid) on the features (logistic regression); `mlp` is
Dense(hidden_units, relu), then Dropout(dropout) when dropout > 0, then Dense(1, sigmoid). It is trained by
`learning.train` with the paper's schedule (the same loop, evaluation, checkpoints and outputs as Inception v3) and
saved and loaded by `model.save_model` / `model.load_model` as model.keras.

The schedule of a head training comes from config `training` (HEAD_TRAINING_KEYS: evaluations per epoch, patiences,
precision, backend, device, determinism, validation subsampling, scoring batch, threshold); its batch size and
learning rate come from `features.head`. The Inception-only training keys (input_px, bn_momentum and training's own
batch_size and learning_rate) do not apply to heads and are left out.

This module imports no deep-learning framework at import time (job scripts read HeadSettings before
`backend_setup.prepare_backend` sets the Keras backend); `build_head` imports keras when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from workflow_scripts.learning.settings import TrainingSettings

if TYPE_CHECKING:
    import keras

HEAD_KINDS = ("logistic", "mlp")
HEAD_SCORING_BATCH = 4096  # rows per validation/prediction batch of a head, at least
HEAD_TRAINING_KEYS = (
    "evals_per_epoch", "lr_patience", "lr_factor", "stop_patience", "max_evals", "mixed_precision", "backend", "device",
    "deterministic", "workers", "max_val_tiles_per_slide", "predict_batch_size", "threshold",
)
FEATURE_INPUT_DTYPE = "float16"  # the feature stores' dtype: features travel to the device as stored


@dataclass(frozen=True)
class HeadSettings:
    """The head of one trait (config `features.head`)."""

    kind: str = "logistic"
    hidden_units: int = 256  # mlp only
    dropout: float = 0.0  # mlp only; 0 adds no Dropout layer
    batch_size: int = 256  # per accelerator, like training.batch_size
    learning_rate: float = 0.001

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> HeadSettings:
        """Build head settings from config `features.head`, naming any unknown key as features.head.<key>."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown head setting(s) {[f'features.head.{key}' for key in unknown]}; known: {sorted(known)}"
            )
        settings = cls(**dict(config))
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise, naming the features.head key, on values a head cannot be built or trained with."""
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"features.head.kind must be one of {list(HEAD_KINDS)}, got {self.kind!r}")
        for name in ("hidden_units", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"features.head.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"features.head.dropout must be in [0, 1), got {self.dropout}")
        if float(self.learning_rate) <= 0:
            raise ValueError(f"features.head.learning_rate must be > 0, got {self.learning_rate}")


def head_training_settings(training: Mapping[str, object], head: HeadSettings) -> TrainingSettings:
    """The TrainingSettings of a head: the schedule keys of config `training`, batch and learning rate of the head.

    Keys unknown to `training` still fail (typos do not pass silently); Inception-only keys are dropped.
    """
    inception_only = {item.name for item in fields(TrainingSettings)} - set(HEAD_TRAINING_KEYS)
    kept = {key: value for key, value in training.items() if key not in inception_only}
    # A head scores (n, D) float16 rows, not decoded tiles: big scoring batches are cheap (4,096 x 1,536 x 2 B =
    # 12 MiB) and cut the per-batch overhead that dominates validation (measured in bench_heads.py).
    scoring = max(int(kept.get("predict_batch_size", 64)), HEAD_SCORING_BATCH)
    return TrainingSettings.from_config(
        kept | {"batch_size": head.batch_size, "learning_rate": head.learning_rate, "predict_batch_size": scoring}
    )


def build_head(dim: int, settings: HeadSettings, name: str | None = None) -> keras.Model:
    """The untrained head: features (B, dim) in, sigmoid probability (B, 1) float32 out, under the active policy."""
    import keras  # here, not at the top: see the module docstring

    settings.validate()
    if dim < 1:
        raise ValueError(f"a head needs features of width >= 1, got {dim}")
    inputs = keras.Input(shape=(dim,), dtype=FEATURE_INPUT_DTYPE, name="features")
    hidden = inputs
    if settings.kind == "mlp":
        hidden = keras.layers.Dense(int(settings.hidden_units), activation="relu", name="hidden")(hidden)
        if settings.dropout > 0:
            hidden = keras.layers.Dropout(float(settings.dropout), name="dropout")(hidden)
    probability = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="trait_probability")(hidden)
    return keras.Model(inputs, probability, name=name or f"{settings.kind}_head")
