"""The classifier: Inception v3 from scratch + one sigmoid unit, uint8 input rescaled inside, BatchNorm momentum."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from workflow_scripts.learning.model import build_model, save_model, set_batchnorm_momentum

INCEPTION_V3_NO_TOP_PARAMS = 21_802_784  # keras.applications.InceptionV3(include_top=False): independent of input size
HEAD_PARAMS = 2048 + 1  # Dense(1) on the 2048 pooled features


@pytest.fixture(scope="module")
def model() -> keras.Model:
    """One 75 px model shared by the tests (building Inception v3 takes seconds)."""
    keras.utils.set_random_seed(0)
    return build_model(75, bn_momentum=0.9)


def test_parameter_count_is_inception_v3_plus_one_unit(model: keras.Model) -> None:
    assert model.count_params() == INCEPTION_V3_NO_TOP_PARAMS + HEAD_PARAMS == 21_804_833


def test_input_is_uint8_tiles_and_output_a_float32_probability(model: keras.Model) -> None:
    assert model.inputs[0].dtype == "uint8" and tuple(model.inputs[0].shape) == (None, 75, 75, 3)
    tiles = np.random.default_rng(0).integers(0, 256, size=(2, 75, 75, 3), dtype=np.uint8)
    probabilities = keras.ops.convert_to_numpy(model(tiles, training=False))
    assert probabilities.shape == (2, 1) and probabilities.dtype == np.float32
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_rescaling_maps_uint8_to_inception_range(model: keras.Model) -> None:
    scale = model.get_layer("scale_to_unit_range")
    out = keras.ops.convert_to_numpy(scale(np.array([[[[0, 127.5, 255]]]], np.float32)))
    np.testing.assert_allclose(out.reshape(-1), [-1.0, 0.0, 1.0])


def test_batchnorm_momentum_override_reaches_every_layer(model: keras.Model) -> None:
    layers = model.get_layer("inception_v3").layers
    momenta = [layer.momentum for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(momenta) == 94 and set(momenta) == {0.9}
    with pytest.raises(ValueError, match="bn_momentum"):
        set_batchnorm_momentum(model, 1.5)


def test_head_stays_float32_under_mixed_precision() -> None:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = build_model(75)
    finally:
        keras.config.set_dtype_policy(previous)
    assert mixed.get_layer("trait_probability").dtype_policy.compute_dtype == "float32"
    assert mixed.get_layer("inception_v3").layers[2].compute_dtype == "float16"


def test_too_small_input_is_refused() -> None:
    with pytest.raises(ValueError, match="input_px >= 75"):
        build_model(64)


def test_save_model_insists_on_the_keras_suffix(model: keras.Model, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.keras"):
        save_model(model, tmp_path / "model.h5")
    assert list(tmp_path.iterdir()) == []
