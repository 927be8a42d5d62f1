"""The tile encoder of the features family (config `features.encoder`): its settings and the Keras model built on them.

An encoder takes tiles as they come out of the tile store, uint8 (B, input_px, input_px, 3), and returns one float32
embedding (B, D) per tile. Normalisation and pooling are layers inside the model, around the backbone, so the model
that embeds cannot disagree with the settings about them:
- normalisation (a per-channel Rescaling of the uint8 input): `imagenet` = (x / 255 - mean) / std with mean
  (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); `inception` = x / 127.5 - 1; `unit` = x / 255; `none` = the
  raw 0..255 values as floats (for backbones with their own preprocessing layers, e.g. MobileNetV3); or
  {mean: [r, g, b], std: [r, g, b]} on the [0, 1] scale.
- pooling of the backbone's output: 4D feature maps (B, H, W, C) take `avg` or `max` over H and W; 3D tokens
  (B, T, C) take `cls` (token 0), `avg` or `max` over tokens; 2D vectors (B, D) take `none`. Any other pairing is an
  error naming features.encoder.pooling.
- the last layer casts to float32, so embeddings are float32 under a mixed-precision policy too.

Backbones (`name`): "keras.applications:<Model>" (include_top=False), "keras_hub:<preset>" (keras-hub is imported
only then, and is not a dependency of the workflow: `pip install keras-hub`), or a path to a saved `.keras` model.
Weights (`weights`): null = seeded random initialisation for library models (a .keras file keeps its saved weights);
`imagenet` = the library's own pretrained weights (keras.applications' ImageNet download; for keras_hub the preset's
weights); a path to a `.weights.h5` file = weights loaded into the backbone with `load_weights` (as
`backbone.save_weights` wrote them). `weights_sha256` identifies the weights whatever their source.

This module imports only keras, numpy and the standard library, so benchmarks run it on machines without TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import keras
import numpy as np

PREFIX = "features.encoder"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALISATIONS = ("imagenet", "inception", "unit", "none")
POOLINGS = ("avg", "max", "cls", "none")
LIBRARIES = ("keras.applications", "keras_hub")
MIN_INPUT_PX = 1  # library backbones refuse what is too small for them themselves (ResNet50: 32 px)
INPUT_DTYPE = "uint8"

Normalisation = str | tuple[tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class EncoderSettings:
    """Which encoder embeds the tiles and how (config key `features.encoder`)."""

    name: str = "keras.applications:ResNet50"
    weights: str | None = None
    input_px: int = 224
    normalisation: Normalisation = "imagenet"  # a name of NORMALISATIONS, or ((mean r, g, b), (std r, g, b))
    pooling: str = "avg"
    batch_size: int = 64  # per device

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> EncoderSettings:
        """Settings from the config mapping (missing keys take defaults); unknown keys and bad values name the key."""
        known = [item.name for item in fields(cls)]
        for key in config:
            if key not in known:
                raise ValueError(f"{PREFIX}.{key}: unknown key; known: {known}")
        settings = cls(**dict(config))
        settings.validate()
        return settings

    def __post_init__(self) -> None:
        """Keep the normalisation in one form (a name or ((mean), (std)) float tuples), whatever form it came in."""
        object.__setattr__(self, "normalisation", parse_normalisation(self.normalisation))

    def validate(self) -> None:
        """Raise ValueError naming the key of the first value an encoder cannot be built with."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"{PREFIX}.name must be a non-empty string, got {self.name!r}")
        library, _, member = self.name.partition(":")
        if library in LIBRARIES and not member:
            raise ValueError(f"{PREFIX}.name: {self.name!r} names no model after '{library}:'")
        if library not in LIBRARIES and not self.name.endswith(".keras"):
            raise ValueError(
                f"{PREFIX}.name must be 'keras.applications:<Model>', 'keras_hub:<preset>' or a path to a .keras "
                f"file, got {self.name!r}"
            )
        if self.weights is not None and self.weights != "imagenet":
            if not isinstance(self.weights, str) or not self.weights.endswith(".weights.h5"):
                raise ValueError(f"{PREFIX}.weights must be null, imagenet or a .weights.h5 file, got {self.weights!r}")
        if self.weights == "imagenet" and self.is_file:
            raise ValueError(f"{PREFIX}.weights: a .keras file carries its own weights; use null, not imagenet")
        for key, low in (("input_px", MIN_INPUT_PX), ("batch_size", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{PREFIX}.{key} must be an integer >= {low}, got {value!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"{PREFIX}.pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")

    @property
    def is_file(self) -> bool:
        """Whether the encoder is a saved .keras model rather than a library model."""
        return self.name.partition(":")[0] not in LIBRARIES


def parse_normalisation(value: object) -> Normalisation:
    """A normalisation name, or a {mean, std} mapping (or its tuple form) as ((r, g, b), (r, g, b)) floats."""
    if isinstance(value, str):
        if value not in NORMALISATIONS:
            raise ValueError(
                f"{PREFIX}.normalisation must be one of {list(NORMALISATIONS)} or {{mean: [r, g, b], std: [r, g, b]}}, "
                f"got {value!r}"
            )
        return value
    if isinstance(value, Mapping):
        if sorted(value) != ["mean", "std"]:
            raise ValueError(f"{PREFIX}.normalisation must have exactly the keys mean and std, got {sorted(value)}")
        value = (value["mean"], value["std"])
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{PREFIX}.normalisation: cannot read {value!r}")
    mean, std = (_triple(part, key) for part, key in zip(value, ("mean", "std")))
    if min(std) <= 0:
        raise ValueError(f"{PREFIX}.normalisation.std must be > 0, got {list(std)}")
    return mean, std


def _triple(value: object, key: str) -> tuple[float, float, float]:
    """Three finite floats (r, g, b) of a custom normalisation, or an error naming its key."""
    try:
        numbers = tuple(float(item) for item in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3 or not all(np.isfinite(numbers)) or any(isinstance(item, bool) for item in value):
        raise ValueError(f"{PREFIX}.normalisation.{key} must be three numbers [r, g, b], got {value!r}")
    return numbers  # type: ignore[return-value]


def scale_offset(normalisation: Normalisation) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (scale, offset) such that uint8 x * scale + offset is the normalised tile."""
    if normalisation == "inception":
        return (1 / 127.5,) * 3, (-1.0,) * 3
    if normalisation == "unit":
        return (1 / 255,) * 3, (0.0,) * 3
    if normalisation == "none":
        return (1.0,) * 3, (0.0,) * 3
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalisation == "imagenet" else normalisation
    return tuple(1 / (255 * s) for s in std), tuple(-m / s for m, s in zip(mean, std))


def pooling_layer(pooling: str, shape: tuple) -> keras.layers.Layer | None:
    """The layer reducing a backbone output of `shape` (batch first) to (B, D); None when it already is."""
    rank = len(shape)
    if rank == 4 and pooling in ("avg", "max"):
        layer = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
        return layer(name=f"pool_{pooling}")
    if rank == 3 and pooling in ("avg", "max"):
        layer = keras.layers.GlobalAveragePooling1D if pooling == "avg" else keras.layers.GlobalMaxPooling1D
        return layer(name=f"pool_{pooling}")
    if rank == 3 and pooling == "cls" and shape[1] is not None:
        return keras.Sequential(
            [keras.layers.Cropping1D((0, int(shape[1]) - 1)), keras.layers.Flatten()], name="pool_cls"
        )
    if rank == 2 and pooling == "none":
        return None
    raise ValueError(
        f"{PREFIX}.pooling: {pooling!r} does not fit the backbone's output {tuple(shape)}: 4D feature maps take avg or "
        "max, 3D tokens (with a fixed token count for cls) take cls, avg or max, 2D vectors take none"
    )


def wrap_backbone(backbone: keras.Model, settings: EncoderSettings) -> keras.Model:
    """uint8 tiles -> normalisation -> backbone -> pooling -> float32 (B, D): the encoder around a built backbone."""
    px = settings.input_px
    expected = backbone.inputs[0].shape if backbone.inputs else None
    if expected is not None and (len(expected) != 4 or expected[-1] != 3 or any(
        side is not None and side != px for side in expected[1:3]
    )):
        raise ValueError(f"{PREFIX}.input_px: the backbone takes {tuple(expected)}, not ({px}, {px}, 3) tiles")
    inputs = keras.Input(shape=(px, px, 3), dtype=INPUT_DTYPE, name="tiles")
    scale, offset = scale_offset(settings.normalisation)
    normalised = keras.layers.Rescaling(scale=list(scale), offset=list(offset), name="normalise")(inputs)
    output = backbone(normalised)
    if isinstance(output, (dict, list, tuple)):
        raise ValueError(f"{PREFIX}.name: {settings.name} returns several outputs; the encoder needs one tensor")
    pool = pooling_layer(settings.pooling, tuple(output.shape))
    pooled = output if pool is None else pool(output)
    embedding = keras.layers.Activation("linear", dtype="float32", name="embedding")(pooled)
    return keras.Model(inputs, embedding, name="tile_encoder")


def build_backbone(settings: EncoderSettings) -> keras.Model:
    """The backbone the settings name, with the library's weights when `weights` is imagenet, else as initialised."""
    library, _, member = settings.name.partition(":")
    pretrained = settings.weights == "imagenet"
    if library == "keras.applications":
        constructor = getattr(keras.applications, member, None)
        if constructor is None or not callable(constructor):
            raise ValueError(f"{PREFIX}.name: keras.applications has no model {member!r}")
        shape = (settings.input_px, settings.input_px, 3)
        return constructor(include_top=False, weights="imagenet" if pretrained else None, input_shape=shape)
    if library == "keras_hub":
        try:
            keras_hub = importlib.import_module("keras_hub")
        except ImportError as error:
            raise ImportError(
                f"{PREFIX}.name is {settings.name!r} but keras-hub is not installed: pip install keras-hub"
            ) from error
        return keras_hub.models.Backbone.from_preset(member, load_weights=pretrained)
    path = Path(settings.name)
    if not path.is_file():
        raise FileNotFoundError(f"{PREFIX}.name: encoder model file not found: {path}")
    return keras.saving.load_model(path, compile=False)


def build_encoder(settings: EncoderSettings, seed: int) -> keras.Model:
    """The encoder model: uint8 (B, px, px, 3) -> float32 (B, D); random initialisation seeded by `seed`."""
    settings.validate()
    keras.utils.set_random_seed(int(seed))
    backbone = build_backbone(settings)
    if settings.weights not in (None, "imagenet"):
        weights = Path(settings.weights)
        if not weights.is_file():
            raise FileNotFoundError(f"{PREFIX}.weights: weights file not found: {weights}")
        backbone.load_weights(weights)
    return wrap_backbone(backbone, settings)


def weights_sha256(model: keras.Model) -> str:
    """Hex SHA-256 over the model's weights in order (short name, shape, dtype, bytes): names the weights, any source.

    Short variable names (`kernel`, not `conv2d_3/kernel`) keep it independent of the layer names Keras numbers per
    process.
    """
    digest = hashlib.sha256()
    for variable in model.weights:
        array = np.ascontiguousarray(variable.numpy())
        digest.update(f"{variable.name}|{array.shape}|{array.dtype.str}|{array.nbytes}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def encoder_label(settings: EncoderSettings) -> str:
    """The feature store's `encoder` attribute: backbone, weights source, normalisation and pooling (no folders)."""
    name = Path(settings.name).name if settings.is_file else settings.name
    if settings.weights is None:
        weights = "saved" if settings.is_file else "random"
    else:
        weights = settings.weights if settings.weights == "imagenet" else Path(settings.weights).name
    normalisation = settings.normalisation
    if not isinstance(normalisation, str):
        mean, std = normalisation
        normalisation = f"mean{list(mean)}std{list(std)}".replace(" ", "")
    return f"{name} weights={weights} normalisation={normalisation} pooling={settings.pooling}"


@dataclass(frozen=True)
class LoadedEncoder:
    """A built encoder with what the feature stores record of it."""

    model: keras.Model
    label: str
    weights_sha256: str
    input_px: int

    @property
    def dim(self) -> int:
        """Embedding width D."""
        return int(self.model.outputs[0].shape[-1])


def load_encoder(settings: EncoderSettings, seed: int) -> LoadedEncoder:
    """Build the encoder once and fingerprint its weights."""
    model = build_encoder(settings, seed)
    return LoadedEncoder(model, encoder_label(settings), weights_sha256(model), settings.input_px)
