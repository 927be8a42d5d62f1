"""Cartography tensors: ensemble calls placed on the tile grid by coordinates, background kept distinct."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qc_rows import qc_frame
from workflow_scripts.analysis.cartography import (
    BACKGROUND,
    place_on_grid,
    read_cartography,
    read_store_layout,
    scored_layout,
    slide_cartography,
    tensor_layout,
    write_cartographies,
    write_cartography,
)
from workflow_scripts.analysis.ensemble import choose_members, write_members
from workflow_scripts.learning.predictions import SlidePredictions, write_predictions
from workflow_scripts.slides.qc_table import write_qc_table
from workflow_scripts.slides.tilestore import write_tile_store

TILE = 512


def make_store(path, slide_id, grid, grid_shape, thumbnail=None, downsample=64.0):
    """A real tile store (raw 8-px tiles) whose coords follow the grid with a (100, 200) level-0 origin."""
    grid = np.asarray(grid, dtype=np.int32).reshape(-1, 2)
    coords = np.asarray(grid, dtype=np.int64) * TILE + np.array([100, 200])
    tiles = np.zeros((len(grid), 8, 8, 3), dtype=np.uint8)
    attrs = {"tile_px": 8, "mpp": 0.5, "level0_tile_px": TILE, "source_mpp": 0.25, "grid_shape": list(grid_shape)}
    write_tile_store(path, slide_id, coords, grid, np.ones(len(grid)), tiles, attrs, encoding="raw",
                     thumbnail=thumbnail, thumbnail_downsample=downsample)
    return coords


def test_place_on_grid_marks_background():
    tensor = place_on_grid(np.array([[0, 0], [2, 1]]), (3, 2), np.array([[1, 0], [0, 0]]), "S")
    assert tensor.shape == (2, 3, 2) and tensor.dtype == np.uint8
    assert tensor[0, 0].tolist() == [1, 0]
    assert tensor[1, 2].tolist() == [0, 0]  # a negative tile is not background
    assert (tensor[0, 1] == BACKGROUND).all() and (tensor[1, 0] == BACKGROUND).all()
    with pytest.raises(ValueError, match="slide S"):
        place_on_grid(np.array([[3, 0]]), (3, 2), np.array([[1, 0]]), "S")


def test_slide_cartography_matches_tiles_by_coordinates(tmp_path):
    grid = [[0, 0], [1, 0], [1, 1], [2, 1]]
    coords = make_store(tmp_path / "S1.h5", "S1", grid, (3, 2))
    layout = read_store_layout(tmp_path / "S1.h5")
    # trait A: tile (1,0) and (2,1) positive for 2 of 3 models; stored in reversed order
    scores_a = np.array([[0.1, 0.2, 0.9], [0.9, 0.8, 0.1], [0.1, 0.1, 0.1], [0.7, 0.1, 0.9]], dtype=np.float32)
    order = [3, 2, 1, 0]
    trait_a = SlidePredictions("S1", "A", coords[order], scores_a[order], (0, 1, 2))
    # trait B: only tile (0,0) positive; stored in another order
    scores_b = np.array([[0.9, 0.9, 0.9], [0.2, 0.2, 0.2], [0.2, 0.2, 0.2], [0.2, 0.2, 0.2]], dtype=np.float32)
    order_b = [2, 0, 3, 1]
    trait_b = SlidePredictions("S1", "B", coords[order_b], scores_b[order_b], (0, 1, 2))
    tensor = slide_cartography(layout, [trait_a, trait_b], [[0, 1, 2], [0, 1, 2]], 0.5)
    expected = np.full((2, 3, 2), BACKGROUND, np.uint8)
    expected[0, 0] = (0, 1)
    expected[0, 1] = (1, 0)
    expected[1, 1] = (0, 0)
    expected[1, 2] = (1, 0)
    np.testing.assert_array_equal(tensor, expected)

    wrong = SlidePredictions("S1", "B", coords[:3], scores_b[:3], (0, 1, 2))
    with pytest.raises(ValueError, match="slide S1"):
        slide_cartography(layout, [trait_a, wrong], [[0, 1, 2], [0, 1, 2]], 0.5)

    write_cartography(tmp_path / "cart" / "S1.h5", tensor, ["A", "B"], "S1")
    first = (tmp_path / "cart" / "S1.h5").read_bytes()
    write_cartography(tmp_path / "cart" / "S1.h5", tensor, ["A", "B"], "S1")
    assert (tmp_path / "cart" / "S1.h5").read_bytes() == first
    read, traits, slide_id = read_cartography(tmp_path / "cart" / "S1.h5")
    np.testing.assert_array_equal(read, tensor)
    assert traits == ["A", "B"] and slide_id == "S1"


def test_tiles_without_predictions_are_background_and_left_out_downstream(tmp_path):
    """Features family: an import that did not cover a store tile gives predictions of the other tiles only."""
    grid = [[0, 0], [1, 0], [1, 1], [2, 1]]
    coords = make_store(tmp_path / "S1.h5", "S1", grid, (3, 2))
    layout = read_store_layout(tmp_path / "S1.h5")
    covered = [3, 0, 1]  # tile (1, 1) was not covered
    trait_a = SlidePredictions("S1", "A", coords[covered], np.array([[0.9], [0.1], [0.8]], np.float32), (0,))
    trait_b = SlidePredictions("S1", "B", coords[[0, 1, 3]], np.array([[0.9], [0.1], [0.2]], np.float32), (0,))
    tensor = slide_cartography(layout, [trait_a, trait_b], [[0], [0]], 0.5)
    expected = np.full((2, 3, 2), BACKGROUND, np.uint8)
    expected[0, 0] = (0, 1)
    expected[0, 1] = (1, 0)
    expected[1, 2] = (1, 0)
    np.testing.assert_array_equal(tensor, expected)

    scored = tensor_layout(layout, tensor, "cartography S1")
    assert scored.coords.tolist() == coords[[0, 1, 3]].tolist() and scored.grid.tolist() == [[0, 0], [1, 0], [2, 1]]
    assert tensor_layout(layout, np.zeros((2, 3, 2), np.uint8), "full") is layout  # every tile scored
    with pytest.raises(ValueError, match="cartography grid"):
        tensor_layout(layout, tensor[:1], "cartography S1")
    assert scored_layout(layout, coords[covered]).coords.tolist() == coords[[0, 1, 3]].tolist()
    with pytest.raises(ValueError, match="1 of 2 predicted tiles are not tiles of its store"):
        scored_layout(layout, np.array([coords[0], coords[0] + 7]))


def test_slide_without_tiles_is_all_background(tmp_path):
    make_store(tmp_path / "S0.h5", "S0", np.zeros((0, 2)), (4, 3))
    layout = read_store_layout(tmp_path / "S0.h5")
    empty = SlidePredictions("S0", "A", np.zeros((0, 2), np.int64), np.zeros((0, 1), np.float32), (0,))
    tensor = slide_cartography(layout, [empty, empty], [[0], [0]], 0.5)
    assert tensor.shape == (3, 4, 2) and (tensor == BACKGROUND).all()


def test_write_cartographies_for_passed_slides(tmp_path):
    grid = [[0, 0], [1, 0], [1, 1]]
    coords = make_store(tmp_path / "tiles" / "S1.h5", "S1", grid, (2, 2))
    scores = {"A": np.array([[0.9, 0.9], [0.8, 0.9], [0.1, 0.9]], np.float32),
              "B": np.array([[0.1, 0.1], [0.9, 0.9], [0.9, 0.7]], np.float32)}
    for trait, values in scores.items():
        predictions = SlidePredictions("S1", trait, coords, values, (0, 1))
        (tmp_path / "predictions" / trait).mkdir(parents=True)
        write_predictions(tmp_path / "predictions" / trait / "S1.h5", predictions)
    metrics = pd.DataFrame({"trait": ["A", "A", "B", "B"], "split": [0, 1, 0, 1], "best_val_slide_auc": [0.9, 0.8] * 2})
    write_members(choose_members(metrics, top_k=2), tmp_path / "members.tsv")
    qc = qc_frame([{"slide_id": "S1", "patient_id": "P1", "status": "pass"},
                   {"slide_id": "S9", "patient_id": "P9", "status": "fail"}])
    write_qc_table(qc, tmp_path / "qc.tsv")
    folders = [tmp_path / "predictions" / "A", tmp_path / "predictions" / "B"]
    count = write_cartographies(folders, tmp_path / "members.tsv", tmp_path / "qc.tsv", [tmp_path / "tiles" / "S1.h5"],
                                ["A", "B"], 0.5, tmp_path / "cartography")
    assert count == 1 and [path.name for path in (tmp_path / "cartography").iterdir()] == ["S1.h5"]
    tensor, traits, slide_id = read_cartography(tmp_path / "cartography" / "S1.h5")
    # ensemble call = a majority of the 2 members above 0.5: tile (0,0) A only, (1,0) both, (1,1) B only
    expected = np.full((2, 2, 2), BACKGROUND, np.uint8)
    expected[0, 0], expected[0, 1], expected[1, 1] = (1, 0), (1, 1), (0, 1)
    np.testing.assert_array_equal(tensor, expected)
    assert traits == ["A", "B"] and slide_id == "S1"
    with pytest.raises(FileNotFoundError, match="S1"):
        write_cartographies(folders, tmp_path / "members.tsv", tmp_path / "qc.tsv", [], ["A", "B"], 0.5,
                            tmp_path / "again")
    assert not (tmp_path / "again").exists()
