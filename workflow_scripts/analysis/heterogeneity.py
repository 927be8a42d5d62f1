"""Heterogeneity of a molecular cartography: the HTI of Levy-Jurgenson et al. 2020 and the spatial HTA index.

Definitions implemented here (README-ready)
-------------------------------------------
Let K >= 2 traits be predicted per tile (1 = positive).  Each tile's *combination* is the set of traits it is
positive for, encoded as the bitmask ``id = sum_k positive_k * 2**k`` (trait k = bit k), so the C = 2**K - 1
non-empty combinations have ids 1..C and id 0 means "positive for no trait".

HTI (Sci Rep 2020):  HTI = - sum_{i=1..C} p_i * log_C(p_i), where p_i is the fraction of the tiles positive for
at least one trait whose positive set is exactly combination i (0 * log 0 = 0).  Tiles positive for no trait and
background cells (no tile; value 255 in a cartography tensor, or False in a mask) are excluded.  HTI lies in
[0, 1]: 0 when all positive tiles share one combination, 1 when all C combinations are equally frequent.  A slide
with no positive tile has an undefined HTI, reported as NaN (missing), never as 0.

HTA (Levy-Jurgenson et al., Bioinformatics 2021, "Assessing heterogeneity in spatial data using the HTA index"):
the grid is cut into square regions of ``region_size`` x ``region_size`` tiles starting at the top-left cell
(row 0, column 0; regions at the right/bottom edges may be smaller).  For each region k with n_k > 0 positive
tiles, HTI_k is the HTI of that region alone (same log base C = 2**K - 1).  HTA = sum_k w_k * HTI_k with
w_k = n_k / sum_j n_j.  HTA is low when every region is internally homogeneous, even if the regions differ
(spatially segregated subclones: low HTA with high global HTI); it approaches HTI when combinations are mixed
everywhere.  Significance: the null model keeps the positions of the positive tiles (hence every w_k) and
shuffles their combinations uniformly across those positions (seeded).  ``p_value`` is the left-tailed Monte-Carlo
p-value (1 + #{null HTA <= observed HTA}) / (1 + n_permutations); ``p_value_clt`` is the paper's normal
approximation: z = (HTA - sum_k mean_k) / sqrt(sum_k var_k) over the permutation means and variances of the
weighted regional terms w_k * HTI_k, p = Phi(z).

Log base (``heterogeneity.hta_log_base``, LOG_BASES): ``combinations`` (default) is the 2020 paper's text, base
C = 2**K - 1 for HTI and for every regional HTI of HTA.  ``observed`` is what the reference package (PyPI ``hta``
0.1.0, ``HTA._HTI``) does: base = the number of non-empty combinations observed on the slide (its positive tiles
after background and mask), for HTI and HTA alike; with one observed combination every entropy is 0, so HTI and
HTA are 0.  On one slide the two differ by the constant factor log(C) / log(observed) (ln 3 / ln 2 for two
traits with one combination missing), so both p-values (permutations keep the slide's combinations) are unchanged
up to floating-point ties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

BACKGROUND = 255
LOG_BASES = ("combinations", "observed")


def n_combinations(n_traits: int) -> int:
    """Number of non-empty trait combinations, C = 2**K - 1, the log base that bounds HTI by 1."""
    if n_traits < 2:
        raise ValueError(f"heterogeneity needs at least 2 traits, got {n_traits}")
    return 2**n_traits - 1


def combination_members(combination_id: int, n_traits: int) -> tuple[bool, ...]:
    """Which traits are positive in a combination id (trait k = bit k), for naming and colouring."""
    return tuple(bool(combination_id >> k & 1) for k in range(n_traits))


def combination_label(combination_id: int, traits: list[str]) -> str:
    """Human name of a combination such as 'MKI67+ miR-17-5p-', used in legends and column names."""
    members = combination_members(combination_id, len(traits))
    return " ".join(f"{trait}{'+' if positive else '-'}" for trait, positive in zip(traits, members))


def positive_and_mask(
    values: np.ndarray, mask: np.ndarray | None = None, background_value: int = BACKGROUND
) -> tuple[np.ndarray, np.ndarray]:
    """Split a cartography tensor or boolean array (..., K) into positive flags and a tile (non-background) mask."""
    array = np.asarray(values)
    if array.ndim < 1 or array.shape[-1] < 1:
        raise ValueError(f"expected an array (..., K) of trait flags, got shape {array.shape}")
    if array.dtype == bool:
        tiles = np.ones(array.shape[:-1], dtype=bool)
        positive = array
    else:
        background = np.any(array == background_value, axis=-1)
        tiles = ~background
        unexpected = ~np.isin(array[tiles], (0, 1))
        if unexpected.any():
            raise ValueError(f"trait flags must be 0/1 (or {background_value} for background), found other values")
        positive = (array == 1) & tiles[..., None]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tiles.shape:
            raise ValueError(f"mask shape {mask.shape} does not match the spatial shape {tiles.shape}")
        tiles = tiles & mask
    return positive & tiles[..., None], tiles


def combination_ids(positive: np.ndarray) -> np.ndarray:
    """Bitmask id of each position's positive trait set (0 = positive for none)."""
    positive = np.asarray(positive, dtype=bool)
    weights = (1 << np.arange(positive.shape[-1])).astype(np.int64)
    return positive.astype(np.int64) @ weights


def entropy_base(n_traits: int, observed_ids: np.ndarray, log_base: str) -> int:
    """The log base of HTI and HTA: C = 2**K - 1 (the paper), or the slide's observed combinations (`hta` package)."""
    if log_base == "combinations":
        return n_combinations(n_traits)
    if log_base == "observed":
        return int(np.unique(observed_ids[observed_ids > 0]).size)
    raise ValueError(f"heterogeneity.hta_log_base must be one of {list(LOG_BASES)}, got {log_base!r}")


def _entropy(counts: np.ndarray, base: int) -> np.ndarray:
    """Entropy in the given base of count vectors along the last axis; NaN where a vector sums to zero.

    Base 1 (one observed combination) can only meet vectors with a single non-zero count: their entropy is 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = counts / totals
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    entropy = terms.sum(axis=-1) / (math.log(base) if base > 1 else 1.0)
    entropy = np.where(totals[..., 0] > 0, entropy, np.nan)
    return np.clip(entropy, 0.0, 1.0, where=~np.isnan(entropy), out=entropy)


def combination_counts(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Count of positive tiles per non-empty combination (index i-1 for combination id i)."""
    positive, tiles = positive_and_mask(values, mask)
    n_comb = n_combinations(positive.shape[-1])
    ids = combination_ids(positive)[tiles]
    return np.bincount(ids[ids > 0] - 1, minlength=n_comb)[:n_comb]


def combination_proportions(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Fractions p_i of positive tiles per non-empty combination; all NaN when no tile is positive."""
    counts = combination_counts(values, mask).astype(np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.full(counts.shape, np.nan)


def hti(positive: np.ndarray, mask: np.ndarray | None = None, log_base: str = "combinations") -> float:
    """Heterogeneity index of the paper: normalised entropy of positive tiles' trait combinations (NaN if none)."""
    counts = combination_counts(positive, mask)
    n_traits = np.asarray(positive).shape[-1]
    return float(_entropy(counts, entropy_base(n_traits, np.flatnonzero(counts) + 1, log_base)))


def _region_index(shape: tuple[int, int], region_size: int) -> tuple[np.ndarray, int]:
    """Region number of every grid cell for square regions of side region_size from the top-left corner."""
    if region_size < 1:
        raise ValueError(f"HTA region size must be >= 1 tile, got {region_size}")
    n_rows, n_cols = shape
    region_cols = -(-n_cols // region_size)
    rows = np.arange(n_rows)[:, None] // region_size
    cols = np.arange(n_cols)[None, :] // region_size
    return rows * region_cols + cols, (-(-n_rows // region_size)) * region_cols


def _weighted_region_hti(
    region_of_tile: np.ndarray, ids: np.ndarray, n_regions: int, n_comb: int, base: int
) -> np.ndarray:
    """w_k * HTI_k per region (0 for regions without positive tiles) for one assignment of combinations."""
    counts = np.bincount(region_of_tile * n_comb + ids - 1, minlength=n_regions * n_comb).reshape(n_regions, n_comb)
    per_region = counts.sum(axis=1)
    region_hti = np.nan_to_num(_entropy(counts, base), nan=0.0)
    return region_hti * per_region / per_region.sum()


@dataclass(frozen=True)
class HTAResult:
    """HTA of one map with its permutation p-values (NaN when the map has no positive tile)."""

    hta: float
    p_value: float
    p_value_clt: float
    null_mean: float
    n_regions: int
    n_positive: int


def _positive_layout(values: np.ndarray, mask: np.ndarray | None, region_size: int, log_base: str):
    """Region number and combination id of every positive tile of a 2-D map (H, W, K), regions, C and log base."""
    positive, tiles = positive_and_mask(values, mask)
    if positive.ndim != 3:
        raise ValueError(f"HTA needs a 2-D map (H, W, K), got shape {positive.shape}")
    n_comb = n_combinations(positive.shape[-1])
    ids = np.where(tiles, combination_ids(positive), 0)
    regions, n_regions = _region_index(ids.shape, region_size)
    selected = ids > 0
    base = entropy_base(positive.shape[-1], ids[selected], log_base)
    return regions[selected], ids[selected], n_regions, n_comb, base


def hta(
    values: np.ndarray, region_size: int, mask: np.ndarray | None = None, log_base: str = "combinations"
) -> float:
    """HTA: positive-tile-weighted mean of regional HTIs; low when heterogeneity is spatially segregated."""
    region_of_tile, ids, n_regions, n_comb, base = _positive_layout(values, mask, region_size, log_base)
    if ids.size == 0:
        return float("nan")
    return float(_weighted_region_hti(region_of_tile, ids, n_regions, n_comb, base).sum())


def hta_test(
    values: np.ndarray,
    region_size: int,
    permutations: int = 1000,
    seed: int | list[int] = 0,
    mask: np.ndarray | None = None,
    log_base: str = "combinations",
) -> HTAResult:
    """HTA with left-tailed permutation p-values (shuffling combinations over positive positions), seeded."""
    if permutations < 1:
        raise ValueError(f"HTA needs at least one permutation, got {permutations}")
    region_of_tile, ids, n_regions, n_comb, base = _positive_layout(values, mask, region_size, log_base)
    if ids.size == 0:
        return HTAResult(float("nan"), float("nan"), float("nan"), float("nan"), 0, 0)
    observed_terms = _weighted_region_hti(region_of_tile, ids, n_regions, n_comb, base)
    observed = float(observed_terms.sum())
    rng = np.random.default_rng(seed)
    null_terms = np.empty((permutations, n_regions))
    for index in range(permutations):
        null_terms[index] = _weighted_region_hti(region_of_tile, rng.permutation(ids), n_regions, n_comb, base)
    null_hta = null_terms.sum(axis=1)
    tolerance = 1e-12
    p_value = (1 + np.count_nonzero(null_hta <= observed + tolerance)) / (1 + permutations)
    spread = math.sqrt(null_terms.var(axis=0, ddof=1).sum()) if permutations > 1 else 0.0
    centre = float(null_terms.mean(axis=0).sum())
    if spread > 0:
        p_value_clt = float(norm.cdf((observed - centre) / spread))
    else:
        p_value_clt = 1.0 if observed >= centre - tolerance else 0.0
    n_used_regions = int(np.count_nonzero(np.bincount(region_of_tile, minlength=n_regions)))
    return HTAResult(observed, float(p_value), p_value_clt, centre, n_used_regions, int(ids.size))


def select_traits(tensor: np.ndarray, tensor_traits: list[str], chosen: list[str], source: str) -> np.ndarray:
    """Take the chosen traits' layers (in the chosen order) from a cartography tensor, naming the file if absent."""
    missing = [trait for trait in chosen if trait not in tensor_traits]
    if missing:
        raise KeyError(f"{source}: traits {missing} are not in the cartography (has {tensor_traits})")
    return tensor[..., [tensor_traits.index(trait) for trait in chosen]]
