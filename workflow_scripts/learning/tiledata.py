"""Stream labelled tiles from tile stores into fixed-size uint8 batches without holding a cohort in memory.

Training order is a pure function of (seed, position): the stream of training examples is the concatenation of
per-epoch permutations of all tiles (shuffled across slides), permutation e drawn from `numpy.random.default_rng((seed,
e))`; batch b holds stream positions [b * batch_size, (b + 1) * batch_size). Each example's horizontal/vertical flip is
drawn the same way from (seed, epoch), indexed by its position in the epoch. A run restarted at batch b therefore
sees exactly the batches an uninterrupted run would, and no batch is ever short (epochs run into each other).

Batches are uint8 RGB in [0, 255]; the model rescales to [-1, 1] itself (see `model.py`). When the stored tile size
differs from `input_px`, tiles are resized with Pillow's bilinear filter, which widens its support when shrinking
(antialiased, i.e. area-weighted), so downscaling does not alias.

Decoding runs on a thread pool (JPEG decoding and Pillow resizing release the GIL) a few batches ahead of the consumer.
JPEG stores are read as encoded bytes (`TileStore.read_encoded`) and decoded here so that left-right flips can be
folded into the decode (see `decode_flipped`); raw stores go through `TileStore.read_tiles`.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

from workflow_scripts.slides.tilestore import TileReader, TileStore, decode_tile

FLIP_STREAM = 1  # second key of the flip generator, so flips and permutations never share random numbers
# Open tile-store files per pipeline. An open store costs one file descriptor and about 1 MiB of memory (HDF5 file
# and heap caches, measured with 512 px JPEG stores), so a TCGA project (<= 1,100 slides) stays open whole and is
# never reopened; larger cohorts, or a low file limit (see open_store_limit), are read through the least recently
# used subset. bench_pipeline.py measures the reopening cost: ~1 ms of CPU per HDF5 open, first read and close,
# against ~1.8 ms per 512 px decode.
MAX_OPEN_STORES = 1024
FD_RESERVE = 256  # file descriptors left to everything else in the process (libraries, logs, Keras)
# Examples whose stored tiles are read together, store by store. With S stores over the cap, a shuffled window of W
# examples opens about S * (1 - exp(-W / S)) of them once each: at W = 4096 and S = 1000, 0.24 opens per tile
# against 0.94 when reading batch by batch. The window holds W tiles' JPEG bytes, twice over with the read-ahead:
# ~1 GB at 124 kB per 512 px q90 tile.
READ_WINDOW_TILES = 4096


@dataclass(frozen=True)
class TileIndex:
    """Every usable tile of a set of slides: which store, which tile in it, and the slide's label."""

    stores: tuple[Path, ...]
    store_ids: np.ndarray  # (n,) int32: position in `stores`
    tile_ids: np.ndarray  # (n,) int64: tile index inside its store
    labels: np.ndarray  # (n,) float32
    slide_labels: np.ndarray  # (len(stores),) float32: the label of each store

    @property
    def n_tiles(self) -> int:
        """Number of tiles indexed."""
        return len(self.tile_ids)

    @property
    def n_slides(self) -> int:
        """Number of stores (slides) contributing at least one tile."""
        return len(np.unique(self.store_ids))

    def tiles_per_store(self) -> np.ndarray:
        """Tile count of every store, in `stores` order."""
        return np.bincount(self.store_ids, minlength=len(self.stores))


def build_tile_index(
    stores: Sequence[str | os.PathLike],
    labels: Sequence[float] | None = None,
    max_tiles_per_store: int | None = None,
    seed: int = 0,
) -> TileIndex:
    """Index the tiles of `stores` (slide order kept, tiles in store order), each tile inheriting its slide's label.

    `max_tiles_per_store` keeps a seeded random subset of each larger store (in store order), to bound the cost of
    frequent validation passes; None keeps every tile.
    """
    paths = tuple(Path(store) for store in stores)
    slide_labels = checked_slide_labels(len(paths), labels, max_tiles_per_store)
    store_ids, tile_ids = [], []
    for position, path in enumerate(paths):
        with TileStore(path) as store:
            n_tiles = store.n_tiles
        chosen = kept_rows(n_tiles, max_tiles_per_store, seed, position)
        store_ids.append(np.full(len(chosen), position, np.int32))
        tile_ids.append(chosen)
    store_id_array = np.concatenate(store_ids) if store_ids else np.zeros(0, np.int32)
    return TileIndex(
        stores=paths,
        store_ids=store_id_array,
        tile_ids=np.concatenate(tile_ids) if tile_ids else np.zeros(0, np.int64),
        labels=slide_labels[store_id_array],
        slide_labels=slide_labels,
    )


def checked_slide_labels(n_stores: int, labels: Sequence[float] | None, max_tiles: int | None) -> np.ndarray:
    """The stores' labels as float32 (zeros without labels), refusing a length or a subset size that cannot be."""
    slide_labels = np.zeros(n_stores, np.float32) if labels is None else np.asarray(labels, np.float32)
    if len(slide_labels) != n_stores:
        raise ValueError(f"{n_stores} stores but {len(slide_labels)} labels")
    if max_tiles is not None and max_tiles < 1:
        raise ValueError(f"max_tiles_per_store must be >= 1 or None, got {max_tiles}")
    return slide_labels


def kept_rows(n_tiles: int, max_tiles: int | None, seed: int, position: int) -> np.ndarray:
    """Rows kept of the store at `position` with n_tiles: all, or a seeded sorted subset of max_tiles (validation)."""
    if max_tiles is None or n_tiles <= max_tiles:
        return np.arange(n_tiles, dtype=np.int64)
    rng = np.random.default_rng((seed, position))
    return np.sort(rng.choice(n_tiles, size=max_tiles, replace=False)).astype(np.int64)


def epoch_permutation(n_tiles: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the tiles: a pure function of (seed, epoch)."""
    return np.random.default_rng((seed, epoch)).permutation(n_tiles)


def epoch_flips(n_tiles: int, seed: int, epoch: int) -> np.ndarray:
    """(n, 2) booleans: flip left-right, flip top-bottom, for each position of epoch `epoch`."""
    return np.random.default_rng((seed, epoch, FLIP_STREAM)).integers(0, 2, size=(n_tiles, 2)).astype(bool)


def stream_examples(n_tiles: int, seed: int, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Index rows and flips of stream positions [start, start + count) (epochs concatenated)."""
    if n_tiles < 1:
        raise ValueError("cannot draw training examples from an empty tile index")
    positions = np.arange(start, start + count, dtype=np.int64)
    epochs, offsets = np.divmod(positions, n_tiles)
    rows = np.empty(count, np.int64)
    flips = np.empty((count, 2), bool)
    for epoch in np.unique(epochs):
        in_epoch = epochs == epoch
        rows[in_epoch] = epoch_permutation(n_tiles, seed, int(epoch))[offsets[in_epoch]]
        flips[in_epoch] = epoch_flips(n_tiles, seed, int(epoch))[offsets[in_epoch]]
    return rows, flips


def batch_examples(n_tiles: int, batch_size: int, seed: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Index rows and flips of training batch `step`."""
    return stream_examples(n_tiles, seed, step * batch_size, batch_size)


def fit_tile(tile: np.ndarray, input_px: int, flip_lr: bool = False, flip_tb: bool = False) -> np.ndarray:
    """Flip a tile as asked and resize it (antialiased bilinear) to input_px when its size differs."""
    if flip_lr:
        tile = tile[:, ::-1]
    if flip_tb:
        tile = tile[::-1]
    if tile.shape[0] != input_px or tile.shape[1] != input_px:
        image = Image.fromarray(np.ascontiguousarray(tile))
        tile = np.asarray(image.resize((input_px, input_px), Image.Resampling.BILINEAR))
    return tile


def open_store_limit(wanted: int, reserve: int = FD_RESERVE) -> int:
    """Stores a pipeline may keep open: `wanted`, within the file-descriptor limit (raised towards the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + reserve
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - reserve))


class StorePool:
    """A bounded set of open tile-store readers shared by threads: beyond `max_open`, the least recently used idle one
    is closed. `opens` counts the files opened so far (the churn a read order causes)."""

    def __init__(self, paths: Sequence[Path], max_open: int | None = None) -> None:
        max_open = open_store_limit(MAX_OPEN_STORES) if max_open is None else max_open
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self._paths = paths
        self._max_open = max_open
        self._open: OrderedDict[int, TileReader] = OrderedDict()
        self._in_use: dict[int, int] = {}
        self._lock = threading.Lock()
        self.opens = 0

    def acquire(self, store_id: int) -> TileReader:
        """Return the open reader, opening it if needed; pair every call with `release`."""
        with self._lock:
            reader = self._open.get(store_id)
            if reader is None:
                reader = TileReader(self._paths[store_id])
                self._open[store_id] = reader
                self.opens += 1
            self._open.move_to_end(store_id)
            self._in_use[store_id] = self._in_use.get(store_id, 0) + 1
            self._close_surplus()
            return reader

    def release(self, store_id: int) -> None:
        """Mark one use of the store as finished."""
        with self._lock:
            self._in_use[store_id] -= 1
            self._close_surplus()

    def open_ids(self) -> list[int]:
        """Stores open now, least recently used first."""
        with self._lock:
            return list(self._open)

    def _close_surplus(self) -> None:
        """Close idle readers, oldest first, until at most max_open remain."""
        for store_id in list(self._open):
            if len(self._open) <= self._max_open:
                break
            if self._in_use.get(store_id, 0) == 0:
                self._open.pop(store_id).close()

    def close(self) -> None:
        """Close every reader."""
        with self._lock:
            for reader in self._open.values():
                reader.close()
            self._open.clear()


def decode_flipped(data: bytes, flip_lr: bool, flip_tb: bool) -> np.ndarray:
    """Decode a JPEG tile and flip it; a left-right flip decodes to BGR and reverses each row's bytes (RGB mirrored).

    (Mirroring an RGB array directly makes numpy copy 3-byte pixels one by one, costing as much as the decode.)
    """
    if flip_lr:
        bgr = simplejpeg.decode_jpeg(data, colorspace="BGR")
        height, width, _ = bgr.shape
        tile = bgr.reshape(height, width * 3)[:, ::-1].reshape(height, width, 3)
    else:
        tile = decode_tile(data)
    return tile[::-1] if flip_tb else tile


def read_stored(index: TileIndex, rows: np.ndarray, pool: StorePool, descending: bool = False) -> list:
    """The stored tiles (JPEG bytes or raw pixels) of index `rows`, in row order, read store by store.

    Each store of `rows` is acquired once; `descending` walks the stores from the highest id down, so a window read
    after an ascending one starts with the stores the pool still holds open.
    """
    store_ids, tile_ids = index.store_ids[rows], index.tile_ids[rows]
    order = np.lexsort((tile_ids, store_ids))
    order = order[::-1] if descending else order
    stored: list = [None] * len(rows)
    runs = np.flatnonzero(np.diff(store_ids[order])) + 1
    for run in np.split(order, runs) if len(order) else []:
        store_id = int(store_ids[run[0]])
        reader = pool.acquire(store_id)
        try:
            for slot in run:
                stored[slot] = reader.read(int(tile_ids[slot]))
        finally:
            pool.release(store_id)
    return stored


def decode_batch(stored: Sequence, flips: np.ndarray | None, input_px: int) -> np.ndarray:
    """Decode, flip and resize stored tiles (JPEG bytes or raw pixels) into one uint8 batch."""
    batch = np.empty((len(stored), input_px, input_px, 3), np.uint8)
    for slot, payload in enumerate(stored):
        flip_lr, flip_tb = (bool(flips[slot, 0]), bool(flips[slot, 1])) if flips is not None else (False, False)
        if isinstance(payload, bytes):
            batch[slot] = fit_tile(decode_flipped(payload, flip_lr, flip_tb), input_px)
        else:
            batch[slot] = fit_tile(payload, input_px, flip_lr, flip_tb)
    return batch


def _prefetched(tasks: Iterator, workers: int, prefetch: int, pool: StorePool) -> Iterator:
    """Run zero-argument tasks on a thread pool, keeping `prefetch` in flight, yielding results in task order."""
    executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tiledata")
    pending: deque[Future] = deque()
    try:
        for task in tasks:
            pending.append(executor.submit(task))
            if len(pending) > prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
        pool.close()


def _window_tasks(
    index: TileIndex, windows: Iterator[tuple[np.ndarray, np.ndarray]], batch_size: int, input_px: int, pool: StorePool
) -> Iterator:
    """Decoding tasks, one per batch, whose stored tiles a reader thread fetches one window ahead, store by store."""
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tileread")
    ahead: deque[tuple[np.ndarray, np.ndarray, Future]] = deque()

    def batches_of(rows: np.ndarray, flips: np.ndarray, read: Future) -> Iterator:
        stored = read.result()
        for start in range(0, len(rows), batch_size):
            part, part_flips = stored[start : start + batch_size], flips[start : start + batch_size]
            labels = index.labels[rows[start : start + batch_size]].reshape(-1, 1).astype(np.float32)
            yield lambda part=part, part_flips=part_flips, labels=labels: (
                decode_batch(part, part_flips, input_px),
                labels,
            )

    try:
        for number, (rows, flips) in enumerate(windows):
            ahead.append((rows, flips, reader.submit(read_stored, index, rows, pool, number % 2 == 1)))
            if len(ahead) > 1:
                yield from batches_of(*ahead.popleft())
        while ahead:
            yield from batches_of(*ahead.popleft())
    finally:
        reader.shutdown(wait=True, cancel_futures=True)


def training_batches(
    index: TileIndex,
    batch_size: int,
    input_px: int,
    seed: int,
    start_step: int = 0,
    n_steps: int | None = None,
    workers: int = 4,
    prefetch: int | None = None,
    window_tiles: int = READ_WINDOW_TILES,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (tiles uint8 (b, px, px, 3), labels float32 (b, 1)) training batches from `start_step` on.

    Endless when n_steps is None. The examples of about `window_tiles` consecutive positions are drawn and read
    together, store by store, so a shuffled stream over many stores opens each at most once per window (see
    READ_WINDOW_TILES); batch b still holds exactly stream positions [b * batch_size, (b + 1) * batch_size).
    Size: 9 parameters: the stream (index, batch, size, seed, start, length) and three tuning knobs of its reading.
    """
    if index.n_tiles == 0:
        raise ValueError(f"no training tiles in {len(index.stores)} stores")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pool = StorePool(index.stores)
    steps_per_window = max(1, window_tiles // batch_size)

    def windows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, flips) of each read window's whole batches, in step order."""
        step = start_step
        while n_steps is None or step < start_step + n_steps:
            last = step + steps_per_window if n_steps is None else min(step + steps_per_window, start_step + n_steps)
            yield stream_examples(index.n_tiles, seed, step * batch_size, (last - step) * batch_size)
            step = last

    depth = prefetch if prefetch is not None else 2 * max(1, workers)
    yield from _prefetched(_window_tasks(index, windows(), batch_size, input_px, pool), workers, depth, pool)


def ordered_batches(
    index: TileIndex, batch_size: int, input_px: int, workers: int = 2, prefetch: int | None = None
) -> Iterator[np.ndarray]:
    """Yield the indexed tiles in index order (no augmentation) as uint8 batches; the last batch may be short."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pool = StorePool(index.stores)

    def tasks() -> Iterator:
        """One read-and-decode task per consecutive slice of the index (index order is store order)."""
        for start in range(0, index.n_tiles, batch_size):
            rows = np.arange(start, min(start + batch_size, index.n_tiles))
            yield lambda rows=rows: decode_batch(read_stored(index, rows, pool), None, input_px)

    depth = prefetch if prefetch is not None else 2 * max(1, workers)
    yield from _prefetched(tasks(), workers, depth, pool)


def slide_batches(
    store: str | os.PathLike, batch_size: int, input_px: int, workers: int = 2
) -> Iterator[np.ndarray]:
    """Yield every tile of one slide in store order as uint8 batches, for inference."""
    yield from ordered_batches(build_tile_index([store]), batch_size, input_px, workers)
