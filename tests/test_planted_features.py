"""Planted features of the synthetic cohort: the trait dimensions carry the truth grid, and nothing else does."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from workflow_scripts.demo.layout import BACKGROUND
from workflow_scripts.demo.planted_features import PlantedFeatures, planted_vectors, write_planted_folder
from workflow_scripts.demo.truth import SlideTruth, truth_path, write_truth
from workflow_scripts.features.trident_files import read_imported_features

CELL = 192


def truth(slide_id: str = "S1", rows: int = 30, cols: int = 40) -> SlideTruth:
    """A truth grid: trait 0 on the left half, trait 1 on the top half, the last column background."""
    grid = np.zeros((rows, cols, 2), np.uint8)
    grid[:, : cols // 2, 0] = 1
    grid[: rows // 2, :, 1] = 1
    grid[:, -1, :] = BACKGROUND
    regions = np.array([[1, 0], [0, 1]], np.uint8)
    size = (cols * CELL, rows * CELL)
    return SlideTruth(slide_id, "P1", ("A", "B"), grid, np.ones((rows, cols), np.float32), regions, CELL, size,
                      0.25, 0.5, 0.5)  # fmt: skip


def test_trait_dimensions_separate_carriers_by_the_signal():
    planted = PlantedFeatures(dim=12, dims_per_trait=3, signal=2.0, noise_sd=1.0, slide_sd=0.0, drop_fraction=0.0)
    features, coords, members = planted_vectors(truth(), planted, seed=1)
    assert features.shape == (30 * 39, 12) and features.dtype == np.float32 and members.shape == (30 * 39, 2)
    offset = coords[0]  # cell (0, 0) comes first
    cols, rows = ((coords - offset) // CELL).T
    assert (cols < 39).all() and np.array_equal(members[:, 0], (cols < 20).astype(np.uint8))
    assert 0 <= offset.min() and offset.max() <= planted.max_offset_px
    np.testing.assert_array_equal(coords, np.stack([cols, rows], axis=1) * CELL + offset)
    for trait, dims in ((0, slice(0, 3)), (1, slice(3, 6))):
        carried = features[members[:, trait] == 1, dims].mean()
        not_carried = features[members[:, trait] == 0, dims].mean()
        assert carried - not_carried == pytest.approx(2.0, abs=0.15)  # signal / 2 - (-signal / 2), 1,170 cells
    assert np.abs(features[:, 6:].mean()) < 0.1 and features[:, 6:].std() == pytest.approx(1.0, abs=0.05)


def test_signal_zero_removes_the_trait_dimensions():
    features, _, members = planted_vectors(truth(), PlantedFeatures(signal=0.0, slide_sd=0.0), seed=1)
    difference = features[members[:, 0] == 1, :4].mean() - features[members[:, 0] == 0, :4].mean()
    assert abs(difference) < 0.1


def test_drops_offsets_and_streams_are_seeded():
    planted = PlantedFeatures(drop_fraction=0.2)
    first = planted_vectors(truth(), planted, seed=3)
    again = planted_vectors(truth(), planted, seed=3)
    other = planted_vectors(truth("S2"), planted, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0][:10], other[0][:10])
    assert len(first[1]) == pytest.approx(0.8 * 30 * 39, rel=0.1)


@pytest.mark.parametrize(
    ("values", "message"),
    [({"dimz": 3}, "features.import.planted.dimz"), ({"signal": -1}, "signal must be >= 0"),
     ({"drop_fraction": 1.0}, "drop_fraction")],
)  # fmt: skip
def test_bad_settings_name_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        PlantedFeatures.from_config(values)


def test_traits_must_fit_and_offsets_stay_under_half_a_cell():
    with pytest.raises(ValueError, match="do not fit in dim 5"):
        planted_vectors(truth(), PlantedFeatures(dim=5, dims_per_trait=3), seed=0)
    with pytest.raises(ValueError, match="under half a cell"):
        planted_vectors(truth(), PlantedFeatures(max_offset_px=96), seed=0)


def test_folder_holds_trident_files_named_by_slide_file(tmp_path):
    truth_folder = tmp_path / "truth"
    truth_folder.mkdir()
    for slide_id in ("S1", "S2"):
        write_truth(truth_path(truth_folder, slide_id), truth(slide_id))
    files = {"S1": "/data/S1.svs", "S2": "/data/S2-DX1.uuid.svs"}
    folder = tmp_path / "trident" / "features_planted"
    assert write_planted_folder(truth_folder, files, folder, PlantedFeatures(), tile_px=96, seed=0) == 2
    assert sorted(path.name for path in folder.iterdir()) == ["S1.h5", "S2-DX1.uuid.h5"]
    imported = read_imported_features(folder / "S2-DX1.uuid.h5")
    features, coords, _ = planted_vectors(truth("S2"), PlantedFeatures(), seed=0)
    np.testing.assert_array_equal(imported.features, features)
    np.testing.assert_array_equal(imported.coords, coords)
    assert imported.patch_size_level0 == CELL and imported.encoder == "planted"
    first = (folder / "S1.h5").read_bytes()
    shutil.rmtree(folder)  # as Snakemake does before rerunning the rule
    write_planted_folder(truth_folder, files, folder, PlantedFeatures(), tile_px=96, seed=0)
    assert (folder / "S1.h5").read_bytes() == first
