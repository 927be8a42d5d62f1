"""Benchmark: tiles/s of a ViT-L/16-sized tile encoder at 224 px, and what embedding a TCGA cohort costs in device-hours.

The encoder is the one the `embed` stage runs (`features.encoder.wrap_backbone`: uint8 tiles, imagenet normalisation,
cls pooling, float32 out) around a randomly initialised ViT-L/16 backbone: 24 layers, hidden 1024, 16 heads, MLP
4096, patch 16 (~304 M parameters). It is keras_hub's ViTBackbone when keras-hub is installed, else the same
architecture built here from Keras layers (pre-norm blocks, class token, learned position embeddings). Only the
forward pass is timed: the first batch (graph compilation) apart as warm-up, then --steps batches of random uint8
tiles. Baseline in the same process: the paper's per-trait Inception v3 (`learning.model.build_model`) at the same
size, batch and policy, which one features-family embedding replaces for every trait and split model.

Cohort cost: device-hours = tiles / (tiles/s) / 3600, for BRCA's 761 diagnostic slides at ~1,000 and ~3,000 tiles
each. JPEG decoding is not included (bench_pipeline.py measures tiles/s per CPU core).

Defaults: on a GPU, per-GPU batches 64 and 256, float32 and mixed_bfloat16, 20 steps; on CPU (about a minute on 2
cores) batch 8, float32, 3 steps. Usage on a GPU box, from the repository root:

    KERAS_BACKEND=jax PYTHONPATH=$PWD python tests/benchmarks/bench_embed.py

Run: python tests/benchmarks/bench_embed.py [--px 224] [--batches 64 256] [--policies float32 mixed_bfloat16]
     [--steps N] [--threads N] [--layers-only] [--no-baseline]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from workflow_scripts.features.encoder import EncoderSettings, wrap_backbone  # noqa: E402
from workflow_scripts.learning.devices import dtype_policy  # noqa: E402
from workflow_scripts.learning.model import build_model, limit_cpu_threads  # noqa: E402

VIT_L16 = {"patch": 16, "layers": 24, "hidden": 1024, "heads": 16, "mlp": 4096}
BRCA_SLIDES = 761
TILES_PER_SLIDE = (1000, 3000)


class ClassToken(keras.layers.Layer):
    """Prepends one learned token to the patch tokens (B, T, C) -> (B, T + 1, C)."""

    def build(self, input_shape: tuple) -> None:
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="zeros", name="token")

    def call(self, tokens):
        token = keras.ops.cast(self.token, tokens.dtype)
        return keras.ops.concatenate([keras.ops.tile(token, (keras.ops.shape(tokens)[0], 1, 1)), tokens], axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], None if input_shape[1] is None else input_shape[1] + 1, input_shape[2])


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned (T, C) position embedding to the tokens."""

    def build(self, input_shape: tuple) -> None:
        self.positions = self.add_weight(
            shape=(1, *input_shape[1:]), initializer=keras.initializers.RandomNormal(stddev=0.02), name="positions"
        )

    def call(self, tokens):
        return tokens + keras.ops.cast(self.positions, tokens.dtype)


def layers_vit(px: int, patch: int, layers: int, hidden: int, heads: int, mlp: int) -> keras.Model:
    """A ViT backbone from Keras layers: (B, px, px, 3) floats -> (B, 1 + (px / patch)^2, hidden) tokens."""
    images = keras.Input(shape=(px, px, 3), name="images")
    x = keras.layers.Conv2D(hidden, patch, strides=patch, name="patch_embedding")(images)
    x = keras.layers.Reshape(((px // patch) ** 2, hidden))(x)
    x = PositionEmbedding()(ClassToken()(x))
    for _ in range(layers):
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        x = keras.layers.Add()([x, keras.layers.MultiHeadAttention(heads, hidden // heads)(y, y)])
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = keras.layers.Dense(hidden)(keras.layers.Dense(mlp, activation="gelu")(y))
        x = keras.layers.Add()([x, y])
    return keras.Model(images, keras.layers.LayerNormalization(epsilon=1e-6)(x), name="vit_l16")


def vit_backbone(px: int, layers_only: bool) -> tuple[keras.Model, str]:
    """The ViT-L/16 backbone (keras_hub's when installed and allowed) and where it comes from."""
    if not layers_only and importlib.util.find_spec("keras_hub") is not None:
        import keras_hub

        backbone = keras_hub.models.ViTBackbone(
            image_shape=(px, px, 3), patch_size=VIT_L16["patch"], num_layers=VIT_L16["layers"],
            num_heads=VIT_L16["heads"], hidden_dim=VIT_L16["hidden"], mlp_dim=VIT_L16["mlp"],
        )
        return backbone, f"keras_hub {keras_hub.__version__} ViTBackbone"
    return layers_vit(px, **VIT_L16), "Keras layers (keras-hub not used)"


def time_forward(model: keras.Model, px: int, batch: int, steps: int) -> tuple[float, float]:
    """(warm-up seconds of the first batch, tiles/s over `steps` further batches) of random uint8 tiles."""
    tiles = np.random.default_rng(0).integers(0, 256, size=(batch, px, px, 3), dtype=np.uint8)
    started = time.perf_counter()
    np.asarray(model.predict_on_batch(tiles))
    warm_up = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        out = model.predict_on_batch(tiles)
    np.asarray(out)  # wait for the device
    return warm_up, steps * batch / (time.perf_counter() - started)


def build_encoder_model(px: int, policy: str, layers_only: bool) -> tuple[keras.Model, str, float]:
    """The ViT-L/16 encoder under `policy`, where its backbone comes from, and the seconds its build took."""
    settings = EncoderSettings(name="keras_hub:vit_large_patch16_224", input_px=px, pooling="cls")
    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    with dtype_policy(policy):
        backbone, source = vit_backbone(px, layers_only)
        encoder = wrap_backbone(backbone, settings)
    return encoder, source, time.perf_counter() - started


def baseline_rate(px: int, batch: int, policy: str, steps: int) -> float:
    """Inference tiles/s of the per-trait Inception v3 classifier at the same size, batch and policy."""
    with dtype_policy(policy):
        model = build_model(px)
    return time_forward(model, px, batch, steps)[1]


def cohort_lines(rate: float, where: str) -> list[str]:
    """Device-hours to embed BRCA at the measured rate: tiles / (tiles/s) / 3600."""
    lines = [f"cohort cost at {rate:.2f} tiles/s ({where}): device-hours = tiles / (tiles/s) / 3600"]
    for per_slide in TILES_PER_SLIDE:
        tiles = BRCA_SLIDES * per_slide
        lines.append(f"  BRCA {BRCA_SLIDES} slides x {per_slide:,} tiles = {tiles:,} tiles: {tiles / rate / 3600:,.1f} h")
    return lines


def main() -> None:
    """Print the device, the model, a row per batch and policy, and the cohort's device-hours for the fastest row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--px", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--policies", nargs="+")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--layers-only", action="store_true", help="build ViT-L/16 from Keras layers even with keras-hub")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Inception v3 rows")
    args = parser.parse_args()
    limit_cpu_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_training import gpu_devices

    gpus = gpu_devices()
    batches = args.batches or ([64, 256] if gpus else [8])
    policies = args.policies or (["float32", "mixed_bfloat16"] if gpus else ["float32"])
    steps = args.steps or (20 if gpus else 3)
    device = ", ".join(gpus) if gpus else f"CPU ({os.cpu_count()} cores, {args.threads} threads)"
    print(f"backend {keras.backend.backend()} {keras.__version__}, device {device}; first device used")
    print(f"input {args.px} px, {steps} timed batches per row after one warm-up batch, random uint8 tiles, random init")
    print(f"{'batch':>6}{'policy':>16}{'build s':>9}{'warm-up s':>11}{'tiles/s':>10}{'ms/tile':>9}"
          f"{'inception v3 tiles/s':>22}{'vit/inception':>15}")
    best = 0.0
    for policy in policies:
        encoder, source, build_seconds = build_encoder_model(args.px, policy, args.layers_only)
        for batch in batches:
            warm_up, rate = time_forward(encoder, args.px, batch, steps)
            base = None if args.no_baseline else baseline_rate(args.px, batch, policy, steps)
            base_text = "skipped" if base is None else f"{base:.2f}"
            ratio = "" if base is None else f"{rate / base:.3f}x"
            print(f"{batch:>6}{policy:>16}{build_seconds:>9.1f}{warm_up:>11.1f}{rate:>10.2f}{1000 / rate:>9.1f}"
                  f"{base_text:>22}{ratio:>15}")
            best = max(best, rate)
    print(f"encoder: ViT-L/16 from {source}, {encoder.count_params():,} parameters, "
          f"D = {encoder.outputs[0].shape[-1]}, output {encoder.outputs[0].dtype}")
    print("\n".join(cohort_lines(best, device)))


if __name__ == "__main__":
    main()
