"""Exporting tile stores as TRIDENT patch-coordinate files: TRIDENT's names and attributes, computed by hand from the
store, and a round trip (export, read back, match; and TRIDENT's feature file on those coords, imported) that gives
back every store tile."""

from __future__ import annotations

from dataclasses import fields

import h5py
import numpy as np
import pytest

from workflow_scripts.features.importing import ImportSettings, import_slide
from workflow_scripts.features.matching import match_tiles
from workflow_scripts.features.trident_export import (
    TridentExportError,
    export_trident_coords,
    trident_patch_folder_name,
    trident_slide_name,
)
from workflow_scripts.features.trident_files import TridentPatchAttrs, read_patch_coords, write_trident_features
from workflow_scripts.slides.tilestore import encode_tile, write_tile_store


def make_store(path, source_mpp=0.25, source_path="/cohort/TCGA-AB-1234-01Z-00-DX1.svs", n_cols=5, n_rows=2):
    """A real store of 512 px tiles at 0.5 um/px, corners at round(col x span) as the tiler places them."""
    span = 512 * 0.5 / source_mpp if source_mpp else 0.0
    rows, cols = np.divmod(np.arange(n_cols * n_rows), n_cols)
    coords = np.stack([np.rint(cols * span), np.rint(rows * span)], axis=1).astype(np.int64)
    tile = encode_tile(np.full((512, 512, 3), 200, np.uint8), 90)
    attrs = {
        "tile_px": 512, "mpp": 0.5, "level0_tile_px": span, "source_mpp": source_mpp, "grid_shape": (n_cols, n_rows),
        "source_path": source_path,
    }  # fmt: skip
    grid = np.stack([cols, rows], axis=1)
    write_tile_store(path, "S1", coords, grid, np.ones(len(coords)), [tile] * len(coords), attrs)
    return path, coords


def test_folder_and_slide_names_follow_trident():
    assert trident_patch_folder_name(0.5, 512) == "20x_512px_0px_overlap"
    assert trident_patch_folder_name(0.25, 256) == "40x_256px_0px_overlap"
    assert trident_patch_folder_name(1.0, 224) == "10x_224px_0px_overlap"
    assert trident_patch_folder_name(4.0, 512, overlap=64) == "2.5x_512px_64px_overlap"
    assert trident_slide_name("/a/b/TCGA-AB.svs") == "TCGA-AB"
    assert trident_slide_name("x.ome.tiff") == "x.ome"  # TRIDENT drops only the last extension


def test_export_writes_tridents_file_and_attributes(tmp_path):
    store, coords = make_store(tmp_path / "S1.h5")
    folder = tmp_path / "trident" / "20x_512px_0px_overlap" / "patches"
    written = export_trident_coords(store, folder)
    assert written == folder / "TCGA-AB-1234-01Z-00-DX1_patches.h5"
    with h5py.File(written, "r") as handle:  # independent check of the layout TRIDENT reads
        assert list(handle) == ["coords"]
        dataset = handle["coords"]
        assert dataset.dtype == np.int64 and dataset.shape == (10, 2)
        assert np.array_equal(dataset[...], coords)
        attrs = {key: (value.decode() if isinstance(value, bytes) else value) for key, value in dataset.attrs.items()}
    assert attrs == {
        "patch_size": 512, "patch_size_level0": 1024, "level0_magnification": 40.0, "target_magnification": 20.0,
        "overlap": 0, "name": "TCGA-AB-1234-01Z-00-DX1", "savetodir": str(folder.parent),
        "level0_width": 5 * 1024, "level0_height": 2 * 1024,
    }  # fmt: skip


def test_round_trip_matches_every_store_tile_even_for_an_uneven_span(tmp_path):
    store, coords = make_store(tmp_path / "S1.h5", source_mpp=0.2527)  # span 1013.06: corners 0, 1013, 2026, ...
    written = export_trident_coords(store, tmp_path / "patches")
    read = read_patch_coords(written)
    assert read.attrs["patch_size_level0"] == 1013
    assert read.attrs["level0_magnification"] == pytest.approx(10 / 0.2527)
    assert read.patch_size_level0 == 1013.0
    # TRIDENT's patcher reads round(patch_size x level0_mag / target_mag) level-0 px: the store's own span
    assert round(512 * read.attrs["level0_magnification"] / read.attrs["target_magnification"]) == 1013
    store_rows, imported_rows = match_tiles(coords, read.coords, 512 * 0.5 / 0.2527)
    assert store_rows.tolist() == list(range(10)) and imported_rows.tolist() == list(range(10))


def test_trident_features_on_exported_coords_import_onto_every_tile(tmp_path):
    store, coords = make_store(tmp_path / "S1.h5")
    written = export_trident_coords(store, tmp_path / "job" / "20x_512px_0px_overlap" / "patches")
    read = read_patch_coords(written)
    attrs = TridentPatchAttrs(**{item.name: read.attrs[item.name] for item in fields(TridentPatchAttrs)})
    features = np.arange(40, dtype=np.float32).reshape(10, 4)  # what TRIDENT's feat step would write, row per patch
    folder = tmp_path / "job" / "20x_512px_0px_overlap" / "features_uni_v1"
    write_trident_features(folder / "TCGA-AB-1234-01Z-00-DX1.h5", features, read.coords, attrs, encoder="uni_v1")
    result = import_slide(store, ImportSettings(folder=str(folder)))
    assert result.status == "pass" and result.features.tile_rows.tolist() == list(range(10))
    assert result.features.attrs.encoder == "uni_v1"
    assert np.array_equal(result.features.features, features.astype(np.float16))


def test_export_is_byte_identical_for_the_same_store(tmp_path):
    store, _ = make_store(tmp_path / "S1.h5")
    first = export_trident_coords(store, tmp_path / "patches").read_bytes()
    second = export_trident_coords(store, tmp_path / "patches").read_bytes()
    assert first == second


def test_a_store_that_failed_before_tiling_cannot_be_exported(tmp_path):
    store, _ = make_store(tmp_path / "S1.h5", source_mpp=0.0, source_path="", n_cols=0, n_rows=0)
    with pytest.raises(TridentExportError, match=r"S1.h5: slide S1 has no slide file, level-0 um/px or tile span"):
        export_trident_coords(store, tmp_path / "patches")


def test_a_store_without_tiles_gives_an_empty_coordinate_file(tmp_path):
    store, _ = make_store(tmp_path / "S1.h5", n_cols=0, n_rows=0)
    read = read_patch_coords(export_trident_coords(store, tmp_path / "patches"))
    assert read.coords.shape == (0, 2) and read.patch_size_level0 == 1024.0
