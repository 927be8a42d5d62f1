"""Importing TRIDENT, CLAM and STAMP feature files: reading each layout, finding a slide's file, matching patches to
tiles and recording per-slide failures, all against real tile stores and real HDF5 files with hand-counted answers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from workflow_scripts.features.featurestore import read_features, write_features
from workflow_scripts.features.importing import ImportSettings, import_slide
from workflow_scripts.features.matching import check_resolution, match_tiles
from workflow_scripts.features.trident_files import (
    FeatureImportError,
    TridentPatchAttrs,
    find_imported_file,
    read_imported_features,
    read_patch_coords,
    write_trident_features,
)
from workflow_scripts.slides.tilestore import encode_tile, write_tile_store

SPAN = 1024  # level-0 px per tile: 512 px tiles at 0.5 um/px on a 0.25 um/px (40x) slide, 256 um wide
GRID = (4, 3)  # n_cols, n_rows: 12 tiles
SOURCE = "/slides/TCGA-AB-1234-01Z.svs"


def grid_coords(n_cols: int = GRID[0], n_rows: int = GRID[1], span: int = SPAN) -> np.ndarray:
    """Row-major level-0 corners of a full grid, as the tiler writes them."""
    rows, cols = np.divmod(np.arange(n_cols * n_rows), n_cols)
    return np.stack([cols * span, rows * span], axis=1).astype(np.int64)


def make_store(path, slide_id="S1", source_path=SOURCE, source_mpp=0.25, coords=None):
    """A real jpeg tile store of a 4 x 3 grid of 512 px tiles at 0.5 um/px (the same flat tile everywhere)."""
    coords = grid_coords() if coords is None else coords
    tile = encode_tile(np.full((512, 512, 3), 180, np.uint8), 90)
    attrs = {
        "tile_px": 512, "mpp": 0.5, "level0_tile_px": 0.5 / source_mpp * 512, "source_mpp": source_mpp,
        "grid_shape": GRID, "source_path": source_path,
    }  # fmt: skip
    grid = np.stack([coords[:, 0] // SPAN, coords[:, 1] // SPAN], axis=1)
    return write_tile_store(path, slide_id, coords, grid, np.ones(len(coords)), [tile] * len(coords), attrs)


def trident_attrs(patch_size=512, level0_mag=40.0, target_mag=20.0, name="TCGA-AB-1234-01Z"):
    """TRIDENT's coords attributes for patch_size px at target_mag on a level0_mag slide."""
    return TridentPatchAttrs(
        patch_size=patch_size, patch_size_level0=int(patch_size * level0_mag // target_mag),
        level0_magnification=level0_mag, target_magnification=target_mag, name=name, savetodir="/job/20x",
        level0_width=4096, level0_height=3072,
    )  # fmt: skip


def features_for(n: int, dim: int = 6) -> np.ndarray:
    """Row i holds i + column / 10, so a matched row tells which patch it came from."""
    return (np.arange(n)[:, None] + np.arange(dim)[None, :] / 10).astype(np.float32)


def settings(folder, **values) -> ImportSettings:
    return ImportSettings.from_config({"folder": str(folder), **values})


# --- reading the layouts ---------------------------------------------------------------------------------------


def test_trident_feature_file_round_trip(tmp_path):
    path = tmp_path / "features_uni_v1" / "TCGA-AB-1234-01Z.h5"
    write_trident_features(path, features_for(12), grid_coords(), trident_attrs(), encoder="uni_v1")
    found = read_imported_features(path)
    assert found.layout == "trident" and found.encoder == "uni_v1"
    assert found.patch_size_level0 == 1024.0 and found.patch_um is None
    assert found.coords.dtype == np.int64 and found.coords.tolist() == grid_coords().tolist()
    assert found.features.dtype == np.float32 and np.array_equal(found.features, features_for(12))
    with h5py.File(path, "r") as handle:  # independent check of TRIDENT's attribute names and types
        assert dict(handle["features"].attrs) == {"name": "TCGA-AB-1234-01Z", "savetodir": str(path.parent),
                                                  "encoder": "uni_v1"}  # fmt: skip
        coords_attrs = handle["coords"].attrs
        assert coords_attrs["patch_size_level0"] == 1024 and coords_attrs["patch_size_level0"].dtype == np.int64
        assert coords_attrs["target_magnification"] == 20.0 and coords_attrs["overlap"] == 0
        assert handle["coords"].dtype == np.int64


def test_trident_without_patch_size_level0_uses_the_magnifications_and_the_folder_names_the_encoder(tmp_path):
    path = tmp_path / "20x_256px_0px_overlap" / "features_conch_v15" / "slide.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as handle:  # an older TRIDENT file written on purpose: no patch_size_level0
        handle.create_dataset("features", data=features_for(3)).attrs["encoder"] = "None"
        coords = handle.create_dataset("coords", data=grid_coords()[:3])
        coords.attrs.update({"patch_size": 256, "level0_magnification": 40, "target_magnification": 20})
    found = read_imported_features(path)
    assert found.patch_size_level0 == 512.0  # 256 x 40 / 20
    assert found.encoder == "conch_v15"


def test_tridents_empty_feature_file_reads_as_zero_rows(tmp_path):
    path = tmp_path / "features_x" / "slide.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as handle:  # TRIDENT's file for a slide without patches, written on purpose
        handle.create_dataset("features", data=np.empty((0,), np.float32)).attrs["encoder"] = "x"
        handle.create_dataset("coords", data=np.empty((0, 2), np.int64)).attrs["patch_size_level0"] = 1024
    found = read_imported_features(path)
    assert found.features.shape == (0, 0) and found.coords.shape == (0, 2) and found.patch_size_level0 == 1024.0


def test_clam_feature_file_has_no_patch_size_and_clam_patch_files_give_it_by_downsample(tmp_path):
    features = tmp_path / "h5_files" / "slide.h5"
    features.parent.mkdir()
    with h5py.File(features, "w") as handle:  # CLAM's extract_features_fp.py layout, written on purpose
        handle["features"] = features_for(4)
        handle["coords"] = grid_coords()[:4].astype(np.int32)
    found = read_imported_features(features)
    assert found.layout == "clam" and found.encoder == "" and found.patch_size_level0 is None
    assert found.coords.dtype == np.int64 and found.coords.tolist() == grid_coords()[:4].tolist()
    patches = tmp_path / "patches" / "slide.h5"
    patches.parent.mkdir()
    with h5py.File(patches, "w") as handle:  # CLAM's create_patches_fp.py layout, written on purpose
        coords = handle.create_dataset("coords", data=grid_coords()[:4])
        coords.attrs.update({"patch_size": 256, "patch_level": 1, "downsample": np.array([4.0, 4.0]), "name": "s"})
    read = read_patch_coords(patches)
    assert read.patch_size_level0 == 1024.0 and read.attrs["patch_level"] == 1  # 256 px read at a 4x level
    assert read.coords.tolist() == grid_coords()[:4].tolist()


@pytest.mark.parametrize("size_attrs", [{"tile_size_um": 256.0}, {"tile_size": 256.0}])
def test_stamp_feats_in_um_become_level0_pixels(tmp_path, size_attrs):
    path = tmp_path / "ctranspath" / "slide.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as handle:  # STAMP's layout (feats, um coords, file attributes), written on purpose
        handle["feats"] = features_for(3).astype(np.float16)
        handle["coords"] = np.array([[0.0, 0.0], [256.0, 0.0], [512.25, 256.0]])
        handle.attrs.update({"unit": "um", "tile_size_px": 224, "extractor": "ctranspath", **size_attrs})
    found = read_imported_features(path, level0_mpp=0.25)
    assert found.layout == "stamp" and found.encoder == "ctranspath" and found.patch_um == 256.0
    assert found.coords.tolist() == [[0, 0], [1024, 0], [2049, 1024]]  # um / 0.25
    assert found.features.dtype == np.float16
    with pytest.raises(FeatureImportError, match=r"slide.h5: coordinates are in um"):
        read_imported_features(path)


def test_unreadable_and_malformed_files_name_the_file_and_the_key(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(FeatureImportError, match=r"garbage.h5: not a readable HDF5 file"):
        read_imported_features(garbage)
    cases = {
        "nofeatures.h5": ({"coords": grid_coords()[:2]}, "lacks dataset 'features'"),
        "nocoords.h5": ({"features": features_for(2)}, "lacks dataset 'coords'"),
        "rows.h5": ({"features": features_for(3), "coords": grid_coords()[:2]}, "3 feature rows but 2 coords"),
        "shape.h5": ({"features": features_for(2), "coords": np.zeros((2, 3))}, r"coords must be \(N, 2\)"),
        "ints.h5": ({"features": np.ones((2, 3), np.int32), "coords": grid_coords()[:2]}, "features are int32"),
    }
    for name, (datasets, message) in cases.items():
        with h5py.File(tmp_path / name, "w") as handle:  # malformed on purpose
            for key, value in datasets.items():
                handle[key] = value
        with pytest.raises(FeatureImportError, match=f"{name}: {message}"):
            read_imported_features(tmp_path / name)


def test_find_imported_file_by_slide_id_or_file_stem_and_ambiguity(tmp_path):
    assert find_imported_file(tmp_path, "S1", "TCGA-AB.svs") is None
    (tmp_path / "TCGA-AB.h5").write_bytes(b"")
    assert find_imported_file(tmp_path, "S1", "/deep/TCGA-AB.svs") == tmp_path / "TCGA-AB.h5"
    assert find_imported_file(tmp_path, "TCGA-AB", "TCGA-AB.svs") == tmp_path / "TCGA-AB.h5"  # one name, one file
    (tmp_path / "S1.h5").write_bytes(b"")
    with pytest.raises(FeatureImportError, match=r"slide S1: two imported files .*S1.h5 and .*TCGA-AB.h5"):
        find_imported_file(tmp_path, "S1", "TCGA-AB.svs")
    (tmp_path / "x.ome.h5").write_bytes(b"")  # TRIDENT drops only the last extension
    assert find_imported_file(tmp_path, "S2", "x.ome.tiff") == tmp_path / "x.ome.h5"


def test_trident_writers_give_identical_bytes_for_identical_input(tmp_path):
    path = tmp_path / "features_x" / "slide.h5"
    contents = []
    for _ in range(2):
        write_trident_features(path, features_for(5), grid_coords()[:5], trident_attrs(), encoder="x")
        contents.append(path.read_bytes())
        path.unlink()
    assert contents[0] == contents[1]
    assert not list(path.parent.glob(".*.tmp"))


# --- matching ----------------------------------------------------------------------------------------------------


def test_exact_and_shuffled_coordinates_match_every_tile():
    store = grid_coords()
    order = np.random.default_rng(3).permutation(len(store))
    store_rows, imported_rows = match_tiles(store, store[order], SPAN)
    assert store_rows.tolist() == list(range(12))
    assert np.array_equal(store[order][imported_rows], store)


@pytest.mark.parametrize(("fraction", "matched"), [(0.49, True), (-0.49, True), (0.5, True), (0.51, False)])
def test_offsets_up_to_half_a_tile_match(fraction, matched):
    store = grid_coords(span=3 * SPAN)  # tiles three spans apart: only a tile's own patch can be near it
    shift = int(round(fraction * SPAN))  # 502, -502, 512, 522 level-0 px
    for offset in ([shift, 0], [0, shift], [shift, shift]):
        store_rows, imported_rows = match_tiles(store, store + offset, SPAN)
        expected = list(range(12)) if matched else []
        assert store_rows.tolist() == expected and imported_rows.tolist() == expected


def test_on_a_dense_grid_a_shift_past_half_a_tile_pairs_each_tile_with_its_neighbours_patch():
    store = grid_coords()
    store_rows, imported_rows = match_tiles(store, store + [522, 0], SPAN)  # patch i is 502 px left of tile i + 1
    assert store_rows.tolist() == [1, 2, 3, 5, 6, 7, 9, 10, 11]  # column 0 has no patch within 512 px
    assert (imported_rows + 1).tolist() == store_rows.tolist()


def test_a_far_shift_matches_nothing_and_partial_coverage_leaves_tiles_out():
    store = grid_coords()
    assert match_tiles(store, store + [0, 3 * SPAN + 600], SPAN)[0].tolist() == []
    kept = [0, 2, 3, 7, 11]
    store_rows, imported_rows = match_tiles(store, store[kept] + 40, SPAN)
    assert store_rows.tolist() == kept and imported_rows.tolist() == [0, 1, 2, 3, 4]
    assert match_tiles(store, np.zeros((0, 2)), SPAN)[0].tolist() == []


def test_each_patch_serves_one_tile_the_nearer_then_the_other_takes_the_next_free_patch():
    store = np.array([[0, 0], [90, 0]])  # half a tile is 50
    imported = np.array([[46, 0], [-48, 0]])  # patch 0: 46 from tile 0, 44 from tile 1; patch 1: 48 from tile 0
    assert [rows.tolist() for rows in match_tiles(store, imported, 100)] == [[0, 1], [1, 0]]
    assert [rows.tolist() for rows in match_tiles(store, imported[:1], 100)] == [[1], [0]]
    store, imported = np.array([[0, 0], [100, 0]]), np.array([[50, 0], [150, 0]])  # patch 0 50 from both tiles:
    assert [rows.tolist() for rows in match_tiles(store, imported, 100)] == [[0, 1], [0, 1]]  # tie to tile 0


def test_check_resolution_names_slide_and_both_sizes():
    check_resolution("S1", 256.0, 258.8)  # a 40x slide at 0.2527 um/px read as TRIDENT's nominal 40x: 1.1 % off
    with pytest.raises(FeatureImportError, match=r"slide S1: imported patches are 128.0 um wide, .* 256.0 um"):
        check_resolution("S1", 256.0, 128.0)
    with pytest.raises(ValueError, match="263.0 um"):
        check_resolution("S1", 256.0, 263.0)  # 2.7 % off


# --- importing one slide -----------------------------------------------------------------------------------------


def test_import_of_a_full_trident_file_passes_and_writes_a_feature_store(tmp_path):
    store = make_store(tmp_path / "tiles" / "S1.h5")
    folder = tmp_path / "features_uni_v1"
    order = np.random.default_rng(0).permutation(12)
    write_trident_features(folder / "TCGA-AB-1234-01Z.h5", features_for(12)[order], grid_coords()[order] + 30,
                           trident_attrs(), encoder="uni_v1")  # fmt: skip
    result = import_slide(store, settings(folder))
    assert (result.status, result.reason, result.n_imported) == ("pass", "", 12)
    assert result.expected_um == 256.0 and result.found_um == 256.0
    slide = result.features
    assert slide.tile_rows.tolist() == list(range(12)) and slide.coords.tolist() == grid_coords().tolist()
    assert slide.features.dtype == np.float16
    assert np.array_equal(slide.features, features_for(12).astype(np.float16))  # row i back on tile i
    assert (slide.attrs.source, slide.attrs.encoder, slide.attrs.n_store_tiles) == ("import", "uni_v1", 12)
    assert slide.attrs.source_file == str(folder / "TCGA-AB-1234-01Z.h5")
    back = read_features(write_features(tmp_path / "features" / "S1.h5", slide))
    assert back.slide_id == "S1" and np.array_equal(back.features, slide.features)


def test_partial_coverage_is_counted_and_over_the_threshold_fails(tmp_path):
    store = make_store(tmp_path / "S1.h5")
    kept = [0, 1, 2, 4, 5, 6, 8, 9, 10]  # 9 of 12 tiles: 3 unmatched = 25 %
    write_trident_features(tmp_path / "f" / "S1.h5", features_for(9), grid_coords()[kept], trident_attrs())
    result = import_slide(store, settings(tmp_path / "f", max_unmatched_fraction=0.25, encoder_name="mine"))
    assert result.status == "pass" and result.features.tile_rows.tolist() == kept
    assert result.features.attrs.encoder == "mine"
    failed = import_slide(store, settings(tmp_path / "f", max_unmatched_fraction=0.2))
    assert failed.status == "fail" and failed.n_imported == 9
    assert "slide S1: 3 of 12 store tiles (25.0%) have no imported patch" in failed.reason
    assert "(max_unmatched_fraction 0.2)" in failed.reason
    write_trident_features(tmp_path / "g" / "S1.h5", features_for(1), [[9000, 9000]], trident_attrs())
    nothing = import_slide(store, settings(tmp_path / "g", max_unmatched_fraction=1.0))
    assert nothing.status == "fail" and "12 of 12 store tiles (100.0%)" in nothing.reason
    assert "and none matched" in nothing.reason
    assert failed.features.n_tiles == 0 and failed.features.dim == 6  # the width known from the file
    write_features(tmp_path / "out" / "S1.h5", failed.features)  # a failed slide's store is still valid


def test_missing_file_fails_with_the_names_looked_for(tmp_path):
    store = make_store(tmp_path / "S1.h5")
    (tmp_path / "empty").mkdir()
    result = import_slide(store, settings(tmp_path / "empty"))
    assert result.status == "fail" and result.features.dim == 0 and result.n_imported == 0
    assert result.reason.startswith("no imported features for slide S1 in ")
    assert "S1.h5 and TCGA-AB-1234-01Z.h5" in result.reason


def test_resolution_mismatch_fails_naming_both_sizes(tmp_path):
    store = make_store(tmp_path / "S1.h5")
    attrs = trident_attrs(patch_size=256)  # 256 px at 20x on a 40x slide: 512 level-0 px, 128 um
    write_trident_features(tmp_path / "f" / "S1.h5", features_for(12), grid_coords(), attrs)
    result = import_slide(store, settings(tmp_path / "f"))
    assert result.status == "fail" and result.found_um == 128.0 and result.expected_um == 256.0
    assert "slide S1: imported patches are 128.0 um wide, the tile store's tiles 256.0 um" in result.reason


def test_clam_files_need_patch_um_and_import_with_it(tmp_path):
    store = make_store(tmp_path / "S1.h5")
    (tmp_path / "h5_files").mkdir()
    with h5py.File(tmp_path / "h5_files" / "TCGA-AB-1234-01Z.h5", "w") as handle:  # a CLAM file, on purpose
        handle["features"] = features_for(12)
        handle["coords"] = grid_coords().astype(np.int32)
    failed = import_slide(store, settings(tmp_path / "h5_files"))
    assert failed.status == "fail" and "states no patch size: set features.import.patch_um" in failed.reason
    assert failed.features.dim == 6 and failed.n_imported == 12
    passed = import_slide(store, settings(tmp_path / "h5_files", patch_um=256.0))
    assert passed.status == "pass" and passed.features.n_tiles == 12 and passed.found_um == 256.0


def test_stamp_file_imports_through_the_stores_level0_mpp(tmp_path):
    store = make_store(tmp_path / "S1.h5")
    (tmp_path / "stamp").mkdir()
    with h5py.File(tmp_path / "stamp" / "S1.h5", "w") as handle:  # a STAMP file, on purpose
        handle["feats"] = features_for(12).astype(np.float16)
        handle["coords"] = grid_coords() * 0.25 + 3.0  # um, 12 level-0 px off the tiles
        handle.attrs.update({"unit": "um", "tile_size_um": 256.0, "tile_size_px": 224, "extractor": "virchow2"})
    result = import_slide(store, settings(tmp_path / "stamp"))
    assert result.status == "pass" and result.found_um == 256.0 and result.features.attrs.encoder == "virchow2"
    assert np.array_equal(result.features.features, features_for(12).astype(np.float16))


def test_unreadable_file_and_float16_overflow_are_recorded_failures(tmp_path):
    store = make_store(tmp_path / "S1.h5")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "S1.h5").write_bytes(b"\x00" * 64)
    result = import_slide(store, settings(tmp_path / "bad"))
    assert result.status == "fail" and "slide S1: " in result.reason and "not a readable HDF5 file" in result.reason
    big = features_for(12)
    big[5, 2] = 1e6
    write_trident_features(tmp_path / "big" / "S1.h5", big, grid_coords(), trident_attrs())
    result = import_slide(store, settings(tmp_path / "big"))
    assert result.status == "fail" and "reach 1e+06, beyond float16's 65504" in result.reason


def test_import_settings_validate_keys_and_values(tmp_path):
    assert settings(tmp_path).max_unmatched_fraction == 0.5
    assert ImportSettings.from_config({"folder": "x", "planted": {"dim": 4}}).folder == "x"  # the demo's key
    with pytest.raises(ValueError, match=r"unknown features.import setting\(s\) \['patch_size'\]"):
        ImportSettings.from_config({"folder": "x", "patch_size": 256})
    with pytest.raises(ValueError, match="features.import.folder"):
        ImportSettings.from_config({"folder": None})
    with pytest.raises(ValueError, match=r"max_unmatched_fraction must be in \[0, 1\], got 1.5"):
        ImportSettings.from_config({"folder": "x", "max_unmatched_fraction": 1.5})
    with pytest.raises(ValueError, match="patch_um must be > 0"):
        ImportSettings.from_config({"folder": "x", "patch_um": 0})
