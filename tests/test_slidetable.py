"""The slide table from a GDC manifest, a folder of slides and a user table; exclusions and duplicate ids."""

from __future__ import annotations

import csv
import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

from workflow_scripts.inputs.gdc_manifest import GdcFile, write_manifest
from workflow_scripts.inputs.slidetable import (
    EXCLUDED_COLUMNS,
    TABLE_COLUMNS,
    SlideRecord,
    SlideTableError,
    build_slide_table,
    read_excluded_slides,
    read_slide_table,
    records_from_folder,
    records_from_manifest,
    records_from_table,
    slide_id_of,
    write_excluded_slides,
    write_slide_table,
)

SCRIPT = Path(__file__).resolve().parents[1] / "workflow_scripts" / "scripts" / "slide_table.py"
NAME_A = "TCGA-AR-A5QM-01Z-00-DX1.A9017CED-FF57-4090-95B9-94DC91854347.svs"
NAME_B = "TCGA-BH-A0W4-01Z-00-DX1.23E017DC-15CB-4838-AC91-CFB11B932AB0.svs"


def read_records(path: Path) -> list[SlideRecord]:
    """The rows of a written slides.tsv as records."""
    return [SlideRecord(**row) for row in read_slide_table(path).to_dict("records")]


def touch(path: Path, content: bytes = b"slide") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_slide_id_drops_only_the_last_extension():
    assert slide_id_of(NAME_A) == "TCGA-AR-A5QM-01Z-00-DX1.A9017CED-FF57-4090-95B9-94DC91854347"
    assert slide_id_of("case 7.ome.tiff") == "case 7.ome"
    assert slide_id_of("noext") == "noext"


def test_records_from_manifest():
    files = [GdcFile("id-b", NAME_B, "22b4efdeb4b04cc8bcd109c7c6f02472", 1491220569, "released"),
             GdcFile("id-a", NAME_A, "361e57cec75dcf6c042d4ea207b3d1cc", None, "released")]
    records = records_from_manifest(files, "brca")
    assert records[0] == SlideRecord(
        slide_id=NAME_B[:-4], patient_id="TCGA-BH-A0W4", path=f"resources/brca/slides/{NAME_B}", file_name=NAME_B,
        md5="22b4efdeb4b04cc8bcd109c7c6f02472", size="1491220569", file_id="id-b",
    )
    assert records[1].size == ""


def test_non_tcga_manifest_name_asks_for_a_table():
    with pytest.raises(SlideTableError, match=r"GDC file id-x: .*'slide_1.svs'.*slides.local.table"):
        records_from_manifest([GdcFile("id-x", "slide_1.svs", "", None, "")], "c")


def test_real_manifest_gives_sorted_table_with_exclusions(shared_data, tmp_path):
    manifest = shared_data / "tcga" / "gdc_manifest_brca_761.txt"
    slides = {"source": "gdc", "exclude": [NAME_A, NAME_B[:-4]]}
    records = build_slide_table(slides, "brca", manifest)
    assert len(records) == 758  # 761 minus the two excluded and the one metastatic (06) slide
    assert "TCGA-E2-A15E" not in {r.patient_id for r in records}
    assert [r.slide_id for r in records] == sorted(r.slide_id for r in records)
    assert {NAME_A, NAME_B}.isdisjoint(r.file_name for r in records)
    assert all(len(r.patient_id) == 12 and r.slide_id.startswith(r.patient_id) for r in records)
    assert all(r.path == f"resources/brca/slides/{r.file_name}" for r in records)
    assert len({r.patient_id for r in records}) == 700
    out = tmp_path / "slides.tsv"
    write_slide_table(records, out)
    first = out.read_bytes()
    write_slide_table(list(reversed(records)), out)
    assert out.read_bytes() == first
    assert read_records(out) == records
    assert out.read_text().splitlines()[0].split("\t") == list(TABLE_COLUMNS)


def test_folder_of_tcga_slides(tmp_path):
    folder = tmp_path / "wsi"
    touch(folder / NAME_A)
    touch(folder / "TCGA-BH-A0W4-01Z-00-DX1.ndpi")
    touch(folder / "notes.txt")
    touch(folder / ".TCGA-XX-XXXX-01Z-00-DX1.svs")
    records = records_from_folder(folder)
    assert [(r.slide_id, r.patient_id, r.path, r.file_name) for r in records] == [
        (NAME_A[:-4], "TCGA-AR-A5QM", str(folder / NAME_A), NAME_A),
        ("TCGA-BH-A0W4-01Z-00-DX1", "TCGA-BH-A0W4", str(folder / "TCGA-BH-A0W4-01Z-00-DX1.ndpi"),
         "TCGA-BH-A0W4-01Z-00-DX1.ndpi"),
    ]
    assert all(r.md5 == r.size == r.file_id == "" for r in records)


def test_folder_with_non_tcga_names_asks_for_a_table(tmp_path):
    touch(tmp_path / "case_0001.svs")
    with pytest.raises(SlideTableError, match=r"'case_0001.svs'.*slides.local.table"):
        records_from_folder(tmp_path)


def test_folder_without_slides_or_missing(tmp_path):
    touch(tmp_path / "readme.txt")
    with pytest.raises(SlideTableError, match="holds no slide files"):
        records_from_folder(tmp_path)
    with pytest.raises(SlideTableError, match="absent"):
        records_from_folder(tmp_path / "absent")


def test_duplicate_slide_id_is_an_error(tmp_path):
    touch(tmp_path / "TCGA-BH-A0W4-01Z-00-DX1.svs")
    touch(tmp_path / "TCGA-BH-A0W4-01Z-00-DX1.tif")
    with pytest.raises(SlideTableError, match="duplicate slide_id.*TCGA-BH-A0W4-01Z-00-DX1"):
        build_slide_table({"source": "local", "local": {"folder": str(tmp_path)}}, "c")


def write_table(path: Path, rows: list[list[str]], delimiter: str = "\t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv.writer(handle, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return path


def test_local_table_resolves_relative_paths_against_its_folder(tmp_path):
    touch(tmp_path / "data" / "images" / "s1.mrxs")
    absolute = touch(tmp_path / "elsewhere" / "s2.svs")
    table = write_table(tmp_path / "data" / "slides.tsv", [
        ["slide_id", "patient_id", "path", "extra"],
        ["s1", "P001", "images/s1.mrxs", "ignored"],
        ["s2", "P001", str(absolute), ""],
    ])
    records = records_from_table(table)
    assert records == [
        SlideRecord("s1", "P001", str(tmp_path / "data" / "images" / "s1.mrxs"), "s1.mrxs"),
        SlideRecord("s2", "P001", str(absolute), "s2.svs"),
    ]
    csv_table = write_table(tmp_path / "data" / "slides.csv", [["slide_id", "patient_id", "path"],
                                                               ["s1", "P001", "images/s1.mrxs"]], ",")
    assert records_from_table(csv_table) == records[:1]


def test_local_table_errors_name_the_problem(tmp_path):
    missing = write_table(tmp_path / "t1.tsv", [["slide_id", "patient_id", "path"], ["s1", "P1", "nope/s1.svs"]])
    with pytest.raises(SlideTableError, match=r"line 2: slide file .*nope/s1.svs does not exist"):
        records_from_table(missing)
    no_column = write_table(tmp_path / "t2.tsv", [["slide", "patient_id", "path"]])
    with pytest.raises(SlideTableError, match="lacks column.*slide_id"):
        records_from_table(no_column)
    touch(tmp_path / "s.svs")
    hostile = write_table(tmp_path / "t3.tsv", [["slide_id", "patient_id", "path"], ["../s", "P1", "s.svs"]])
    with pytest.raises(SlideTableError, match=r"slide_id '../s' is unusable"):
        records_from_table(hostile)
    duplicated = write_table(tmp_path / "t4.tsv", [["slide_id", "patient_id", "path"], ["s", "P1", "s.svs"],
                                                   ["s", "P2", "s.svs"]])
    with pytest.raises(SlideTableError, match="duplicate slide_id.*: s$"):
        build_slide_table({"source": "local", "local": {"table": str(duplicated)}}, "c")
    with pytest.raises(SlideTableError, match="does not exist"):
        records_from_table(tmp_path / "absent.tsv")


def test_config_errors():
    with pytest.raises(SlideTableError, match="'synthetic' is not gdc or local"):
        build_slide_table({"source": "synthetic"}, "c")
    with pytest.raises(SlideTableError, match="slides.local.table or slides.local.folder"):
        build_slide_table({"source": "local", "local": {}}, "c")
    with pytest.raises(SlideTableError, match="no GDC manifest"):
        build_slide_table({"source": "gdc"}, "c")


def test_exclusions_on_local_table_and_all_excluded(tmp_path, caplog):
    touch(tmp_path / "a.svs")
    touch(tmp_path / "b.svs")
    table = write_table(tmp_path / "t.tsv", [["slide_id", "patient_id", "path"], ["a", "P1", "a.svs"],
                                             ["b", "P2", "b.svs"]])
    local = {"table": str(table)}
    with caplog.at_level(logging.WARNING):
        kept = build_slide_table({"source": "local", "local": local, "exclude": ["a.svs", "zzz"]}, "c")
    assert [r.slide_id for r in kept] == ["b"]
    assert "'zzz' matches no slide" in caplog.text
    with pytest.raises(SlideTableError, match="no slides left"):
        build_slide_table({"source": "local", "local": local, "exclude": ["a", "b.svs"]}, "c")


def test_slide_table_script_for_gdc_and_local(tmp_path):
    manifest = tmp_path / "resources" / "tcga" / "gdc_manifest.txt"
    write_manifest([GdcFile("id-a", NAME_A, "361e57cec75dcf6c042d4ea207b3d1cc", 10, "released")], manifest)
    log_path = tmp_path / "logs" / "slide_table.log"
    out = tmp_path / "resources" / "tcga" / "slides.tsv"
    runpy.run_path(str(SCRIPT), init_globals={"snakemake": SimpleNamespace(
        log=[str(log_path)], input=SimpleNamespace(manifest=str(manifest)),
        output=SimpleNamespace(table=str(out), excluded=str(out.with_name("slides_excluded.tsv"))),
        params=SimpleNamespace(slides={"source": "gdc", "exclude": []}, cohort="tcga"),
    )})
    [record] = read_records(out)
    assert record == SlideRecord(NAME_A[:-4], "TCGA-AR-A5QM", f"resources/tcga/slides/{NAME_A}", NAME_A,
                                 "361e57cec75dcf6c042d4ea207b3d1cc", "10", "id-a")
    touch(tmp_path / "wsi" / NAME_B)
    runpy.run_path(str(SCRIPT), init_globals={"snakemake": SimpleNamespace(
        log=[str(log_path)], input=SimpleNamespace(),
        output=SimpleNamespace(table=str(out), excluded=str(out.with_name("slides_excluded.tsv"))),
        params=SimpleNamespace(slides={"source": "local", "local": {"folder": str(tmp_path / "wsi")}}, cohort="x"),
    )})
    assert read_slide_table(out)["file_name"].tolist() == [NAME_B]
    assert "wrote 1 slides" in log_path.read_text()


def test_reading_checks_columns_cells_and_unique_ids_naming_the_file(tmp_path):
    header = "\t".join(TABLE_COLUMNS)
    table = tmp_path / "slides.tsv"
    table.write_text(f"{header}\n007\tP1\ta/007.svs\t007.svs\t\t\t\n")
    frame = read_slide_table(table)
    assert frame.loc[0, "slide_id"] == "007" and frame.loc[0, "size"] == "" and frame.loc[0, "md5"] == ""
    table.write_text("slide_id\tpatient_id\tpath\n007\tP1\ta.svs\n")
    with pytest.raises(SlideTableError, match=f"{table}: missing columns.*file_name"):
        read_slide_table(table)
    table.write_text(f"{header}\ns1\tP1\ts1.svs\ts1.svs\t\t\t\ns2\t\ts2.svs\ts2.svs\t\t\t\n")
    with pytest.raises(SlideTableError, match=f"{table} line 3: empty patient_id"):
        read_slide_table(table)
    table.write_text(f"{header}\ns1\tP1\ts1.svs\ts1.svs\t\t\t\ns1\tP2\ts1.svs\ts1.svs\t\t\t\n")
    with pytest.raises(SlideTableError, match=f"{table}: duplicate slide_id.*s1"):
        read_slide_table(table)


METASTATIC = "TCGA-E2-A15E-06Z-00-DX1.D394A007-91A2-4445-9B4A-1629EE684A51.svs"
RECURRENT = "TCGA-50-5066-02Z-00-DX1.A2CA045A-7956-4E04-9EC9-5856FC789110.svs"


def test_manifest_non_primary_slides_excluded_with_reasons(tmp_path, caplog):
    manifest = tmp_path / "manifest.txt"
    write_manifest([GdcFile(f"id-{i}", name, "0" * 32, 10, "released")
                    for i, name in enumerate([NAME_A, METASTATIC, RECURRENT, NAME_B])], manifest)
    with caplog.at_level(logging.INFO):
        records = build_slide_table({"source": "gdc"}, "brca", manifest)
    assert [r.file_name for r in records] == [NAME_A, NAME_B]
    assert list(TABLE_COLUMNS) == ["slide_id", "patient_id", "path", "file_name", "md5", "size", "file_id"]
    assert f"slide {METASTATIC[:-4]} excluded: sample type 06 (Metastatic) is not a primary tumour" in caplog.text
    assert (f"slide {RECURRENT[:-4]} excluded: sample type 02 (Recurrent Solid Tumor) is not a primary tumour"
            in caplog.text)
    assert "2 slide(s) excluded by sample type (allowed: 01)" in caplog.text
    kept = build_slide_table({"source": "gdc"}, "brca", manifest, sample_types=["01", "06"])
    assert [r.file_name for r in kept] == [NAME_A, NAME_B, METASTATIC]  # sorted by slide id


def test_folder_non_primary_slides_excluded_and_plain_table_kept(tmp_path, caplog):
    folder = tmp_path / "wsi"
    for name in (NAME_A, METASTATIC):
        touch(folder / name)
    with caplog.at_level(logging.WARNING):
        records = build_slide_table({"source": "local", "local": {"folder": str(folder)}}, "c")
    assert [r.file_name for r in records] == [NAME_A]
    assert "sample type 06 (Metastatic) is not a primary tumour" in caplog.text
    with pytest.raises(SlideTableError, match="no slides left after slides.exclude and slides.sample_types"):
        build_slide_table({"source": "local", "local": {"folder": str(folder)}}, "c", sample_types=["11"])
    with pytest.raises(SlideTableError, match="slides.sample_types: sample type 'x1'"):
        build_slide_table({"source": "local", "local": {"folder": str(folder)}}, "c", sample_types=["x1"])
    touch(tmp_path / "own" / "case_1.svs")
    table = write_table(tmp_path / "t.tsv", [["slide_id", "patient_id", "path"], ["case_1", "P001", "own/case_1.svs"],
                                             ["m", "TCGA-E2-A15E", f"wsi/{METASTATIC}"]])
    kept = build_slide_table({"source": "local", "local": {"table": str(table)}}, "c")
    assert [r.slide_id for r in kept] == ["case_1", "m"]  # a user's table lists its slides explicitly


def test_slide_table_script_passes_configured_sample_types(tmp_path):
    manifest = tmp_path / "manifest.txt"
    write_manifest([GdcFile("id-a", NAME_A, "0" * 32, 10, "released"),
                    GdcFile("id-m", METASTATIC, "0" * 32, 10, "released")], manifest)
    log_path = tmp_path / "logs" / "slide_table.log"
    out, excluded = tmp_path / "slides.tsv", tmp_path / "slides_excluded.tsv"
    for slides, expected, left_out in (
        ({"source": "gdc"}, [NAME_A], [METASTATIC]),
        ({"source": "gdc", "sample_types": ["01", "06"]}, [NAME_A, METASTATIC], []),
    ):
        runpy.run_path(str(SCRIPT), init_globals={"snakemake": SimpleNamespace(
            log=[str(log_path)], input=SimpleNamespace(manifest=str(manifest)),
            output=SimpleNamespace(table=str(out), excluded=str(excluded)),
            params=SimpleNamespace(slides=slides, cohort="tcga"),
        )})
        assert read_slide_table(out)["file_name"].tolist() == expected
        assert read_excluded_slides(excluded)["file_name"].tolist() == left_out
    assert "excluded: sample type 06 (Metastatic) is not a primary tumour" in log_path.read_text()


def test_excluded_slides_are_listed_with_their_reasons(tmp_path):
    manifest = tmp_path / "manifest.txt"
    write_manifest([GdcFile(f"id-{i}", name, "0" * 32, 10, "released")
                    for i, name in enumerate([NAME_A, METASTATIC, RECURRENT, NAME_B])], manifest)
    dropped = []
    kept = build_slide_table({"source": "gdc", "exclude": [NAME_B[:-4]]}, "brca", manifest, dropped=dropped)
    assert [r.file_name for r in kept] == [NAME_A]
    path = tmp_path / "slides_excluded.tsv"
    write_excluded_slides(dropped, path)
    table = read_excluded_slides(path)
    assert list(table.columns) == list(EXCLUDED_COLUMNS) == ["slide_id", "patient_id", "file_name", "reason"]
    assert table["slide_id"].tolist() == sorted(name[:-4] for name in (METASTATIC, RECURRENT, NAME_B))
    reasons = dict(zip(table["file_name"], table["reason"]))
    assert reasons[NAME_B] == "excluded by config"
    assert reasons[METASTATIC] == "sample type 06 (Metastatic) is not a primary tumour"
    assert dict(zip(table["file_name"], table["patient_id"]))[RECURRENT] == "TCGA-50-5066"
    write_excluded_slides([], path)
    assert read_excluded_slides(path).empty
    path.write_text("slide_id\tpatient_id\tfile_name\treason\ns1\tP1\ts1.svs\t\n")
    with pytest.raises(SlideTableError, match=r"slides_excluded.tsv line 2: empty reason"):
        read_excluded_slides(path)
