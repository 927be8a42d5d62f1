"""QuPath export: GeoJSON tiles checked with the `geojson` library against the store, cartography and predictions."""

from __future__ import annotations

import json
import math

import geojson
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from qc_rows import qc_frame
from workflow_scripts.analysis.cartography import BACKGROUND, read_cartography, write_cartographies, write_cartography
from workflow_scripts.analysis.ensemble import choose_members, write_members
from workflow_scripts.analysis.maps import combination_palette, legend_entries
from workflow_scripts.analysis.qupath import (
    NONE_LABEL,
    QupathInputs,
    read_geojson,
    rgb255,
    tile_polygon,
    write_qupath_exports,
)
from workflow_scripts.common.tables import write_tsv
from workflow_scripts.learning.predictions import SlidePredictions, write_predictions
from workflow_scripts.slides.qc_table import write_qc_table
from workflow_scripts.slides.tilestore import TileStore, write_tile_store

SPAN = 383.6  # level-0 px per tile side, not an integer: the tiler reads round(SPAN) = 384 px from round(col * SPAN)
GRID = [[0, 0], [1, 0], [1, 1], [2, 1]]
# tile scores per trait, rows = the tiles of GRID, columns = splits 0..3; split 1 is left out of the ensemble
SCORES = {
    "A": [[0.9, 0.1, 0.8, 0.2], [0.5, 0.9, 0.5, 0.6], [0.6, 0.9, 0.7, 0.1], [0.3, 0.99, 0.2, 0.6]],
    "B": [[0.1, 0.9, 0.2, 0.3], [0.8, 0.1, 0.7, 0.9], [0.6, 0.1, 0.2, 0.7], [0.9, 0.9, 0.1, 0.2]],
    "C": [[0.6, 0.6, 0.6, 0.6], [0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]],
}
AUC = [0.9, 0.6, 0.8, 0.7]  # top 3 by validation AUC: splits 0, 2 and 3
# By hand over splits 0, 2, 3 with threshold 0.5 (strictly above): votes and mean probability per tile
VOTES = {"A": [2, 1, 2, 1], "B": [0, 3, 2, 1], "C": [3, 0, 0, 0]}
MEANS = {"A": [1.9 / 3, 1.6 / 3, 1.4 / 3, 1.1 / 3], "B": [0.2, 0.8, 0.5, 0.4], "C": [0.6, 0.1, 0.1, 0.1]}
# heterogeneity traits in traits.tsv order (B, A): B is bit 0, A bit 1
IDS = [2, 1, 3, 0]
NAMES = ["B- A+", "B+ A-", "B+ A+", NONE_LABEL]


def make_store(path, slide_id, grid, grid_shape):
    """A real tile store on a non-integer grid: coords = round(col * SPAN), round(row * SPAN), as the tiler's."""
    grid = np.asarray(grid, dtype=np.int32).reshape(-1, 2)
    coords = np.round(grid * SPAN).astype(np.int64)
    attrs = {"tile_px": 8, "mpp": 0.5, "level0_tile_px": SPAN, "source_mpp": 0.25, "grid_shape": list(grid_shape)}
    write_tile_store(path, slide_id, coords, grid, np.ones(len(grid)), np.zeros((len(grid), 8, 8, 3), np.uint8),
                     attrs, encoding="raw")
    return coords


def make_cohort(tmp_path):
    """Slide S1 (4 tiles), S0 (QC-passed, no tiles), S9 (failed QC); predictions stored out of tile order."""
    coords = make_store(tmp_path / "tiles" / "S1.h5", "S1", GRID, (3, 2))
    make_store(tmp_path / "tiles" / "S0.h5", "S0", np.zeros((0, 2)), (4, 3))
    order = [3, 1, 0, 2]
    for trait, scores in SCORES.items():
        (tmp_path / "predictions" / trait).mkdir(parents=True)
        scores = np.asarray(scores, np.float32)
        write_predictions(tmp_path / "predictions" / trait / "S1.h5",
                          SlidePredictions("S1", trait, coords[order], scores[order], (0, 1, 2, 3)))
        write_predictions(tmp_path / "predictions" / trait / "S0.h5",
                          SlidePredictions("S0", trait, np.zeros((0, 2)), np.zeros((0, 4)), (0, 1, 2, 3)))
    metrics = pd.DataFrame({"trait": np.repeat(list(SCORES), 4), "split": [0, 1, 2, 3] * 3,
                            "best_val_slide_auc": AUC * 3})
    write_members(choose_members(metrics, top_k=3), tmp_path / "members.tsv")
    qc = qc_frame([{"slide_id": "S1", "patient_id": "P1", "status": "pass", "n_tiles": 4},
                   {"slide_id": "S0", "patient_id": "P0", "status": "pass", "n_tiles": 0},
                   {"slide_id": "S9", "patient_id": "P9", "status": "fail", "n_tiles": 0}])
    write_qc_table(qc, tmp_path / "qc.tsv")
    write_tsv(pd.DataFrame({"trait": ["B", "A"]}), tmp_path / "traits.tsv")
    folders = [tmp_path / "predictions" / trait for trait in SCORES]
    stores = [tmp_path / "tiles" / "S0.h5", tmp_path / "tiles" / "S1.h5"]
    write_cartographies(folders, tmp_path / "members.tsv", tmp_path / "qc.tsv", stores, list(SCORES), 0.5,
                        tmp_path / "cartography")
    return QupathInputs(tmp_path / "traits.tsv", tmp_path / "qc.tsv", tmp_path / "cartography", folders,
                        tmp_path / "members.tsv", stores)


def load(path):
    """Parse a written file with the geojson library (an independent reader), refusing NaN or Infinity."""
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return geojson.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_tiles_match_store_cartography_and_predictions(tmp_path):
    inputs = make_cohort(tmp_path)
    assert write_qupath_exports(inputs, 0.5, tmp_path / "qupath") == 2
    assert sorted(path.name for path in (tmp_path / "qupath").iterdir()) == ["S0.geojson", "S1.geojson"]
    collection = load(tmp_path / "qupath" / "S1.geojson")
    assert collection.is_valid and collection["type"] == "FeatureCollection" and len(collection["features"]) == 4
    with TileStore(tmp_path / "tiles" / "S1.h5") as store:
        coords = np.asarray(store.coords)
        side = round(float(store.attrs["level0_tile_px"]))
    tensor, traits, _ = read_cartography(tmp_path / "cartography" / "S1.h5")
    palette = combination_palette(2)
    for index, feature in enumerate(collection["features"]):
        x, y = (int(value) for value in coords[index])
        assert feature.is_valid and feature["geometry"]["type"] == "Polygon"
        assert feature["geometry"]["coordinates"] == [[[x, y], [x + side, y], [x + side, y + side], [x, y + side],
                                                       [x, y]]]
        properties = feature["properties"]
        assert properties["classification"]["name"] == NAMES[index]
        assert to_hex(palette[IDS[index]]) == "#{:02x}{:02x}{:02x}".format(*properties["classification"]["color"])
        col, row = GRID[index]
        calls = tensor[row, col, [traits.index("B"), traits.index("A")]]
        assert IDS[index] == int(calls[0]) + 2 * int(calls[1])  # the cartography's combination at the tile's cell
        measurements = properties["measurements"]
        assert measurements["combination id"] == IDS[index]
        for trait in SCORES:
            assert measurements[f"{trait}: votes"] == VOTES[trait][index]
            assert measurements[f"{trait}: mean probability"] == pytest.approx(MEANS[trait][index], abs=1e-6)
            assert measurements[f"{trait}: positive"] == int(2 * VOTES[trait][index] > 3)
    # by hand: tile (2, 1) starts at round(2 * 383.6) = 767, round(383.6) = 384 and is 384 px wide
    assert collection["features"][3]["geometry"]["coordinates"] == [[[767, 384], [1151, 384], [1151, 768],
                                                                     [767, 768], [767, 384]]]
    empty = load(tmp_path / "qupath" / "S0.geojson")
    assert empty.is_valid and empty["type"] == "FeatureCollection" and empty["features"] == []
    assert read_geojson(tmp_path / "qupath" / "S1.geojson") == json.loads(json.dumps(collection))


def test_properties_are_what_qupath_reads(tmp_path):
    inputs = make_cohort(tmp_path)
    write_qupath_exports(inputs, 0.5, tmp_path / "qupath")
    legend = {name: colour for name, colour in legend_entries(["B", "A"])}
    for feature in load(tmp_path / "qupath" / "S1.geojson")["features"]:
        properties = feature["properties"]
        assert properties["objectType"] in {"tile", "detection"}
        classification = properties["classification"]
        name, colour = classification["name"], classification["color"]
        assert isinstance(name, str) and not any(character in name for character in ":\n\r")
        assert len(colour) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255
                                        for v in colour)
        assert to_hex(legend[name]) == "#{:02x}{:02x}{:02x}".format(*colour)  # the maps' legend name and colour
        values = properties["measurements"]
        assert isinstance(values, dict) and len(values) == 3 * len(SCORES) + 1
        assert all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                   for v in values.values())


def test_rerun_gives_identical_files(tmp_path):
    inputs = make_cohort(tmp_path)
    write_qupath_exports(inputs, 0.5, tmp_path / "first")
    write_qupath_exports(inputs, 0.5, tmp_path / "second")
    for name in ("S0.geojson", "S1.geojson"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_stale_cartography_is_an_error_naming_the_slide(tmp_path):
    inputs = make_cohort(tmp_path)
    tensor, traits, _ = read_cartography(tmp_path / "cartography" / "S1.h5")
    tensor[0, 0, traits.index("A")] = 0  # tile (0, 0) is A-positive by the votes
    write_cartography(tmp_path / "cartography" / "S1.h5", tensor, traits, "S1")
    with pytest.raises(ValueError, match=r"S1\.h5: calls of trait A differ .* at 1 tiles"):
        write_qupath_exports(inputs, 0.5, tmp_path / "qupath")
    assert not (tmp_path / "qupath").exists()
    tensor[0, 0] = BACKGROUND
    write_cartography(tmp_path / "cartography" / "S1.h5", tensor, traits, "S1")
    with pytest.raises(ValueError, match="1 tiles of slide S1 are background"):
        write_qupath_exports(inputs, 0.5, tmp_path / "qupath")


def test_bad_inputs_name_the_trait_or_slide(tmp_path):
    inputs = make_cohort(tmp_path)
    write_tsv(pd.DataFrame({"trait": ["B", "A:x"]}), tmp_path / "traits.tsv")
    with pytest.raises(ValueError, match="trait 'A:x' cannot be part of a QuPath class name"):
        write_qupath_exports(inputs, 0.5, tmp_path / "qupath")
    write_tsv(pd.DataFrame({"trait": ["B", "A"]}), tmp_path / "traits.tsv")
    missing_store = QupathInputs(inputs.traits, inputs.qc, inputs.cartography, inputs.predictions, inputs.members,
                                 inputs.stores[:1])
    with pytest.raises(FileNotFoundError, match="slide S1"):
        write_qupath_exports(missing_store, 0.5, tmp_path / "qupath")
    (tmp_path / "bad.geojson").write_text('{"type": "Feature"}')
    with pytest.raises(ValueError, match="bad.geojson: not a GeoJSON FeatureCollection"):
        read_geojson(tmp_path / "bad.geojson")


def test_polygon_and_colour_by_hand():
    assert tile_polygon(100, 200, 512) == [[[100, 200], [612, 200], [612, 712], [100, 712], [100, 200]]]
    assert rgb255((0.0, 0.5, 1.0)) == [0, 128, 255]
    assert rgb255((187 / 255, 187 / 255, 187 / 255)) == [187, 187, 187]
    with pytest.raises(ValueError, match="not RGB"):
        rgb255((1.2, 0.0, 0.0))
