"""Tile streaming: determinism by (seed, step), cross-slide shuffling, flips, resizing, in-order inference batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workflow_scripts.learning.tiledata import (
    StorePool,
    batch_examples,
    build_tile_index,
    decode_flipped,
    epoch_permutation,
    fit_tile,
    ordered_batches,
    read_stored,
    slide_batches,
    stream_examples,
    training_batches,
)
from workflow_scripts.slides.tilestore import TileStore, decode_tile, encode_tile, write_tile_store

TILE_PX = 96


def signal_tile(label: int, rng: np.random.Generator, tile_px: int = TILE_PX) -> np.ndarray:
    """A tile whose colour gives away its label (pink-red for 1, blue-violet for 0) plus texture noise."""
    base = np.array([220, 90, 120] if label else [90, 90, 210], np.float64)
    noise = rng.normal(0, 20, size=(tile_px, tile_px, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_signal_stores(
    folder: Path,
    labels: list[int],
    tiles_per_slide: int = 8,
    tile_px: int = TILE_PX,
    seed: int = 0,
    encoding: str = "jpeg",
) -> list[Path]:
    """Write one small tile store per label (slide_00, slide_01, ...) with the colour signal of `signal_tile`."""
    rng = np.random.default_rng(seed)
    paths = []
    for number, label in enumerate(labels):
        slide_id = f"slide_{number:02d}"
        cols = np.arange(tiles_per_slide) % 4
        rows = np.arange(tiles_per_slide) // 4
        grid = np.stack([cols, rows], axis=1)
        path = folder / f"{slide_id}.h5"
        write_tile_store(
            path,
            slide_id,
            coords=grid * tile_px * 2,
            grid=grid,
            tissue_fraction=np.ones(tiles_per_slide),
            tiles=[signal_tile(label, rng, tile_px) for _ in range(tiles_per_slide)],
            attrs={"tile_px": tile_px, "mpp": 0.5, "level0_tile_px": tile_px * 2, "source_mpp": 0.25,
                   "grid_shape": (4, max(1, (tiles_per_slide + 3) // 4))},
            encoding=encoding,
            jpeg_quality=90,
        )
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four slides of 8 JPEG tiles, alternating labels 0/1."""
    return write_signal_stores(tmp_path_factory.mktemp("stores"), [0, 1, 0, 1])


def test_index_covers_every_tile_with_its_slide_label(stores: list[Path]) -> None:
    index = build_tile_index(stores, [0, 1, 0, 1])
    assert index.n_tiles == 32 and index.n_slides == 4
    assert list(index.tiles_per_store()) == [8, 8, 8, 8]
    assert list(index.labels[::8]) == [0, 1, 0, 1]
    assert list(index.tile_ids[:8]) == list(range(8))


def test_index_subset_per_store_is_seeded_and_sorted(stores: list[Path]) -> None:
    first = build_tile_index(stores, [0, 1, 0, 1], max_tiles_per_store=3, seed=5)
    again = build_tile_index(stores, [0, 1, 0, 1], max_tiles_per_store=3, seed=5)
    assert first.n_tiles == 12
    np.testing.assert_array_equal(first.tile_ids, again.tile_ids)
    for store in range(4):
        ids = first.tile_ids[first.store_ids == store]
        assert list(ids) == sorted(ids) and len(set(ids)) == 3


def test_stream_is_a_concatenation_of_epoch_permutations() -> None:
    rows, _ = stream_examples(n_tiles=10, seed=3, start=0, count=25)
    assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:20]) == list(range(10))
    np.testing.assert_array_equal(rows[10:20], epoch_permutation(10, 3, 1))
    # a batch straddling the epoch boundary equals the same stream positions read directly
    straddling, _ = batch_examples(n_tiles=10, batch_size=4, seed=3, step=2)  # positions 8..11
    np.testing.assert_array_equal(straddling, rows[8:12])
    assert not np.array_equal(epoch_permutation(10, 3, 0), epoch_permutation(10, 3, 1))


def test_training_batches_are_a_pure_function_of_seed_and_step(stores: list[Path]) -> None:
    index = build_tile_index(stores, [0, 1, 0, 1])
    whole = list(training_batches(index, batch_size=5, input_px=75, seed=7, n_steps=9, workers=2))
    resumed = list(training_batches(index, batch_size=5, input_px=75, seed=7, start_step=6, n_steps=3, workers=1))
    for (x_whole, y_whole), (x_resumed, y_resumed) in zip(whole[6:], resumed):
        np.testing.assert_array_equal(x_whole, x_resumed)
        np.testing.assert_array_equal(y_whole, y_resumed)
    x, y = whole[0]
    assert x.shape == (5, 75, 75, 3) and x.dtype == np.uint8 and y.shape == (5, 1) and y.dtype == np.float32
    other_seed = next(training_batches(index, batch_size=5, input_px=75, seed=8, n_steps=1))
    assert not np.array_equal(other_seed[0], x)


def test_batches_mix_slides_and_carry_slide_labels(stores: list[Path]) -> None:
    index = build_tile_index(stores, [0, 1, 0, 1])
    x, y = next(training_batches(index, batch_size=16, input_px=TILE_PX, seed=0, n_steps=1))
    red_dominant = x[..., 0].mean(axis=(1, 2)) > x[..., 2].mean(axis=(1, 2))
    np.testing.assert_array_equal(red_dominant, y[:, 0] == 1)
    assert 0 < y.sum() < 16


def test_training_tiles_are_the_stored_tiles_flipped(stores: list[Path]) -> None:
    index = build_tile_index(stores, [0, 1, 0, 1])
    x, _ = next(training_batches(index, batch_size=32, input_px=TILE_PX, seed=1, n_steps=1))
    rows, flips = batch_examples(index.n_tiles, 32, seed=1, step=0)
    with TileStore(stores[index.store_ids[rows[0]]]) as store:
        original = store.read_tiles([index.tile_ids[rows[0]]])[0]
    expected = original[:, ::-1] if flips[0, 0] else original
    expected = expected[::-1] if flips[0, 1] else expected
    np.testing.assert_array_equal(x[0], expected)
    assert 0 < flips[:, 0].sum() < 32 and 0 < flips[:, 1].sum() < 32


def test_fit_tile_flips_and_resizes_with_antialiasing() -> None:
    tile = np.zeros((4, 4, 3), np.uint8)
    tile[0, 0] = 200
    assert fit_tile(tile, 4, flip_lr=True)[0, 3, 0] == 200
    assert fit_tile(tile, 4, flip_tb=True)[3, 0, 0] == 200
    stripes = np.zeros((96, 96, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: point sampling would alias, area averaging gives mid-grey
    shrunk = fit_tile(stripes, 48)
    assert shrunk.shape == (48, 48, 3)
    assert abs(float(shrunk[10:-10, 10:-10].mean()) - 127.5) < 3
    assert shrunk[10:-10, 10:-10].std() < 3


def test_ordered_batches_follow_store_order(stores: list[Path]) -> None:
    batches = list(slide_batches(stores[1], batch_size=3, input_px=TILE_PX))
    assert [len(batch) for batch in batches] == [3, 3, 2]
    with TileStore(stores[1]) as store:
        np.testing.assert_array_equal(np.concatenate(batches), store.read_tiles(np.arange(8)))
    index = build_tile_index(stores[:2], [0, 1])
    together = np.concatenate(list(ordered_batches(index, batch_size=5, input_px=75)))
    assert together.shape == (16, 75, 75, 3)


def test_empty_store_yields_no_batches_and_training_refuses_it(tmp_path: Path) -> None:
    [empty] = write_signal_stores(tmp_path, [1], tiles_per_slide=0)
    assert list(slide_batches(empty, batch_size=4, input_px=75)) == []
    with pytest.raises(ValueError, match="no training tiles"):
        next(training_batches(build_tile_index([empty], [1]), batch_size=4, input_px=75, seed=0))


def test_decode_flipped_equals_flipping_the_decoded_tile() -> None:
    rng = np.random.default_rng(2)
    tile = rng.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    data = encode_tile(tile, 95)
    decoded = decode_tile(data)
    for flip_lr in (False, True):
        for flip_tb in (False, True):
            expected = decoded[:, ::-1] if flip_lr else decoded
            expected = expected[::-1] if flip_tb else expected
            np.testing.assert_array_equal(decode_flipped(data, flip_lr, flip_tb), expected)


def test_raw_stores_stream_like_jpeg_stores(tmp_path: Path) -> None:
    raw = write_signal_stores(tmp_path / "raw", [0, 1], encoding="raw")
    index = build_tile_index(raw, [0, 1])
    x, _ = next(training_batches(index, batch_size=16, input_px=TILE_PX, seed=4, n_steps=1))
    rows, flips = batch_examples(index.n_tiles, 16, seed=4, step=0)
    with TileStore(raw[index.store_ids[rows[3]]]) as store:
        original = store.read_tiles([index.tile_ids[rows[3]]])[0]
    np.testing.assert_array_equal(x[3], fit_tile(original, TILE_PX, bool(flips[3, 0]), bool(flips[3, 1])))


def test_store_pool_closes_the_least_recently_used_idle_reader(stores: list[Path]) -> None:
    pool = StorePool(stores, max_open=2)
    for store_id in (0, 1, 0, 2, 1):  # by hand: open 0, open 1, hit 0, open 2 (closes 1), open 1 (closes 0)
        pool.acquire(store_id)
        pool.release(store_id)
    assert pool.opens == 4 and pool.open_ids() == [2, 1]
    held = pool.acquire(2)  # a reader in use is never closed, even beyond the cap
    pool.acquire(0)
    assert pool.open_ids() == [2, 0] and held.read(0)
    pool.release(2)
    pool.release(0)
    pool.close()
    assert pool.open_ids() == []
    with pytest.raises(ValueError, match="max_open"):
        StorePool(stores, max_open=0)


def test_read_stored_reads_each_store_once_in_any_row_order(stores: list[Path]) -> None:
    index = build_tile_index(stores, [0, 1, 0, 1])
    rows = np.random.default_rng(5).permutation(index.n_tiles)  # 32 tiles of 4 stores, shuffled across stores
    expected = []
    for row in rows:
        with TileStore(stores[index.store_ids[row]]) as store:
            expected.append(store.read_encoded(int(index.tile_ids[row])))
    for descending in (False, True):
        pool = StorePool(index.stores, max_open=1)
        assert read_stored(index, rows, pool, descending) == expected
        assert pool.opens == 4  # one open per store, though a row-by-row read with one open file would reopen often
        pool.close()
    assert read_stored(index, rows[:0], StorePool(index.stores)) == []


@pytest.mark.parametrize("window_tiles", [1, 7, 12, 4096])
def test_read_windows_do_not_change_the_batches(stores: list[Path], window_tiles: int) -> None:
    index = build_tile_index(stores, [0, 1, 0, 1])
    rows_and_flips = [batch_examples(index.n_tiles, 6, seed=2, step=step) for step in range(3, 10)]
    batches = list(
        training_batches(index, 6, TILE_PX, seed=2, start_step=3, n_steps=7, workers=2, window_tiles=window_tiles)
    )
    assert len(batches) == 7
    for (x, y), (rows, flips) in zip(batches, rows_and_flips):
        for slot in (0, 5):
            with TileStore(stores[index.store_ids[rows[slot]]]) as store:
                tile = store.read_tiles([index.tile_ids[rows[slot]]])[0]
            tile = tile[:, ::-1] if flips[slot, 0] else tile
            np.testing.assert_array_equal(x[slot], tile[::-1] if flips[slot, 1] else tile)
        np.testing.assert_array_equal(y[:, 0], index.labels[rows])
