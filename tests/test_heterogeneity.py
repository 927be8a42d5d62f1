"""HTI and HTA against hand-computed values, including background handling and permutation p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workflow_scripts.analysis.heterogeneity import (
    combination_label,
    combination_proportions,
    hta,
    hta_test,
    hti,
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
