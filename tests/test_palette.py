"""The map palette under colour-vision deficiency: every colour a K <= 3 map can show stays apart when simulated.

Simulation: colorspacious' Machado et al. (2009) model at severity 100 (deuteranopia and protanopia), then the
CAM02-UCS colour difference (Luo et al. 2006; 1 unit is about one just-noticeable difference). Threshold: 12.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from colorspacious import cspace_convert

from workflow_scripts.analysis.maps import BACKGROUND_COLOUR, NONE_COLOUR, combination_palette

MIN_DELTA_E = 12.0
VISION = {"normal": None, "deuteranopia": "deuteranomaly", "protanopia": "protanomaly"}


def simulated(colours: np.ndarray, cvd_type: str | None) -> np.ndarray:
    """sRGB colours (0-1) as a viewer with the given deficiency (severity 100) sees them, clipped to the gamut."""
    if cvd_type is None:
        return colours
    space = {"name": "sRGB1+CVD", "cvd_type": cvd_type, "severity": 100}
    return np.clip(cspace_convert(colours, space, "sRGB1"), 0, 1)


def min_pairwise_delta_e(colours: list[tuple[float, float, float]], cvd_type: str | None) -> float:
    """Smallest CAM02-UCS distance between any two of the colours after simulation."""
    ucs = cspace_convert(simulated(np.asarray(colours, dtype=float), cvd_type), "sRGB1", "CAM02-UCS")
    return min(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(ucs, 2))


@pytest.mark.parametrize("vision", list(VISION))
@pytest.mark.parametrize("n_traits", [2, 3])
def test_every_map_colour_is_distinguishable(n_traits: int, vision: str) -> None:
    palette = combination_palette(n_traits)
    colours = [palette[index] for index in sorted(palette)] + [BACKGROUND_COLOUR]
    assert len(colours) == 2**n_traits + 1  # the combinations, "none" and background
    assert min_pairwise_delta_e(colours, VISION[vision]) >= MIN_DELTA_E


def test_protanopia_separates_the_colours_the_old_palette_merged() -> None:
    # matplotlib's tab10 orange and green (the old "MKI67- miR+" / "MKI67+ miR+"): 1.6 apart under this protanopia
    old = [(1.0, 0.498, 0.055), (0.173, 0.627, 0.173)]
    assert min_pairwise_delta_e(old, "protanomaly") < 5
    palette = combination_palette(2)
    assert min_pairwise_delta_e([palette[2], palette[3]], "protanomaly") >= MIN_DELTA_E


def test_none_and_background_stay_apart() -> None:
    for cvd_type in VISION.values():
        assert min_pairwise_delta_e([NONE_COLOUR, BACKGROUND_COLOUR], cvd_type) >= MIN_DELTA_E


def test_a_combination_keeps_its_colour_from_two_to_three_traits() -> None:
    two, three = combination_palette(2), combination_palette(3)
    assert {index: three[index] for index in two} == two
    assert two[1] == pytest.approx((0 / 255, 114 / 255, 178 / 255))  # Okabe-Ito blue: trait 1 alone


def test_many_traits_hue_by_count_tone_by_rank() -> None:
    palette = combination_palette(4)
    assert palette == combination_palette(4) and len(set(palette.values())) == 16
    blue = np.array([0, 114, 178]) / 255
    # id 1 = first of the 4 one-trait combinations: blue mixed 45% towards black
    np.testing.assert_allclose(palette[1], blue * 0.55)
    # id 8 = last one-trait combination: blue mixed 45% towards white
    np.testing.assert_allclose(palette[8], blue + 0.45 * (1 - blue))
    # id 15 = the only four-trait combination: the fourth hue, Okabe-Ito bluish green, untouched
    np.testing.assert_allclose(palette[15], np.array([0, 158, 115]) / 255)
    five = combination_palette(5)
    assert len(set(five.values())) == 32 and five == combination_palette(5)
