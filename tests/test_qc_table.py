"""The QC table owner: the one 'passed QC' rule, strict statuses, empty measurements, exclusions."""

from __future__ import annotations

import math

import pytest

from workflow_scripts.common.tables import read_text_table
from workflow_scripts.slides.qc_table import (
    QC_COLUMNS,
    passed_slides,
    read_passed_slides,
    read_qc_table,
    summarise_qc,
    write_qc_row,
)


def row(slide_id, status="pass", n_tiles=3, **extra):
    values = {"slide_id": slide_id, "patient_id": f"P-{slide_id}", "status": status, "n_tiles": n_tiles}
    return values | {"mpp": 0.25, "width": 4000, "height": 3000} | extra


def test_row_round_trip_keeps_ids_as_text_and_blank_measurements(tmp_path):
    path = write_qc_row(tmp_path / "007.tsv", row("007", mpp=None, reason="", tissue_fraction=float("nan")))
    table = read_qc_table(path)
    assert list(table.columns) == list(QC_COLUMNS)
    assert table.loc[0, "slide_id"] == "007" and table.loc[0, "patient_id"] == "P-007"
    assert math.isnan(table.loc[0, "mpp"]) and math.isnan(table.loc[0, "tissue_fraction"])
    assert table.loc[0, "n_tiles"] == 3 and table.loc[0, "width"] == 4000.0
    assert read_text_table(path).loc[0, "mpp"] == ""


def test_summary_sorts_excludes_by_id_or_file_name_and_passes_one_rule(tmp_path):
    rows = [write_qc_row(tmp_path / f"{name}.tsv", row(name)) for name in ("s3", "s1", "s2")]
    rows.append(write_qc_row(tmp_path / "s4.tsv", row("s4", status="fail", n_tiles=0, reason="blurred")))
    table = summarise_qc(rows, ["s2.svs"], tmp_path / "slides.tsv")
    assert table["slide_id"].tolist() == ["s1", "s2", "s3", "s4"]
    assert table["status"].tolist() == ["pass", "fail", "pass", "fail"]
    assert table["reason"].tolist() == ["", "excluded by config", "", "blurred"]
    passed = read_passed_slides(tmp_path / "slides.tsv")
    assert passed["slide_id"].tolist() == ["s1", "s3"]
    assert list(passed.columns) == ["slide_id", "patient_id", "n_tiles"]


def test_unknown_status_is_rejected_naming_the_file(tmp_path):
    path = write_qc_row(tmp_path / "x.tsv", row("x", status="PASS"))
    with pytest.raises(ValueError, match=r"x\.tsv.*'PASS'"):
        read_qc_table(path)
    table = read_qc_table(write_qc_row(tmp_path / "y.tsv", row("y"))).assign(status="passed")
    with pytest.raises(ValueError, match="passed"):
        passed_slides(table)


def test_missing_column_and_duplicate_slide_are_errors(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("slide_id\tstatus\nA\tpass\n")
    with pytest.raises(ValueError, match=r"bad\.tsv: missing columns"):
        read_qc_table(path)
    rows = [write_qc_row(tmp_path / "a.tsv", row("a")), write_qc_row(tmp_path / "b.tsv", row("a"))]
    with pytest.raises(ValueError, match="more than one QC row"):
        summarise_qc(rows, [], tmp_path / "slides.tsv")


def test_a_killed_write_leaves_a_fixed_temporary_that_the_next_write_replaces(tmp_path):
    from workflow_scripts.common.atomic import atomic_path

    final = tmp_path / "slides.tsv"
    leftover = tmp_path / ".slides.tsv.tmp"
    leftover.write_text("half-written by a killed job")
    write_qc_row(final, row("a"))
    assert not leftover.exists() and read_qc_table(final)["slide_id"].tolist() == ["a"]
    with pytest.raises(RuntimeError):
        with atomic_path(final) as temporary:
            temporary.write_text("partial")
            raise RuntimeError("killed")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["slides.tsv"]
