"""QuPath export of the molecular cartographies: the one owner of qupath/{slide_id}.geojson.

Contract of one file (one QC-passed slide), a GeoJSON FeatureCollection that QuPath >= 0.4 imports as objects
(File > Import objects from file, or dragged onto the viewer), written under a temporary name and renamed:
- ``features``: one Feature per tile of the slide's tile store, in the store's row order (a slide without tiles
  gives an empty list); no ``id``, so QuPath gives each imported object a fresh one;
- ``geometry``: a Polygon, the tile's square in level-0 pixel coordinates of the source slide (origin at the top
  left, y down, as QuPath's): the closed ring (x, y), (x + s, y), (x + s, y + s), (x, y + s), (x, y) with (x, y)
  the store's ``coords`` and s = round(``level0_tile_px``), the integers the tiler read (slides/grid.py);
- ``properties.objectType``: ``tile`` (QuPath's tile object, a kind of detection: it is listed by Measure > Show
  detection measurements);
- ``properties.classification``: ``name`` = the tile's combination of the heterogeneity traits
  (heterogeneity/traits.tsv, in its order) as the maps' legend names it (`combination_label`, e.g.
  "MKI67+ miR-17-5p-"), NONE_LABEL for a tile positive for none of them; ``color`` = [r, g, b] 0-255 of the
  map's colour for that combination (`combination_palette`);
- ``properties.measurements``: a mapping name -> number (the form QuPath has written and read since 0.4), for
  every trait with predictions, in config order: ``{trait}: votes`` (how many of the trait's chosen ensemble
  members score the tile strictly above the ensemble threshold), ``{trait}: mean probability`` (mean tile
  probability over those members, rounded to 6 decimals) and ``{trait}: positive`` (1 when the votes are a strict
  majority, the ensemble call of the cartography); then ``combination id`` (sum of 2**k over the positive
  heterogeneity traits k, 0 = none, the id the maps colour).
The classification comes from the cartography tensor and must agree with the vote of the predictions; a slide
where they differ (a stale cartography) is an error naming it.  The JSON is strict (no NaN), one feature a line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workflow_scripts.analysis.cartography import (
    StoreLayout,
    passed_layouts,
    read_cartography,
    scored_layout,
    slide_predictions,
)
from workflow_scripts.analysis.ensemble import align_by_coords, chosen_splits, read_members
from workflow_scripts.analysis.heterogeneity import (
    combination_ids,
    combination_label,
    positive_and_mask,
    select_traits,
)
from workflow_scripts.analysis.maps import combination_palette
from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.tables import read_table
from workflow_scripts.learning.predictions import SlidePredictions
from workflow_scripts.learning.slide_score import binarise
from workflow_scripts.slides.qc_table import read_passed_slides

NONE_LABEL = "none positive"  # the maps' legend name of the tiles positive for no trait
OBJECT_TYPE = "tile"
ILLEGAL_CLASS_CHARACTERS = (":", "\n", "\r")  # QuPath splits class names at ':' (derived classes)
PROBABILITY_DECIMALS = 6


@dataclass(frozen=True)
class QupathInputs:
    """What the export reads: heterogeneity traits, QC table, cartography folder, predictions, members, stores."""

    traits: str | os.PathLike
    qc: str | os.PathLike
    cartography: str | os.PathLike
    predictions: Sequence[str | os.PathLike]
    members: str | os.PathLike
    stores: Sequence[str | os.PathLike]


@dataclass(frozen=True)
class TraitVotes:
    """One trait's ensemble numbers per tile (store order): positive votes, member count, mean probability."""

    trait: str
    votes: np.ndarray
    n_members: int
    mean_probability: np.ndarray

    @property
    def positive(self) -> np.ndarray:
        """The ensemble call: a strict majority of the members, as `majority_vote` decides it."""
        return 2 * self.votes > self.n_members


def class_name(combination_id: int, traits: list[str]) -> str:
    """QuPath class of a combination: the maps' legend name, NONE_LABEL for id 0."""
    return NONE_LABEL if combination_id == 0 else combination_label(combination_id, traits)


def check_class_traits(traits: list[str]) -> None:
    """Trait names become QuPath class names, which must not hold ':' or line breaks; fail naming the trait."""
    for trait in traits:
        if any(character in trait for character in ILLEGAL_CLASS_CHARACTERS):
            raise ValueError(f"trait {trait!r} cannot be part of a QuPath class name (no ':' or line breaks)")


def rgb255(colour: Sequence[float]) -> list[int]:
    """A palette colour (RGB floats in [0, 1]) as the 0-255 integers QuPath's classification color holds."""
    values = [int(round(float(value) * 255)) for value in colour[:3]]
    if any(value < 0 or value > 255 for value in values):
        raise ValueError(f"colour {tuple(colour)} is not RGB in [0, 1]")
    return values


def tile_polygon(x: int, y: int, side: int) -> list[list[list[int]]]:
    """GeoJSON Polygon coordinates of a tile's square (closed ring, level-0 pixels, y down)."""
    x, y, side = int(x), int(y), int(side)
    return [[[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]]


def trait_votes(layout: StoreLayout, predictions: SlidePredictions, splits: list[int], threshold: float) -> TraitVotes:
    """Votes and mean probability of a trait's chosen members per tile, in the store's tile order."""
    scores = predictions.columns(splits).astype(np.float64)
    votes = binarise(scores, threshold).sum(axis=1)
    per_tile = np.column_stack([votes, scores.mean(axis=1)]) if len(scores) else np.zeros((0, 2))
    aligned = align_by_coords(layout.coords, predictions.coords, per_tile, layout.slide_id,
                              f"predictions of {predictions.trait}")
    return TraitVotes(predictions.trait, aligned[:, 0].astype(np.int64), len(splits), aligned[:, 1])


def tile_combinations(layout: StoreLayout, tensor: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Positive flags (N, K) and combination id of each store tile, read at its grid cell of the cartography."""
    n_cols, n_rows = layout.grid_shape
    if tensor.shape[:2] != (n_rows, n_cols):
        raise ValueError(f"{source}: cartography grid {tensor.shape[:2]} differs from the store's (n_rows, n_cols) "
                         f"= {(n_rows, n_cols)} of slide {layout.slide_id}")
    positive, tiles = positive_and_mask(tensor[layout.grid[:, 1], layout.grid[:, 0]])
    if not tiles.all():
        raise ValueError(f"{source}: {int((~tiles).sum())} tiles of slide {layout.slide_id} are background there")
    return positive, combination_ids(positive)


def check_calls(positive: np.ndarray, traits: list[str], votes: dict[str, TraitVotes], source: str) -> None:
    """The cartography's calls must be the predictions' majority votes, else the cartography is stale."""
    for index, trait in enumerate(traits):
        differ = int((positive[:, index] != votes[trait].positive).sum())
        if differ:
            raise ValueError(f"{source}: calls of trait {trait} differ from the ensemble vote of its predictions at "
                             f"{differ} tiles (rerun the cartography rule)")


def tile_measurements(votes: list[TraitVotes], combination: np.ndarray) -> list[dict[str, float]]:
    """QuPath measurements of every tile: votes, mean probability and call per trait, then the combination id."""
    rows = [{} for _ in range(len(combination))]
    for trait in votes:
        for row, count, mean, call in zip(rows, trait.votes, trait.mean_probability, trait.positive):
            row[f"{trait.trait}: votes"] = int(count)
            row[f"{trait.trait}: mean probability"] = round(float(mean), PROBABILITY_DECIMALS)
            row[f"{trait.trait}: positive"] = int(call)
    for row, identifier in zip(rows, combination):
        row["combination id"] = int(identifier)
    return rows


def slide_features(
    layout: StoreLayout, combination: np.ndarray, traits: list[str], measurements: list[dict[str, float]]
) -> list[dict]:
    """One GeoJSON Feature per store tile: its square, the class of its combination in the map's colour, numbers."""
    palette = combination_palette(len(traits))
    classes = {int(i): {"name": class_name(int(i), traits), "color": rgb255(palette[int(i)])}
               for i in np.unique(combination)}
    side = int(round(layout.level0_tile_px))
    return [{"type": "Feature",
             "geometry": {"type": "Polygon", "coordinates": tile_polygon(x, y, side)},
             "properties": {"objectType": OBJECT_TYPE, "classification": classes[int(identifier)],
                            "measurements": numbers}}
            for (x, y), identifier, numbers in zip(layout.coords, combination, measurements, strict=True)]


def write_geojson(path: str | os.PathLike, features: list[dict]) -> None:
    """Write one slide's FeatureCollection atomically, strict JSON with one feature a line (greppable, diffable)."""
    lines = [json.dumps(feature, separators=(",", ":"), allow_nan=False) for feature in features]
    body = "\n" + ",\n".join(lines) + "\n" if lines else ""
    with atomic_path(path) as temporary:
        temporary.write_text('{"type":"FeatureCollection","features":[' + body + "]}\n", encoding="utf-8")


def read_geojson(path: str | os.PathLike) -> dict:
    """Read a qupath/{slide_id}.geojson file, checking it is a FeatureCollection (naming the file if not)."""
    with open(path, encoding="utf-8") as handle:
        collection = json.load(handle)
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise ValueError(f"{path}: not a GeoJSON FeatureCollection")
    if not isinstance(collection.get("features"), list):
        raise ValueError(f"{path}: FeatureCollection without a features list")
    return collection


def slide_export(
    layout: StoreLayout, tensor: np.ndarray, traits: list[str], votes: list[TraitVotes], source: str
) -> list[dict]:
    """The features of one slide: classes from the cartography (checked against the votes), measurements."""
    positive, combination = tile_combinations(layout, tensor, source)
    by_trait = {trait.trait: trait for trait in votes}
    missing = [trait for trait in traits if trait not in by_trait]
    if missing:
        raise KeyError(f"slide {layout.slide_id}: no predictions of heterogeneity traits {missing}")
    check_calls(positive, traits, by_trait, source)
    return slide_features(layout, combination, traits, tile_measurements(votes, combination))


def write_qupath_exports(
    inputs: QupathInputs, threshold: float, directory: str | os.PathLike, log: logging.Logger | None = None
) -> int:
    """Write qupath/{slide_id}.geojson for every QC-passed slide into a folder made atomically; returns the count."""
    log = log or logging.getLogger(__name__)
    traits = read_table(inputs.traits, ["trait"])["trait"].astype(str).tolist()
    check_class_traits(traits)
    prediction_dirs = {Path(path).name: Path(path) for path in inputs.predictions}
    members = read_members(inputs.members)
    splits = {trait: chosen_splits(members, trait) for trait in prediction_dirs}
    slides = read_passed_slides(inputs.qc)
    with atomic_path(directory) as folder:
        folder.mkdir()
        for slide_id, layout in passed_layouts(slides, inputs.stores):
            source = str(Path(inputs.cartography) / f"{slide_id}.h5")
            tensor, tensor_traits, _ = read_cartography(source)
            tensor = select_traits(tensor, tensor_traits, traits, source)
            predictions = slide_predictions(prediction_dirs, slide_id, list(prediction_dirs))
            if predictions:  # only the tiles with predictions (an import may leave some out)
                layout = scored_layout(layout, predictions[0].coords)
            votes = [trait_votes(layout, trait, splits[trait.trait], threshold) for trait in predictions]
            features = slide_export(layout, tensor, traits, votes, source)
            write_geojson(folder / f"{slide_id}.geojson", features)
            log.info("%s: %d tiles exported for QuPath", slide_id, len(features))
    return len(slides)
