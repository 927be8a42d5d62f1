"""Match imported patches to a tile store's tiles by their level-0 top-left corners, and check they are as large.

A store tile takes the imported patch whose corner is nearest in Chebyshev distance (max |dx|, |dy|) and at most
half a tile away on each axis; each patch serves one tile. A patch two tiles could take goes to the nearer (ties to
the lower store row); the other tile then tries the patches left, round by round, until no tile gains one.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from workflow_scripts.features.trident_files import FeatureImportError

NEIGHBOURS = 4  # candidate patches per tile in one round (a tile's half-tile square holds at most 4 grid corners)


def _checked_coords(coords: np.ndarray, what: str) -> np.ndarray:
    """(N, 2) float64 corners, refusing other shapes."""
    array = np.asarray(coords, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{what} coordinates must be (N, 2), got {array.shape}")
    return array


def _nearest_free(
    store: np.ndarray, tiles: np.ndarray, imported: np.ndarray, free: np.ndarray, reach: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate (tile, patch, distance) pairs within reach among the free patches, nearest first per tile."""
    patches = np.flatnonzero(free)
    if not len(patches) or not len(tiles):
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    k = min(NEIGHBOURS, len(patches))
    distance, index = cKDTree(imported[patches]).query(store[tiles], k=k, p=np.inf, distance_upper_bound=reach)
    distance, index = distance.reshape(len(tiles), k), index.reshape(len(tiles), k)
    found = np.isfinite(distance)
    rows = np.repeat(tiles, k).reshape(len(tiles), k)
    return rows[found], patches[index[found]], distance[found]


def _claim(tiles: np.ndarray, patches: np.ndarray, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep each tile's nearest candidate, then each patch for its nearest tile (ties: lower tile row, lower patch)."""
    order = np.lexsort((patches, tiles, distance))
    tiles, patches = tiles[order], patches[order]
    _, first = np.unique(tiles, return_index=True)  # each tile's nearest patch (sorted by distance first)
    first = np.sort(first)
    tiles, patches = tiles[first], patches[first]
    _, first = np.unique(patches, return_index=True)  # each patch's nearest tile
    first = np.sort(first)
    return tiles[first], patches[first]


def match_tiles(
    store_coords: np.ndarray, imported_coords: np.ndarray, level0_tile_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pair store tiles with imported patches within half a tile; store_rows increasing, imported_rows aligned."""
    if not level0_tile_px > 0:
        raise ValueError(f"level0_tile_px must be > 0, got {level0_tile_px}")
    store = _checked_coords(store_coords, "store")
    imported = _checked_coords(imported_coords, "imported")
    reach = float(np.nextafter(level0_tile_px / 2.0, np.inf))  # the query keeps distances strictly below reach
    partner = np.full(len(store), -1, np.int64)
    free = np.ones(len(imported), bool)
    waiting = np.arange(len(store), dtype=np.int64)
    while len(waiting) and free.any():
        tiles, patches = _claim(*_nearest_free(store, waiting, imported, free, reach))
        if not len(tiles):
            break
        partner[tiles] = patches
        free[patches] = False
        waiting = waiting[partner[waiting] < 0]
    store_rows = np.flatnonzero(partner >= 0).astype(np.int64)
    return store_rows, partner[store_rows]


def check_resolution(slide_id: str, expected_um: float, found_um: float, rel_tol: float = 0.02) -> None:
    """Refuse imported patches whose physical side differs from the store's tiles by more than rel_tol."""
    if not (expected_um > 0 and found_um > 0 and abs(found_um - expected_um) <= rel_tol * expected_um):
        raise FeatureImportError(
            f"slide {slide_id}: imported patches are {found_um:.1f} um wide, the tile store's tiles "
            f"{expected_um:.1f} um (tile_px x mpp): extract features at the store's magnification and patch size"
        )
