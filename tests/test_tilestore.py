"""Tile stores round-trip tiles and metadata, validate on open, and are written atomically."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from workflow_scripts.slides.tilestore import StoreAttrs, TileStore, TileStoreError, write_tile_store

ATTRS = {
    "tile_px": 32,
    "mpp": 0.5,
    "level0_tile_px": 64.0,
    "source_mpp": 0.25,
    "grid_shape": (3, 2),
    "source_path": "/x.svs",
}


def smooth_tiles(n: int) -> np.ndarray:
    """Smooth tiles JPEG keeps nearly exactly, each one different."""
    ramp = np.linspace(0, 200, 32, dtype=np.float32)
    tiles = np.empty((n, 32, 32, 3), np.uint8)
    for i in range(n):
        tiles[i, ..., 0] = ramp[None, :]
        tiles[i, ..., 1] = ramp[:, None]
        tiles[i, ..., 2] = 20 * i
    return tiles


def write(path, tiles, encoding="jpeg"):
    n = len(tiles)
    coords = np.stack([np.arange(n) * 64, np.zeros(n)], axis=1)
    grid = np.stack([np.arange(n), np.zeros(n)], axis=1)
    thumbnail = np.full((4, 6, 3), 200, np.uint8)
    return write_tile_store(
        path, "slide-a", coords, grid, np.linspace(1, 0.5, n), iter(tiles), ATTRS, encoding, 95, thumbnail, 16.0
    )


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_round_trip(tmp_path, encoding):
    tiles = smooth_tiles(3)
    write(tmp_path / "a.h5", tiles, encoding)
    with TileStore(tmp_path / "a.h5") as store:
        assert store.n_tiles == 3 and store.tile_px == 32 and store.grid_shape == (3, 2)
        assert store.coords.dtype == np.int64 and store.coords[2].tolist() == [128, 0]
        assert store.grid.dtype == np.int32 and store.grid[1].tolist() == [1, 0]
        assert store.tissue_fraction.tolist() == pytest.approx([1.0, 0.75, 0.5])
        assert store.attrs["slide_id"] == "slide-a" and store.attrs["encoding"] == encoding
        assert store.attrs["source_path"] == "/x.svs" and store.attrs["workflow_version"]
        assert store.thumbnail.shape == (4, 6, 3) and store.thumbnail_downsample == 16.0
        decoded = store.read_tiles([2, 0])
        assert decoded.shape == (2, 32, 32, 3)
        tolerance = 2.0 if encoding == "jpeg" else 0.0
        assert np.abs(decoded.astype(int) - tiles[[2, 0]]).mean() <= tolerance
        if encoding == "jpeg":
            assert store.read_encoded(1)[:2] == b"\xff\xd8"
        else:
            assert np.array_equal(decoded, tiles[[2, 0]])


def test_pre_encoded_bytes_are_stored_verbatim(tmp_path):
    from workflow_scripts.slides.tilestore import encode_tile

    encoded = [encode_tile(tile, 80) for tile in smooth_tiles(2)]
    write(tmp_path / "b.h5", encoded)
    with TileStore(tmp_path / "b.h5") as store:
        assert store.read_encoded(1) == encoded[1]


def test_zero_tiles_is_valid(tmp_path):
    write(tmp_path / "empty.h5", np.zeros((0, 32, 32, 3), np.uint8))
    with TileStore(tmp_path / "empty.h5") as store:
        assert store.n_tiles == 0
        assert store.read_tiles([]).shape == (0, 32, 32, 3)
        assert store.grid_shape == (3, 2)


def test_same_input_gives_identical_bytes(tmp_path):
    write(tmp_path / "one.h5", smooth_tiles(2))
    write(tmp_path / "two.h5", smooth_tiles(2))
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "two.h5").read_bytes()


def test_missing_dataset_is_named(tmp_path):
    write(tmp_path / "c.h5", smooth_tiles(1))
    with h5py.File(tmp_path / "c.h5", "a") as f:  # malformed on purpose
        del f["grid"]
    with pytest.raises(TileStoreError, match=r"c\.h5.*'grid'"):
        TileStore(tmp_path / "c.h5")


def test_not_hdf5_is_named(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(TileStoreError, match="junk.h5"):
        TileStore(tmp_path / "junk.h5")


def test_tile_count_mismatch_leaves_no_store(tmp_path):
    with pytest.raises(TileStoreError, match="1 tiles given for 2"):
        write_tile_store(
            tmp_path / "d.h5", "s", [[0, 0], [64, 0]], [[0, 0], [1, 0]], [1, 1], iter(smooth_tiles(1)), ATTRS
        )
    assert not any(p.name.endswith("d.h5") for p in tmp_path.iterdir())


def test_interrupted_stream_leaves_no_store(tmp_path):
    def dying():
        yield smooth_tiles(1)[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_tile_store(tmp_path / "e.h5", "s", [[0, 0], [64, 0]], [[0, 0], [1, 0]], [1, 1], dying(), ATTRS)
    assert list(tmp_path.iterdir()) == []


def test_wrong_tile_shape_rejected(tmp_path):
    with pytest.raises(TileStoreError, match=r"uint8 \(32, 32, 3\)"):
        write_tile_store(tmp_path / "f.h5", "s", [[0, 0]], [[0, 0]], [1], [np.zeros((16, 16, 3), np.uint8)], ATTRS)


def test_store_attrs_match_the_dict_form_and_mark_unknowns(tmp_path):
    attrs = StoreAttrs(tile_px=32, mpp=0.5, level0_tile_px=64, source_mpp=0.25, source_path="/x.svs", grid_shape=(3, 2))
    assert attrs.as_dict() == ATTRS
    unknown = StoreAttrs(tile_px=32, mpp=0.5, source_path="/y.svs").as_dict()
    assert (unknown["level0_tile_px"], unknown["source_mpp"], unknown["grid_shape"]) == (0.0, 0.0, (0, 0))
    write_tile_store(tmp_path / "s.h5", "s", np.zeros((0, 2)), np.zeros((0, 2)), [], [], attrs)
    with TileStore(tmp_path / "s.h5") as store:
        assert store.grid_shape == (3, 2) and store.attrs["source_path"] == "/x.svs" and store.n_tiles == 0


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_tile_reader_returns_the_stored_tiles(tmp_path, encoding):
    from workflow_scripts.slides.tilestore import TileReader

    tiles = smooth_tiles(3)
    write(tmp_path / "r.h5", tiles, encoding)
    reader = TileReader(tmp_path / "r.h5")
    with TileStore(tmp_path / "r.h5") as store:
        assert reader.encoding == store.encoding == encoding
        for index in range(3):
            stored = reader.read(index)
            if encoding == "jpeg":
                assert stored == store.read_encoded(index)
            else:
                np.testing.assert_array_equal(stored, tiles[index])  # raw stores keep the pixels exactly
    reader.close()


def test_tile_reader_names_a_store_without_tiles(tmp_path):
    from workflow_scripts.slides.tilestore import TileReader

    write(tmp_path / "t.h5", smooth_tiles(1))
    with h5py.File(tmp_path / "t.h5", "a") as f:  # malformed on purpose
        del f["tiles"]
    with pytest.raises(TileStoreError, match=r"t\.h5.*'tiles'"):
        TileReader(tmp_path / "t.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(TileStoreError, match="junk.h5"):
        TileReader(tmp_path / "junk.h5")
