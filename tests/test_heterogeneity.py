"""HTI and HTA against hand-computed values, including background handling and permutation p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hta.stats import HTA as ReferenceHTA

from workflow_scripts.analysis.heterogeneity import (
    combination_label,
    combination_proportions,
    hta,
    hta_test,
    hti,
    positive_and_mask,
    select_traits,
)

BG = 255


def _map(rows: list[list[tuple[int, ...] | None]]) -> np.ndarray:
    """Cartography tensor from nested lists of per-trait tuples (None = background)."""
    k = len(next(cell for row in rows for cell in row if cell is not None))
    return np.array([[cell if cell is not None else (BG,) * k for cell in row] for row in rows], dtype=np.uint8)


def test_homogeneous_slide_has_zero_hti():
    positive = np.array([[1, 0]] * 5, dtype=bool)
    assert hti(positive) == 0.0


def test_equal_thirds_over_two_traits_is_one():
    positive = np.array([[1, 0], [0, 1], [1, 1]] * 4, dtype=bool)
    assert hti(positive) == pytest.approx(1.0)
    assert combination_proportions(positive) == pytest.approx([1 / 3, 1 / 3, 1 / 3])


def test_two_of_three_combinations_half_half():
    # p = (1/2, 1/2, 0) -> HTI = log(2) / log(3)
    positive = np.array([[1, 0], [0, 1], [0, 0], [0, 0]], dtype=bool)
    assert hti(positive) == pytest.approx(math.log(2) / math.log(3))


def test_three_traits_uses_seven_combinations():
    # combinations {A}: 2 tiles, {B,C}: 1 tile, {A,B,C}: 1 tile -> p = (1/2, 1/4, 1/4), base 7
    positive = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 0]], dtype=bool)
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) / math.log(7)
    assert hti(positive) == pytest.approx(expected)
    all_seven = np.array([[(c >> k) & 1 for k in range(3)] for c in range(1, 8)], dtype=bool)
    assert hti(all_seven) == pytest.approx(1.0)


def test_no_positive_tile_is_nan_not_zero():
    assert math.isnan(hti(np.zeros((4, 4, 2), dtype=np.uint8)))
    assert np.isnan(combination_proportions(np.zeros((3, 2), dtype=bool))).all()


def test_background_cells_are_ignored():
    tensor = _map([[(1, 0), (0, 1), None], [(1, 1), None, (0, 0)]])
    assert hti(tensor) == pytest.approx(1.0)
    # marking the (1,1) tile as background through a mask leaves two combinations, half each
    mask = np.array([[True, True, True], [False, True, True]])
    assert hti(tensor, mask=mask) == pytest.approx(math.log(2) / math.log(3))


def test_single_trait_is_refused_and_labels_name_signs():
    with pytest.raises(ValueError, match="at least 2 traits"):
        hti(np.ones((3, 1), dtype=bool))
    assert combination_label(1, ["MKI67", "miR-17-5p"]) == "MKI67+ miR-17-5p-"
    assert combination_label(3, ["MKI67", "miR-17-5p"]) == "MKI67+ miR-17-5p+"


def test_select_traits_reorders_and_names_missing():
    tensor = _map([[(1, 0, 1), None]])
    picked = select_traits(tensor, ["A", "B", "C"], ["C", "A"], "x.h5")
    assert picked[0, 0].tolist() == [1, 1] and picked[0, 1].tolist() == [BG, BG]
    with pytest.raises(KeyError, match="x.h5"):
        select_traits(tensor, ["A", "B", "C"], ["D", "A"], "x.h5")


def _segregated_map() -> np.ndarray:
    """8x8 map of three 4x4 homogeneous blocks (one per combination) and one block with no positive tile."""
    tensor = np.zeros((8, 8, 2), dtype=np.uint8)
    tensor[:4, :4] = (1, 0)
    tensor[:4, 4:] = (0, 1)
    tensor[4:, :4] = (1, 1)
    return tensor


def test_hta_hand_computed_on_mixed_regions():
    # region size 2 over a 2x4 map: left region {A, A, B, B} -> HTI log2/log3, right region all {A} -> 0
    tensor = _map([[(1, 0), (1, 0), (1, 0), (1, 0)], [(0, 1), (0, 1), (1, 0), (0, 0)]])
    left = math.log(2) / math.log(3)
    assert hta(tensor, region_size=2) == pytest.approx(left * 4 / 7)


def test_segregated_subclones_low_hta_high_hti():
    tensor = _segregated_map()
    assert hti(tensor) == pytest.approx(1.0)
    result = hta_test(tensor, region_size=4, permutations=200, seed=1)
    assert result.hta == pytest.approx(0.0)
    assert result.p_value == pytest.approx(1 / 201)
    assert result.p_value_clt < 1e-6
    assert result.n_regions == 3 and result.n_positive == 48


def test_random_maps_have_unremarkable_p_values():
    # under the null the permutation p-value is uniform: few small values, mean near 1/2
    rng = np.random.default_rng(7)
    p_values = []
    for index in range(30):
        tensor = rng.integers(0, 2, size=(16, 16, 2)).astype(np.uint8)
        tensor[rng.random((16, 16)) < 0.2] = BG
        result = hta_test(tensor, region_size=4, permutations=99, seed=index)
        assert result.hta == pytest.approx(hta(tensor, region_size=4))
        p_values.append(result.p_value)
    p_values = np.array(p_values)
    assert np.mean(p_values <= 0.05) <= 0.2
    assert 0.3 < p_values.mean() < 0.7


def test_hta_is_seeded_and_nan_without_positive_tiles():
    tensor = np.random.default_rng(0).integers(0, 2, size=(10, 10, 3)).astype(np.uint8)
    assert hta_test(tensor, 3, 50, seed=5) == hta_test(tensor, 3, 50, seed=5)
    empty = hta_test(np.zeros((5, 5, 2), dtype=np.uint8), 2, 10, seed=0)
    assert math.isnan(empty.hta) and math.isnan(empty.p_value)


def _reference_hta(tensor: np.ndarray, region_size: int) -> float:
    """HTA of the PyPI `hta` package (0.1.0) on the 0/1 flags of a map (background = no trait)."""
    flags = positive_and_mask(tensor)[0].astype(int)
    np.random.seed(0)  # the package permutes with numpy's global generator for its p-value; only its HTA is used
    return float(ReferenceHTA(flags, region_size, n_repeat=2).calc()[0])


def _structured_maps() -> list[tuple[np.ndarray, int]]:
    """Hand-made maps: segregated blocks, mixed regions, a missing combination, one combination, three traits."""
    missing = _segregated_map()
    missing[4:, :4] = (0, 0)  # no A+B tile: two of three combinations
    mixed = _map([[(1, 0), (1, 0), (1, 0), (1, 0)], [(0, 1), (0, 1), (1, 0), (0, 0)]])
    checker = np.zeros((6, 6, 2), np.uint8)
    checker[::2, :, 0] = 1
    checker[:, ::3, 1] = 1
    single = np.zeros((4, 5, 2), np.uint8)
    single[1:3, 1:4] = (0, 1)
    three = np.random.default_rng(3).integers(0, 2, size=(9, 7, 3)).astype(np.uint8)
    three[..., 2] = 0  # three traits, only combinations of the first two
    return [(_segregated_map(), 4), (_segregated_map(), 3), (missing, 4), (missing, 3), (mixed, 2), (checker, 4),
            (single, 2), (three, 3)]


@pytest.mark.parametrize("index", range(8))
def test_observed_base_matches_the_hta_package_on_structured_maps(index):
    tensor, region = _structured_maps()[index]
    assert hta(tensor, region, log_base="observed") == pytest.approx(_reference_hta(tensor, region), abs=1e-6)
    # the package's HTA with one region covering the whole map is the slide's HTI in its base
    whole = max(tensor.shape[:2])
    assert hti(tensor, log_base="observed") == pytest.approx(_reference_hta(tensor, whole), abs=1e-6)


def test_observed_base_matches_the_hta_package_on_random_maps():
    rng = np.random.default_rng(11)
    missing_combinations = 0
    for index in range(12):
        n_traits = 2 + index % 3
        shape = (int(rng.integers(5, 20)), int(rng.integers(5, 20)), n_traits)
        tensor = (rng.random(shape) < rng.uniform(0.1, 0.6)).astype(np.uint8)
        tensor[rng.random(shape[:2]) < 0.25] = BG
        region = int(rng.integers(1, 6))
        assert hta(tensor, region, log_base="observed") == pytest.approx(_reference_hta(tensor, region), abs=1e-6)
        assert hti(tensor, log_base="observed") == pytest.approx(_reference_hta(tensor, max(shape[:2])), abs=1e-6)
        missing_combinations += combination_proportions(tensor).min() == 0
    assert missing_combinations >= 2  # some maps lack a combination, where the two bases differ


def test_combinations_base_differs_by_ln3_over_ln2_when_one_combination_is_missing():
    tensor = _segregated_map()
    tensor[4:, :4] = (0, 0)  # A-only and B-only blocks, no A+B tile
    mixed = tensor.copy()
    mixed[0, 4], mixed[4 - 1, 0] = (1, 0), (0, 1)  # one foreign tile in each block: regional HTIs > 0
    factor = math.log(3) / math.log(2)
    assert hti(tensor, log_base="combinations") == pytest.approx(math.log(2) / math.log(3))
    assert hti(tensor, log_base="observed") == pytest.approx(1.0)
    paper = hta(mixed, 4, log_base="combinations")
    assert paper > 0 and hta(mixed, 4, log_base="observed") == pytest.approx(paper * factor)
    # the permutations keep the slide's combinations, so rescaling leaves both p-values as they were
    by_paper = hta_test(mixed, 4, 200, seed=3, log_base="combinations")
    by_package = hta_test(mixed, 4, 200, seed=3, log_base="observed")
    assert by_package.hta == pytest.approx(by_paper.hta * factor)
    assert (by_package.p_value, by_package.p_value_clt) == pytest.approx((by_paper.p_value, by_paper.p_value_clt))


def test_one_observed_combination_gives_zero_in_the_observed_base_and_bad_base_is_named():
    single = np.zeros((4, 4, 2), np.uint8)
    single[:2] = (1, 1)
    assert hti(single, log_base="observed") == 0.0 and hta(single, 2, log_base="observed") == 0.0
    with pytest.raises(ValueError, match="hta_log_base"):
        hti(single, log_base="natural")
