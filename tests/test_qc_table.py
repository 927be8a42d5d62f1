"""The QC table owner: the one 'passed QC' rule, strict statuses, empty measurements, exclusions."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from workflow_scripts.common.tables import read_text_table
from workflow_scripts.slides.qc_table import (
    FAILURE_COLUMNS,
    QC_COLUMNS,
    download_failure_row,
    passed_slides,
    read_failures,
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


def test_excluded_and_failed_downloads_become_fail_rows_and_failures(tmp_path):
    rows = [write_qc_row(tmp_path / "s1.tsv", row("s1")),
            write_qc_row(tmp_path / "s2.tsv", row("s2", status="fail", n_tiles=0, reason="blurred")),
            write_qc_row(tmp_path / "s3.tsv", download_failure_row("s3", "P-s3", "md5 mismatch"))]
    excluded = pd.DataFrame({"slide_id": ["s0", "s4"], "patient_id": ["P-s0", "P-s4"],
                             "file_name": ["s0.svs", "s4.svs"],
                             "reason": ["excluded by config", "sample type 06 (Metastatic) is not a primary tumour"]})
    table = summarise_qc(rows, [], tmp_path / "slides.tsv", excluded=excluded, failures_path=tmp_path / "failures.tsv")
    assert table["slide_id"].tolist() == ["s0", "s1", "s2", "s3", "s4"]
    assert table["status"].tolist() == ["fail", "pass", "fail", "fail", "fail"]
    assert table.loc[table["slide_id"] == "s3", "reason"].item() == "download failed: md5 mismatch"
    left_out = table[table["slide_id"].isin(["s0", "s4"])]
    assert left_out["n_tiles"].tolist() == [0, 0] and left_out["mpp"].isna().all()
    assert read_qc_table(tmp_path / "slides.tsv")["slide_id"].tolist() == table["slide_id"].tolist()
    failures = read_failures(tmp_path / "failures.tsv")
    assert list(failures.columns) == list(FAILURE_COLUMNS) == ["slide_id", "patient_id", "stage", "reason"]
    assert [tuple(r) for r in failures.itertuples(index=False)] == [
        ("s0", "P-s0", "excluded", "excluded by config"),
        ("s2", "P-s2", "qc", "blurred"),
        ("s3", "P-s3", "download", "download failed: md5 mismatch"),
        ("s4", "P-s4", "excluded", "sample type 06 (Metastatic) is not a primary tumour"),
    ]


def test_failures_table_is_header_only_when_every_slide_passes_and_checks_stages(tmp_path):
    rows = [write_qc_row(tmp_path / "s1.tsv", row("s1"))]
    summarise_qc(rows, [], tmp_path / "slides.tsv", failures_path=tmp_path / "failures.tsv")
    assert (tmp_path / "failures.tsv").read_text() == "slide_id\tpatient_id\tstage\treason\n"
    (tmp_path / "bad.tsv").write_text("slide_id\tpatient_id\tstage\treason\ns1\tP\tlater\tx\n")
    with pytest.raises(ValueError, match=r"bad.tsv: failure stage\(s\) \['later'\]"):
        read_failures(tmp_path / "bad.tsv")
