"""Encoders and the `embed` stage: settings, normalisation and pooling known answers, weights fingerprints, and
feature stores aligned row by row with their tile stores."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from test_tiledata import write_signal_stores
from workflow_scripts.features.embed import as_float16, embed_slide, embed_slides
from workflow_scripts.features.encoder import (
    EncoderSettings,
    build_backbone,
    build_encoder,
    encoder_label,
    load_encoder,
    weights_sha256,
)
from workflow_scripts.features.featurestore import read_features
from workflow_scripts.learning.devices import dtype_policy
from workflow_scripts.learning.model import save_model
from workflow_scripts.learning.settings import TrainingSettings
from workflow_scripts.learning.tiledata import fit_tile
from workflow_scripts.slides.tilestore import TileStore

CPU = TrainingSettings(device="cpu", workers=1)
PX = 8  # side of the hand-made tiles of the known-answer tests


def saved_backbone(path: Path, px: int, *layers: keras.layers.Layer) -> str:
    """Save a functional backbone (px, px, 3) -> layers to a .keras file; return its path as the encoder name."""
    inputs = keras.Input(shape=(px, px, 3), name="pixels")
    outputs = inputs
    for layer in layers or (keras.layers.Identity(),):
        outputs = layer(outputs)
    save_model(keras.Model(inputs, outputs), path)
    return str(path)


def embed_hand_made(name: str, tile: np.ndarray, **config: object) -> np.ndarray:
    """The embedding of one hand-made uint8 tile by the encoder around the backbone file `name`."""
    settings = EncoderSettings.from_config({"name": name, "input_px": tile.shape[0], **config})
    model = build_encoder(settings, seed=0)
    return keras.ops.convert_to_numpy(model(tile[None], training=False))[0]


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A backbone file whose output is its (normalised) input, 4D."""
    return saved_backbone(tmp_path_factory.mktemp("identity") / "identity.keras", PX)


def constant_tile(rgb: tuple[int, int, int]) -> np.ndarray:
    """A PX x PX tile of one colour."""
    return np.broadcast_to(np.array(rgb, np.uint8), (PX, PX, 3)).copy()


@pytest.mark.parametrize(
    ("normalisation", "expected"),
    [
        # (255/255 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128/255 - 0.406) / 0.225
        ("imagenet", [0.515 / 0.229, -0.456 / 0.224, (128 / 255 - 0.406) / 0.225]),
        ("inception", [1.0, -1.0, 128 / 127.5 - 1]),
        ("unit", [1.0, 0.0, 128 / 255]),
        ("none", [255.0, 0.0, 128.0]),
        ({"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.25, 1.0]}, [1.0, -2.0, 128 / 255 - 0.5]),
    ],
    ids=["imagenet", "inception", "unit", "none", "custom"],
)
def test_normalisation_of_a_constant_tile(identity: str, normalisation: object, expected: list[float]) -> None:
    embedding = embed_hand_made(identity, constant_tile((255, 0, 128)), normalisation=normalisation)
    assert embedding.dtype == np.float32 and embedding.shape == (3,)
    np.testing.assert_allclose(embedding, expected, rtol=1e-5, atol=1e-6)


def test_mixed_precision_still_gives_float32_embeddings(identity: str) -> None:
    settings = EncoderSettings.from_config({"name": identity, "input_px": PX, "normalisation": "inception"})
    with dtype_policy("mixed_bfloat16"):
        model = build_encoder(settings, seed=0)
    output = keras.ops.convert_to_numpy(model(constant_tile((255, 0, 64))[None], training=False))[0]
    assert output.dtype == np.float32
    np.testing.assert_allclose(output, [1.0, -1.0, 64 / 127.5 - 1], atol=1e-2)  # bfloat16 keeps ~3 digits


def ramp_tile() -> np.ndarray:
    """Pixel (row r, column c) = (8r + c, 2 (8r + c), 255 - (8r + c)): every pixel different, known means and maxima."""
    values = np.arange(PX * PX, dtype=np.int64).reshape(PX, PX)
    return np.stack([values, 2 * values, 255 - values], axis=-1).astype(np.uint8)


def test_pooling_known_answers(tmp_path: Path, identity: str) -> None:
    tile = ramp_tile()  # values 0..63: mean 31.5, max 63, first pixel (0, 0, 255)
    assert np.allclose(embed_hand_made(identity, tile, normalisation="none", pooling="avg"), [31.5, 63, 223.5])
    assert np.allclose(embed_hand_made(identity, tile, normalisation="none", pooling="max"), [63, 126, 255])
    tokens = saved_backbone(tmp_path / "tokens.keras", PX, keras.layers.Reshape((PX * PX, 3)))  # (B, 64, 3) tokens
    assert np.allclose(embed_hand_made(tokens, tile, normalisation="none", pooling="cls"), [0, 0, 255])
    assert np.allclose(embed_hand_made(tokens, tile, normalisation="none", pooling="avg"), [31.5, 63, 223.5])
    assert np.allclose(embed_hand_made(tokens, tile, normalisation="none", pooling="max"), [63, 126, 255])
    vector = saved_backbone(tmp_path / "vector.keras", PX, keras.layers.Flatten())  # (B, 192)
    flat = embed_hand_made(vector, tile, normalisation="unit", pooling="none")
    np.testing.assert_allclose(flat, tile.reshape(-1) / 255, rtol=1e-6)


@pytest.mark.parametrize(
    ("backbone", "pooling", "shape"),
    [("maps", "cls", r"\(None, 8, 8, 3\)"), ("maps", "none", "4D"), ("tokens", "none", r"\(None, 64, 3\)"),
     ("vector", "avg", r"\(None, 192\)")],
)
def test_pooling_that_does_not_fit_the_output_names_the_key(
    tmp_path: Path, backbone: str, pooling: str, shape: str
) -> None:
    layer = {"maps": keras.layers.Identity(), "tokens": keras.layers.Reshape((PX * PX, 3)),
             "vector": keras.layers.Flatten()}[backbone]
    name = saved_backbone(tmp_path / f"{backbone}.keras", PX, layer)
    with pytest.raises(ValueError, match=f"features.encoder.pooling: '{pooling}' does not fit .*{shape}"):
        build_encoder(EncoderSettings.from_config({"name": name, "input_px": PX, "pooling": pooling}), seed=0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"nmae": "x"}, "features.encoder.nmae: unknown key"),
        ({"name": "ResNet50"}, "features.encoder.name must be"),
        ({"name": "keras.applications:"}, "features.encoder.name: .* names no model"),
        ({"weights": "resnet.h5"}, "features.encoder.weights must be"),
        ({"name": "m.keras", "weights": "imagenet"}, "features.encoder.weights: a .keras file carries"),
        ({"input_px": 0}, "features.encoder.input_px must be an integer >= 1"),
        ({"input_px": 224.0}, "features.encoder.input_px must be an integer"),
        ({"batch_size": True}, "features.encoder.batch_size must be an integer >= 1"),
        ({"batch_size": 0}, "features.encoder.batch_size must be an integer >= 1"),
        ({"normalisation": "z-score"}, "features.encoder.normalisation must be one of"),
        ({"normalisation": {"mean": [0.5, 0.5, 0.5]}}, "features.encoder.normalisation must have exactly"),
        ({"normalisation": {"mean": [0.5, 0.5], "std": [1, 1, 1]}}, "features.encoder.normalisation.mean must be"),
        ({"normalisation": {"mean": [0, 0, 0], "std": [1, 0, 1]}}, r"features.encoder.normalisation.std must be > 0"),
        ({"pooling": "mean"}, "features.encoder.pooling must be one of"),
    ],
)
def test_bad_settings_name_their_key(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EncoderSettings.from_config(config)


def test_missing_files_and_libraries_are_named(tmp_path: Path, identity: str) -> None:
    with pytest.raises(FileNotFoundError, match="features.encoder.name: encoder model file not found: .*absent"):
        build_encoder(EncoderSettings(name=str(tmp_path / "absent.keras"), input_px=PX), seed=0)
    with pytest.raises(FileNotFoundError, match="features.encoder.weights: weights file not found"):
        build_encoder(EncoderSettings(name=identity, weights=str(tmp_path / "w.weights.h5"), input_px=PX), seed=0)
    with pytest.raises(ValueError, match="keras.applications has no model 'ResNet51'"):
        build_encoder(EncoderSettings(name="keras.applications:ResNet51"), seed=0)
    with pytest.raises(ValueError, match=r"features.encoder.input_px: the backbone takes \(None, 8, 8, 3\)"):
        build_encoder(EncoderSettings(name=identity, input_px=32), seed=0)
    if importlib.util.find_spec("keras_hub") is not None:
        pytest.skip("keras-hub is installed here: its missing-library message cannot be shown")
    with pytest.raises(ImportError, match="keras-hub is not installed: pip install keras-hub"):
        build_encoder(EncoderSettings(name="keras_hub:vit_large_patch16_224_imagenet"), seed=0)


def test_weights_fingerprint_follows_the_weights_whatever_their_source(tmp_path: Path) -> None:
    settings = EncoderSettings(name="keras.applications:MobileNetV3Small", input_px=32, normalisation="none")
    first, again, other = (load_encoder(settings, seed) for seed in (1, 1, 2))
    assert first.weights_sha256 == again.weights_sha256 != other.weights_sha256
    assert len(first.weights_sha256) == 64 and int(first.weights_sha256, 16) >= 0
    keras.utils.set_random_seed(1)
    weights = tmp_path / "mobilenet.weights.h5"
    build_backbone(settings).save_weights(weights)  # seed 1's backbone, loaded into a seed-2 build below
    from_file = load_encoder(replace(settings, weights=str(weights)), seed=2)
    assert from_file.weights_sha256 == first.weights_sha256
    assert from_file.label == (
        "keras.applications:MobileNetV3Small weights=mobilenet.weights.h5 normalisation=none pooling=avg"
    )
    variable = other.model.weights[0]
    variable.assign(variable.numpy() + 1)
    assert weights_sha256(other.model) != other.weights_sha256


def test_labels_name_backbone_weights_normalisation_and_pooling(identity: str) -> None:
    assert encoder_label(EncoderSettings()) == (
        "keras.applications:ResNet50 weights=random normalisation=imagenet pooling=avg"
    )
    custom = EncoderSettings.from_config(
        {"name": identity, "normalisation": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}, "pooling": "max"}
    )
    assert encoder_label(custom) == (
        "identity.keras weights=saved normalisation=mean[0.5,0.5,0.5]std[0.25,0.25,0.25] pooling=max"
    )
    assert custom.normalisation == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # one form, from a mapping or a tuple
    assert replace(custom, pooling="avg").normalisation == custom.normalisation and hash(custom)


def decoded_tiles(store_path: Path, input_px: int) -> np.ndarray:
    """The store's tiles decoded and resized as the embedding reads them."""
    with TileStore(store_path) as store:
        return np.stack([fit_tile(tile, input_px) for tile in store.read_tiles(np.arange(store.n_tiles))])


def test_feature_stores_align_with_tile_stores(tmp_path: Path) -> None:
    stores = write_signal_stores(tmp_path / "tiles", [1, 0], tiles_per_slide=7)  # 96 px tiles, embedded at 64 px
    empty = write_signal_stores(tmp_path / "empty", [1], tiles_per_slide=0)[0].rename(tmp_path / "tiles/slide_e.h5")
    name = saved_backbone(
        tmp_path / "tiny.keras", 64, keras.layers.Conv2D(8, 5, strides=4, activation="relu"), keras.layers.Conv2D(6, 3)
    )
    settings = EncoderSettings(name=name, input_px=64, normalisation="inception", pooling="avg", batch_size=4)
    ordered = [stores[0], empty, stores[1]]  # batches of 4 span the 7 + 0 + 7 tiles' slide boundaries
    runs = []
    for run in ("a", "b"):
        outputs = [tmp_path / run / f"{path.stem}.h5" for path in ordered]
        assert embed_slides(ordered, outputs, settings, CPU, seed=3, log=lambda line: None) == outputs
        runs.append(outputs)
    assert [path.read_bytes() for path in runs[0]] == [path.read_bytes() for path in runs[1]]
    model = build_encoder(settings, seed=3)
    for store_path, output in zip(ordered, runs[0]):
        features = read_features(output)
        with TileStore(store_path) as store:
            np.testing.assert_array_equal(features.coords, store.coords)
            n_tiles = store.n_tiles
        np.testing.assert_array_equal(features.tile_rows, np.arange(n_tiles))
        assert features.slide_id == store_path.stem and features.features.shape == (n_tiles, 6)
        assert features.features.dtype == np.float16
        assert features.attrs.source == "encoder" and features.attrs.input_px == 64
        assert features.attrs.n_store_tiles == n_tiles and features.attrs.weights_sha256 == weights_sha256(model)
        assert features.attrs.encoder == "tiny.keras weights=saved normalisation=inception pooling=avg"
        if n_tiles:
            expected = keras.ops.convert_to_numpy(model(decoded_tiles(store_path, 64), training=False))
            np.testing.assert_allclose(features.features.astype(np.float32), expected, rtol=2e-3, atol=2e-3)
    assert read_features(runs[0][1]).n_tiles == 0 and read_features(runs[0][1]).dim == 6


def test_keras_application_embeds_a_slide(tmp_path: Path) -> None:
    store = write_signal_stores(tmp_path, [0], tiles_per_slide=5)[0]
    settings = EncoderSettings(name="keras.applications:MobileNetV3Small", input_px=64, normalisation="none")
    encoder = load_encoder(settings, seed=0)
    features = embed_slide(store, encoder, batch_size=4, workers=1)
    assert features.features.shape == (5, 576) and features.features.dtype == np.float16
    expected = keras.ops.convert_to_numpy(encoder.model(decoded_tiles(store, 64), training=False))
    np.testing.assert_allclose(features.features.astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_embeddings_beyond_float16_are_refused_naming_the_slide(tmp_path: Path) -> None:
    assert as_float16(np.array([[65504.0, -1.5]]), "s").tolist() == [[65504.0, -1.5]]
    with pytest.raises(ValueError, match="s: 1 embedding values are NaN, inf or beyond float16"):
        as_float16(np.array([[7e4, 0.0]]), "s")
    store = write_signal_stores(tmp_path, [1], tiles_per_slide=2)[0]
    loud = saved_backbone(tmp_path / "loud.keras", 96, keras.layers.Rescaling(1000.0))  # 255 -> 255,000
    settings = EncoderSettings(name=loud, input_px=96, normalisation="none", pooling="max")
    with pytest.raises(ValueError, match="slide_00.h5: slide slide_00: .* beyond float16"):
        embed_slide(store, load_encoder(settings, seed=0), batch_size=2)
