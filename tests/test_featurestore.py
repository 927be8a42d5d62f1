"""Feature stores and the feature tables: the contract round-trips, bad files are named, failures are recorded."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from qc_rows import qc_frame
from workflow_scripts.features.featurestore import (
    FeatureAttrs,
    FeatureStoreError,
    SlideFeatures,
    feature_files,
    feature_path,
    read_features,
    write_features,
)
from workflow_scripts.features.summary import (
    FEATURES_FAILED,
    analysis_qc,
    feature_row,
    read_feature_rows,
    write_feature_row,
    write_feature_tables,
)
from workflow_scripts.slides.qc_table import passed_slides, read_qc_table

ATTRS = FeatureAttrs(source="import", encoder="uni_v2", weights_sha256="ab" * 32, input_px=224, n_store_tiles=5,
                     source_file="/data/S1.h5")  # fmt: skip


def slide(slide_id: str = "S1", rows=(0, 2, 3), dim: int = 4, attrs: FeatureAttrs = ATTRS) -> SlideFeatures:
    """A slide with features at the given tile-store rows; row r sits at level-0 (100 r, 7)."""
    rows = np.asarray(rows, np.int64)
    features = np.arange(len(rows) * dim, dtype=np.float32).reshape(len(rows), dim) / 8
    return SlideFeatures(slide_id, features, np.stack([rows * 100, np.full(len(rows), 7)], axis=1), rows, attrs)


def test_feature_store_round_trips_and_is_byte_identical(tmp_path):
    path = feature_path(tmp_path, "S1")
    write_features(path, slide())
    first = path.read_bytes()
    write_features(path, slide())
    assert path.read_bytes() == first
    read = read_features(path)
    assert read.slide_id == "S1" and read.attrs == ATTRS and read.dim == 4 and read.n_tiles == 3
    assert read.features.dtype == np.float16
    np.testing.assert_array_equal(read.features, slide().features.astype(np.float16))
    assert read.coords.tolist() == [[0, 7], [200, 7], [300, 7]] and read.tile_rows.tolist() == [0, 2, 3]
    light = read_features(path, with_features=False)
    assert light.features.shape == (3, 0) and light.coords.tolist() == read.coords.tolist()
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_slide_has_no_rows(tmp_path):
    empty = slide(rows=(), dim=0, attrs=FeatureAttrs("import", "uni_v2", n_store_tiles=5))
    write_features(tmp_path / "S0.h5", empty)
    read = read_features(tmp_path / "S0.h5")
    assert read.n_tiles == 0 and read.dim == 0 and read.attrs.n_store_tiles == 5


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(tile_rows=np.array([0, 3, 2])), "increasing"),
        (dict(tile_rows=np.array([0, 2, 9])), "beyond the store's 5 tiles"),
        (dict(coords=np.zeros((2, 2))), "differ"),
        (dict(features=np.full((3, 4), 1e6)), "NaN, inf or values beyond"),
        (dict(attrs=FeatureAttrs("torch", "x", n_store_tiles=5)), "source must be one of"),
    ],
)
def test_writer_refuses_what_breaks_the_contract(tmp_path, bad, message):
    good = slide()
    values = dict(features=good.features, coords=good.coords, tile_rows=good.tile_rows, attrs=good.attrs) | bad
    with pytest.raises(FeatureStoreError, match=message):
        write_features(tmp_path / "S1.h5", SlideFeatures("S1", **values))
    assert not (tmp_path / "S1.h5").exists()


def test_reader_names_the_file_and_what_is_missing(tmp_path):
    path = tmp_path / "S1.h5"
    write_features(path, slide())
    with h5py.File(path, "a") as handle:  # broken on purpose
        del handle.attrs["weights_sha256"]
    with pytest.raises(FeatureStoreError, match=r"S1\.h5.*weights_sha256"):
        read_features(path)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(FeatureStoreError, match="junk.h5: not a readable feature store"):
        read_features(tmp_path / "junk.h5")


def test_feature_rows_count_unmatched_tiles(tmp_path):
    row = feature_row(slide())
    assert row["n_features"] == 3 and row["n_unmatched"] == 2 and row["unmatched_fraction"] == pytest.approx(0.4)
    failed = feature_row(slide("S2", rows=(), dim=0), "fail", "no imported features for slide S2")
    assert failed["n_features"] == 0 and failed["unmatched_fraction"] == 1.0
    empty = feature_row(slide("S3", rows=(), attrs=FeatureAttrs("encoder", "resnet", n_store_tiles=0)))
    assert math.isnan(empty["unmatched_fraction"])
    with pytest.raises(ValueError, match="feature status"):
        feature_row(slide(), "ok")
    paths = [write_feature_row(tmp_path / f"{name}.tsv", value) for name, value in (("b", failed), ("a", row))]
    table = read_feature_rows(paths)
    assert table["slide_id"].tolist() == ["S1", "S2"] and table["n_unmatched"].tolist() == [2, 5]
    with pytest.raises(ValueError, match="more than once"):
        read_feature_rows(paths + paths[:1])


def test_feature_failures_become_qc_failures_with_the_reason(tmp_path):
    qc = qc_frame([
        {"slide_id": "S1", "patient_id": "P1", "status": "pass", "reason": "", "n_tiles": 5},
        {"slide_id": "S2", "patient_id": "P2", "status": "pass", "reason": "", "n_tiles": 4},
        {"slide_id": "S3", "patient_id": "P3", "status": "fail", "reason": "too few tiles", "n_tiles": 0},
    ])  # fmt: skip
    rows = [
        write_feature_row(tmp_path / "S1.tsv", feature_row(slide())),
        write_feature_row(tmp_path / "S2.tsv", feature_row(slide("S2", rows=(), dim=0), "fail", "no file")),
    ]
    features, table = write_feature_tables(rows, qc, tmp_path / "summary.tsv", tmp_path / "qc.tsv")
    written = read_qc_table(tmp_path / "qc.tsv")
    assert written["status"].tolist() == table["status"].tolist()
    assert written["status"].tolist() == ["pass", "fail", "fail"]
    assert written["reason"].tolist() == ["", FEATURES_FAILED + "no file", "too few tiles"]
    assert written["n_tiles"].tolist() == [3, 0, 0]  # a passing slide keeps its embedded tiles
    assert passed_slides(written)["slide_id"].tolist() == ["S1"]
    assert read_feature_rows([tmp_path / "summary.tsv"])["slide_id"].tolist() == ["S1", "S2"]
    with pytest.raises(ValueError, match=r"without a feature row: \['S2'\]"):
        analysis_qc(qc, features[features["slide_id"] == "S1"])


def test_feature_files_expand_group_folders_and_pick_slides(tmp_path):
    group = tmp_path / "encoded" / "g0000"
    for slide_id in ("S2", "S1"):
        write_features(group / f"{slide_id}.h5", slide(slide_id))
    write_features(tmp_path / "S3.h5", slide("S3"))
    everything = feature_files([group, tmp_path / "S3.h5"])
    assert [path.stem for path in everything] == ["S1", "S2", "S3"]
    assert feature_files([group, tmp_path / "S3.h5"], {"S3", "S1"}) == [group / "S1.h5", tmp_path / "S3.h5"]
    with pytest.raises(FeatureStoreError, match=r"no feature store for slide\(s\) \['S9'\]"):
        feature_files([group], ["S1", "S9"])
    with pytest.raises(FeatureStoreError, match="two feature stores"):
        feature_files([group, group / "S1.h5"])
