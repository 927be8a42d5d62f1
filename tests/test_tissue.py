"""Tissue, pen-ink and focus measures, checked against hand-computed values and real H&E tiles."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from workflow_scripts.slides import tissue


def test_hsv_of_primary_colours():
    image = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128], [255, 128, 0]]], np.uint8)
    hue, saturation, value = tissue.rgb_to_hsv(image)
    assert hue[0].tolist() == pytest.approx([0, 120, 240, 0, 30.1176], abs=1e-3)  # orange: 60 * 128/255
    assert saturation[0].tolist() == pytest.approx([1, 1, 1, 0, 1])
    assert value[0].tolist() == pytest.approx([1, 1, 1, 128 / 255, 1])


def test_otsu_splits_two_clusters():
    values = np.concatenate([np.full(60, 0.1), np.full(40, 0.7)])
    threshold = tissue.otsu_threshold(values)
    assert 0.1 < threshold <= 0.7
    assert ((values > threshold) == (values == 0.7)).all()


def test_pen_colours_detected_and_stain_is_not():
    swatches = {
        "green": (40, 160, 60),
        "blue": (30, 60, 200),
        "black": (20, 20, 25),
        "eosin": (232, 150, 196),
        "hematoxylin": (82, 48, 140),
        "glass": (243, 241, 245),
    }
    for name, colour in swatches.items():
        image = np.zeros((9, 9, 3), np.uint8)
        image[:] = colour
        assert tissue.pen_mask(image).all() == (name in ("green", "blue", "black")), name


def test_tissue_mask_drops_specks_and_pen():
    image = np.full((40, 40, 3), 243, np.uint8)
    image[5:25, 5:25] = (232, 150, 196)  # a 400 px tissue piece
    image[30, 30] = (232, 150, 196)  # a 1 px speck
    image[10:14, 10:14] = (40, 160, 60)  # ink on the tissue
    mask = tissue.tissue_mask(image)
    assert not mask[30, 30]
    assert not mask[11, 11]
    assert mask[20, 20] and not mask[0, 0]


def test_real_tiles_are_tissue_without_ink(shared_data):
    for path in sorted((shared_data / "tiles").glob("*.jp*g"))[:6]:
        image = np.asarray(Image.open(path).convert("RGB").reduce(8))
        assert tissue.pen_mask(image).mean() < 0.02, path.name
        assert tissue.tissue_mask(image).mean() > 0.3, path.name


def test_laplacian_variance_of_a_single_bright_pixel():
    image = np.zeros((5, 5, 3), np.uint8)
    image[2, 2] = 100
    # Laplacian: -400 at the centre, +100 at its 4 neighbours, mean 0 => variance (160000 + 4 * 10000) / 25
    assert tissue.laplacian_variance(image) == pytest.approx(8000.0, rel=1e-5)
    assert tissue.laplacian_variance(np.full((8, 8, 3), 77, np.uint8)) == 0.0


def test_blur_lowers_focus_on_real_tissue(shared_data):
    path = sorted((shared_data / "tiles").glob("*.jp*g"))[0]
    sharp = np.asarray(Image.open(path).convert("RGB").reduce(2))  # ~1 um/px
    blurred = ndimage.gaussian_filter(sharp, sigma=(2, 2, 0))
    assert tissue.laplacian_variance(sharp) > 100 > tissue.laplacian_variance(blurred)


def test_cell_fractions_hand_computed():
    mask = np.zeros((4, 6), bool)
    mask[0:2, 0:3] = True  # 6 of the 9 pixels of cell (col 0, row 0)
    mask[2, 3] = True  # 1 of the 9 pixels of cell (col 1, row 0)
    mask[3, 4] = True  # cell (col 1, row 1) is clipped to 1 x 3 pixels by the mask edge
    fractions = tissue.cell_fractions(mask, 3.0, n_cols=2, n_rows=2)
    np.testing.assert_allclose(fractions, [[6 / 9, 1 / 9], [0.0, 1 / 3]], rtol=1e-6)


def test_numpy_morphology_matches_scipy():
    rng = np.random.default_rng(3)
    for density in (0.2, 0.5, 0.7):
        mask = rng.random((37, 53)) < density
        closed = ndimage.binary_closing(mask, structure=np.ones((3, 3), bool), border_value=0)
        np.testing.assert_array_equal(tissue.close_square(mask), closed)
        labels, _ = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())
        expected = (sizes < 5)[labels] & mask
        np.testing.assert_array_equal(tissue.small_components(mask, 5), expected)


def test_small_components_hand_counted():
    mask = np.zeros((5, 6), bool)
    mask[0, 0:3] = True  # a 3-pixel bar ...
    mask[1, 2] = True  # ... joined from below: 4 pixels
    mask[3:5, 4:6] = True  # a 2x2 square ...
    mask[2, 5] = True  # ... with a pixel on top sharing an edge: 5 pixels
    mask[4, 0] = True  # a single pixel
    mask[2, 3] = True  # touches the bar's pixel (1, 2) only diagonally: its own 1-pixel component
    small = tissue.small_components(mask, 5)
    assert small[0, 0] and small[1, 2] and small[4, 0] and small[2, 3]
    assert not small[3, 4] and not small[2, 5]
    assert small.sum() == 4 + 1 + 1


def test_ink_is_judged_at_a_fixed_physical_scale():
    image = np.full((64, 64, 3), (232, 150, 196), np.uint8)  # eosin at 1 um/px
    image[2::8, 2::8] = (30, 17, 48)  # 1 um specks as dark as black ink (hematoxylin-dark nuclei)
    image[3::8, 2::8] = (30, 17, 48)
    image[40:60, 8:28] = (25, 25, 30)  # a 20 x 20 um black ink dot
    assert tissue.pen_mask(image)[2:4, 2].all()  # per pixel, a nucleus looks like ink
    coarse, factor = tissue.coarse_pen_mask(image, mpp=1.0)
    assert factor == tissue.PEN_MPP == 4.0 and coarse.shape == (16, 16)
    expected = np.zeros((16, 16), bool)
    expected[10:15, 2:7] = True  # the dot covers 4 um pixels 10-14 x 2-6 (whole ones 10-14, as 40/4 = 10, 60/4 = 15)
    np.testing.assert_array_equal(coarse, expected)
    # a coarse image is not resampled; a 2 x 2 px (8 x 8 um) black speck is dropped, a 4 x 4 px one is kept
    dark = np.full((12, 12, 3), (232, 150, 196), np.uint8)
    dark[1:3, 1:3] = dark[6:10, 6:10] = (25, 25, 30)
    coarse, factor = tissue.coarse_pen_mask(dark, mpp=4.0)
    assert factor == 1.0 and coarse.sum() == 16 and coarse[6:10, 6:10].all()


def test_expand_mask_nearest_neighbour():
    mask = np.array([[True, False], [False, True]])
    expanded = tissue.expand_mask(mask, 2.5, (5, 5))  # pixel centres 0.5 .. 4.5 / 2.5 = 0.2, 0.6, 1.0, 1.4, 1.8
    np.testing.assert_array_equal(expanded[:, 0], [True, True, False, False, False])
    np.testing.assert_array_equal(expanded[4], [False, False, True, True, True])
    assert tissue.expand_mask(mask, 2.0, (3, 4)).shape == (3, 4)
