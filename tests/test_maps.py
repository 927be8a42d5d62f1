"""Heterogeneity maps: fixed colours per combination on every slide, legend names, overlay on the thumbnail."""

from __future__ import annotations

import numpy as np
import pytest

from test_cartography import make_store
from workflow_scripts.analysis.cartography import read_store_layout
from workflow_scripts.analysis.maps import (
    BACKGROUND_COLOUR,
    DEFAULT_ALPHA,
    NONE_COLOUR,
    combination_palette,
    draw_overlay,
    grid_extent,
    heterogeneity_image,
    legend_entries,
    legend_handles,
    overlay_alpha,
    plot_map,
)
from workflow_scripts.common.figures import pyplot


def test_palette_is_fixed_and_distinct():
    for n_traits in (2, 3, 4, 5):
        palette = combination_palette(n_traits)
        assert len(palette) == 2**n_traits
        assert len(set(palette.values())) == len(palette)
        assert NONE_COLOUR in palette.values() and BACKGROUND_COLOUR not in palette.values()
    assert combination_palette(2) == combination_palette(2)


def test_same_combination_same_colour_on_two_slides():
    first = np.array([[[1, 0], [0, 1]], [[255, 255], [0, 0]]], dtype=np.uint8)
    second = np.array([[[1, 1], [1, 0]]], dtype=np.uint8)
    image_first, tiles = heterogeneity_image(first)
    image_second, _ = heterogeneity_image(second)
    palette = combination_palette(2)
    np.testing.assert_allclose(image_first[0, 0], palette[1])
    np.testing.assert_allclose(image_second[0, 1], palette[1])
    np.testing.assert_allclose(image_second[0, 0], palette[3])
    np.testing.assert_allclose(image_first[1, 0], BACKGROUND_COLOUR)
    np.testing.assert_allclose(image_first[1, 1], NONE_COLOUR)
    assert tiles.tolist() == [[True, True], [False, True]]


def test_legend_names_combinations():
    names = [name for name, _ in legend_entries(["MKI67", "miR-17-5p"])]
    assert names[:3] == ["MKI67+ miR-17-5p-", "MKI67- miR-17-5p+", "MKI67+ miR-17-5p+"]
    assert len(names) == 5


def test_maps_alone_and_over_thumbnail(tmp_path):
    thumbnail = np.full((40, 60, 3), 230, np.uint8)
    make_store(tmp_path / "S1.h5", "S1", [[0, 0], [1, 0], [1, 1]], (3, 2), thumbnail=thumbnail, downsample=64.0)
    layout = read_store_layout(tmp_path / "S1.h5", with_thumbnail=True)
    # origin (100, 200) level 0, 512-px tiles, 64x downsample
    assert grid_extent(layout) == (100 / 64, (100 + 3 * 512) / 64, (200 + 2 * 512) / 64, 200 / 64)
    tensor = np.array([[[1, 0], [0, 1], [255, 255]], [[255, 255], [1, 1], [255, 255]]], dtype=np.uint8)
    plot_map(tensor, ["A", "B"], tmp_path / "S1.png", "S1")
    plot_map(tensor, ["A", "B"], tmp_path / "S1.overlay.png", "S1", layout)
    for name in ("S1.png", "S1.overlay.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_overlay_legend_is_drawn_like_the_overlay():
    palette = combination_palette(2)
    handles = legend_handles(["A", "B"], alpha=0.35)
    for index, handle in zip((1, 2, 3, 0), handles):
        np.testing.assert_allclose(handle.get_facecolor(), (*palette[index], 0.35))  # the fill's opacity
        np.testing.assert_allclose(handle.get_edgecolor(), (*palette[index], 1.0))  # the opaque outline
    assert handles[-1].get_facecolor()[3] == 0  # no tile: nothing drawn over the slide
    opaque = legend_handles(["A", "B"])
    np.testing.assert_allclose(opaque[0].get_facecolor(), (*palette[1], 1.0))


def test_maps_alpha_is_checked():
    assert overlay_alpha({"alpha": 0}) == 0.0 and overlay_alpha({}) == DEFAULT_ALPHA
    with pytest.raises(ValueError, match="maps.alpha"):
        overlay_alpha({"alpha": 1.5})


def test_overlay_fill_has_the_configured_opacity(tmp_path):
    thumbnail = np.full((40, 60, 3), 230, np.uint8)
    make_store(tmp_path / "S1.h5", "S1", [[0, 0], [1, 0], [1, 1]], (3, 2), thumbnail=thumbnail, downsample=64.0)
    layout = read_store_layout(tmp_path / "S1.h5", with_thumbnail=True)
    tensor = np.array([[[1, 0], [0, 1], [255, 255]], [[255, 255], [1, 1], [255, 255]]], dtype=np.uint8)
    plt = pyplot()
    figure, axis = plt.subplots()
    draw_overlay(axis, tensor, layout, alpha=0.2)
    overlay = axis.get_images()[1].get_array()
    np.testing.assert_allclose(overlay[0, 0], (*combination_palette(2)[1], 0.2))
    assert overlay[1, 0, 3] == 0  # background cell: the slide shows through
    assert len(axis.collections) >= 3  # an outline for each of the three combinations present
    plt.close(figure)
