"""Survival and covariates from the cBioPortal patient table (real BRCA file) and the TCGA-CDR table."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest

from workflow_scripts.inputs.clinical import (
    CLINICAL_COLUMNS,
    DAYS_PER_MONTH,
    make_clinical_file,
    parse_os_event,
    read_clinical,
    read_clinical_table,
)

REAL_FILE = "tcga/brca_tcga_pan_can_atlas_2018.data_clinical_patient.txt"

CBIOPORTAL = """#Patient Identifier\tSubtype\tOverall Survival Status\tOverall Survival (Months)\tDiagnosis Age\tStage\tER
#Identifier\tSubtype\tStatus\tMonths\tAge\tStage\tER
#STRING\tSTRING\tSTRING\tNUMBER\tNUMBER\tSTRING\tSTRING
#1\t1\t1\t1\t1\t1\t1
PATIENT_ID\tSUBTYPE\tOS_STATUS\tOS_MONTHS\tAGE\tAJCC_PATHOLOGIC_TUMOR_STAGE\tER_STATUS_BY_IHC
TCGA-AA-0003\tBRCA_LumA\t1:DECEASED\t12.5\t61\tStage IIa\tPositive
TCGA-AA-0001\tBRCA_Basal\tLIVING\t40\t\tSTAGE  IIIA\tNegative
TCGA-AA-0002\t\tDECEASED\t\t70\t[Not Available]\tIndeterminate
TCGA-AA-0004\tBRCA_Her2\t\t3.0\t45\tSTAGE I\t[Not Evaluated]
TCGA-AA-0005\tBRCA_LumB\t0:LIVING\t0\t50\tSTAGE IV\t
"""


def test_cbioportal_small_table_hand_checked(tmp_path, caplog):
    path = tmp_path / "data_clinical_patient.txt"
    path.write_text(CBIOPORTAL)
    log = logging.getLogger("test_clinical")
    with caplog.at_level(logging.INFO, logger="test_clinical"):
        table = read_clinical(path, "cbioportal", log)
    assert list(table.columns) == CLINICAL_COLUMNS
    assert table["patient_id"].tolist() == ["TCGA-AA-0001", "TCGA-AA-0003", "TCGA-AA-0005"]
    assert table["os_months"].tolist() == [40.0, 12.5, 0.0]
    assert table["os_event"].tolist() == [0, 1, 0]
    assert math.isnan(table["age"].iloc[0]) and table["age"].tolist()[1:] == [61.0, 50.0]
    assert table["stage"].tolist() == ["STAGE IIIA", "STAGE IIA", "STAGE IV"]
    assert table["subtype"].tolist() == ["BRCA_Basal", "BRCA_LumA", "BRCA_LumB"]
    assert table["er_status"].tolist() == ["negative", "positive", ""]
    assert "5 patients, 2 excluded for missing survival status or time" in caplog.text
    assert "TCGA-AA-0002" in caplog.text and "TCGA-AA-0004" in caplog.text


def test_real_cbioportal_brca_file(shared_data, tmp_path, caplog):
    log = logging.getLogger("test_clinical_real")
    with caplog.at_level(logging.INFO, logger="test_clinical_real"):
        table = make_clinical_file(shared_data / REAL_FILE, "cbioportal", tmp_path / "clinical.tsv", log)
    assert "1084 patients, 0 excluded for missing survival status or time" in caplog.text
    assert len(table) == 1084 and table["patient_id"].is_unique
    assert table["patient_id"].str.len().eq(12).all()
    assert table["os_event"].sum() == 151  # 151 x 1:DECEASED, 933 x 0:LIVING in the file
    first = table.set_index("patient_id").loc["TCGA-3C-AAAU"]
    assert first["os_months"] == pytest.approx(133.0505967)
    assert (first["os_event"], first["age"], first["stage"], first["subtype"]) == (0, 55.0, "STAGE X", "BRCA_LumA")
    assert table["subtype"].value_counts().to_dict() == {
        "BRCA_LumA": 499,
        "BRCA_LumB": 197,
        "BRCA_Basal": 171,
        "": 103,
        "BRCA_Her2": 78,
        "BRCA_Normal": 36,
    }
    assert (table["stage"] == "").sum() == 5
    assert (table["er_status"] == "").all()  # the PanCanAtlas patient table has no ER column
    written = read_clinical_table(tmp_path / "clinical.tsv")
    assert list(written.columns) == CLINICAL_COLUMNS and len(written) == 1084
    pd.testing.assert_frame_equal(written, table)


def cdr_frame() -> pd.DataFrame:
    """A TCGA-CDR-shaped table: OS 0/1, OS.time in days, TCGA missing-value markers."""
    return pd.DataFrame(
        {
            "bcr_patient_barcode": ["TCGA-BB-0002", "TCGA-BB-0001", "TCGA-BB-0003", "TCGA-BB-0004"],
            "type": ["BRCA"] * 4,
            "age_at_initial_pathologic_diagnosis": ["48", "[Not Available]", "66", "70"],
            "ajcc_pathologic_tumor_stage": ["Stage IIB", "Stage I", "[Discrepancy]", "Stage IV"],
            "vital_status": ["Dead", "Alive", "Alive", "Dead"],
            "OS": ["1", "0", "0", "#N/A"],
            "OS.time": ["365.25", "1461", "", "20"],
        }
    )


@pytest.mark.parametrize("kind", ["tsv", "csv", "xlsx"])
def test_cdr_formats_convert_days_to_months(tmp_path, kind):
    frame = cdr_frame()
    path = tmp_path / f"TCGA-CDR.{kind}"
    if kind == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif kind == "csv":
        frame.to_csv(path, index=False)
    else:  # the published supplement: sheet TCGA-CDR with a leading unnamed index column
        frame.to_excel(path, sheet_name="TCGA-CDR", index=True)
    table = read_clinical(path, "cdr")
    assert table["patient_id"].tolist() == ["TCGA-BB-0001", "TCGA-BB-0002"]
    assert table["os_months"].tolist() == [1461 / DAYS_PER_MONTH, 365.25 / DAYS_PER_MONTH]
    assert table["os_months"].iloc[0] == pytest.approx(48.0)  # 4 years
    assert table["os_event"].tolist() == [0, 1]
    assert math.isnan(table["age"].iloc[0]) and table["age"].iloc[1] == 48.0
    assert table["stage"].tolist() == ["STAGE I", "STAGE IIB"]
    assert table["subtype"].tolist() == ["", ""]


def test_os_status_spellings_and_errors(tmp_path):
    assert [parse_os_event(text, "x") for text in ("1:DECEASED", "0:LIVING", "DECEASED", "Living", "1", "0")] == [
        1,
        0,
        1,
        0,
        1,
        0,
    ]
    assert math.isnan(parse_os_event("[Not Available]", "x"))
    with pytest.raises(ValueError, match="f.txt: patient P: survival status '1:LIVING'"):
        parse_os_event("1:LIVING", "f.txt: patient P")
    bad = tmp_path / "bad.txt"
    bad.write_text("PATIENT_ID\tOS_STATUS\tOS_MONTHS\nP1\tRECOVERED\t3\n")
    with pytest.raises(ValueError, match="bad.txt: patient P1: survival status 'RECOVERED'"):
        read_clinical(bad, "cbioportal")
    negative = tmp_path / "negative.txt"
    negative.write_text("PATIENT_ID\tOS_STATUS\tOS_MONTHS\nP1\tLIVING\t-3\n")
    with pytest.raises(ValueError, match="patient P1 has negative survival time"):
        read_clinical(negative, "cbioportal")
    duplicated = tmp_path / "dup.txt"
    duplicated.write_text("PATIENT_ID\tOS_STATUS\tOS_MONTHS\nP1\tLIVING\t3\nP1\tLIVING\t4\n")
    with pytest.raises(ValueError, match=r"listed twice: \['P1'\]"):
        read_clinical(duplicated, "cbioportal")
    with pytest.raises(ValueError, match="lacks column 'OS_MONTHS'"):
        negative.write_text("PATIENT_ID\tOS_STATUS\nP1\tLIVING\n")
        read_clinical(negative, "cbioportal")
    with pytest.raises(ValueError, match="format 'json'"):
        read_clinical(negative, "json")


def test_clinical_file_round_trips_and_names_a_missing_column(tmp_path):
    source = tmp_path / "data_clinical_patient.txt"
    source.write_text(CBIOPORTAL)
    table = make_clinical_file(source, "cbioportal", tmp_path / "clinical.tsv")
    lines = (tmp_path / "clinical.tsv").read_text().splitlines()
    assert lines[1].split("\t") == ["TCGA-AA-0001", "40", "0", "NaN", "STAGE IIIA", "BRCA_Basal", "negative", "", ""]
    pd.testing.assert_frame_equal(read_clinical_table(tmp_path / "clinical.tsv"), table)
    (tmp_path / "bad.tsv").write_text("patient_id\tos_months\nP1\t3\n")
    with pytest.raises(ValueError, match="bad.tsv: missing columns"):
        read_clinical_table(tmp_path / "bad.tsv")


REAL_CDR_NAMES = (
    "TCGA-CDR-SupplementalTableS1.xlsx",
    "TCGA-CDR-SupplementalTableS1.tsv",
    "TCGA-CDR-SupplementalTableS1.txt",
    "TCGA-CDR-SupplementalTableS1.csv",
)


def cdr_with_redaction() -> pd.DataFrame:
    """The CDR fixture plus its Redaction column: one redacted patient with usable survival, one without."""
    frame = cdr_frame()
    extra = pd.DataFrame(
        {
            "bcr_patient_barcode": ["TCGA-BB-0005"],
            "type": ["BRCA"],
            "age_at_initial_pathologic_diagnosis": ["52"],
            "ajcc_pathologic_tumor_stage": ["Stage II"],
            "vital_status": ["Dead"],
            "OS": ["1"],
            "OS.time": ["100"],
        }
    )
    frame = pd.concat([frame, extra], ignore_index=True)
    frame["Redaction"] = ["", "", "Redacted", "", " redacted "]
    return frame


@pytest.mark.parametrize("kind", ["tsv", "xlsx"])
def test_cdr_redacted_patients_are_excluded_and_counted(tmp_path, caplog, kind):
    path = tmp_path / f"TCGA-CDR.{kind}"
    frame = cdr_with_redaction()
    if kind == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    else:  # empty Redaction cells come back from xlsx as NaN: must read as not redacted
        frame.to_excel(path, sheet_name="TCGA-CDR", index=True)
    log = logging.getLogger("test_clinical_redacted")
    with caplog.at_level(logging.INFO, logger="test_clinical_redacted"):
        table = read_clinical(path, "cdr", log)
    assert table["patient_id"].tolist() == ["TCGA-BB-0001", "TCGA-BB-0002"]
    assert "2 patients marked Redacted, excluded" in caplog.text
    assert "TCGA-BB-0003" in caplog.text and "TCGA-BB-0005" in caplog.text
    assert "3 patients, 1 excluded for missing survival status or time" in caplog.text


def test_cdr_redacted_patients_kept_when_asked(tmp_path, caplog):
    path = tmp_path / "TCGA-CDR.tsv"
    cdr_with_redaction().to_csv(path, sep="\t", index=False)
    log = logging.getLogger("test_clinical_redacted_kept")
    with caplog.at_level(logging.INFO, logger="test_clinical_redacted_kept"):
        table = make_clinical_file(path, "cdr", tmp_path / "clinical.tsv", log, exclude_redacted=False)
    assert table["patient_id"].tolist() == ["TCGA-BB-0001", "TCGA-BB-0002", "TCGA-BB-0005"]
    assert "2 patients marked Redacted, kept" in caplog.text


def test_cdr_without_redaction_column_reads_all(tmp_path):
    path = tmp_path / "TCGA-CDR.tsv"
    cdr_frame().to_csv(path, sep="\t", index=False)
    assert read_clinical(path, "cdr")["patient_id"].tolist() == ["TCGA-BB-0001", "TCGA-BB-0002"]


def test_real_cdr_table_excludes_its_redacted_patients(shared_data, caplog):
    found = [shared_data / "tcga" / name for name in REAL_CDR_NAMES if (shared_data / "tcga" / name).is_file()]
    if not found:
        pytest.skip(f"no TCGA-CDR table ({', '.join(REAL_CDR_NAMES)}) in {shared_data / 'tcga'}")
    log = logging.getLogger("test_clinical_real_cdr")
    with caplog.at_level(logging.INFO, logger="test_clinical_real_cdr"):
        table = read_clinical(found[0], "cdr", log)
    assert "57 patients marked Redacted, excluded" in caplog.text
    kept_all = read_clinical(found[0], "cdr", exclude_redacted=False)
    assert len(table) < len(kept_all) and set(table["patient_id"]) < set(kept_all["patient_id"])


@pytest.mark.parametrize(
    "name, content, kind",
    [
        ("clinical.xlsx", None, "xlsx workbook or zip archive"),
        ("clinical.txt", b"PK\x03\x04\x14\x00\x06\x00rest of a zip", "xlsx workbook or zip archive"),
        ("clinical.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 ole2", "binary Excel workbook"),
        ("clinical.txt", b"PATIENT_ID\tOS_STATUS\tOS_MONTHS\nP\xe91\tLIVING\t3\n", "not UTF-8 text"),
        ("clinical.txt", b"PATIENT_ID\x00\x01\x02", "a binary file"),
    ],
)
def test_cbioportal_reader_names_a_binary_file(tmp_path, name, content, kind):
    path = tmp_path / name
    if content is None:
        pd.DataFrame({"PATIENT_ID": ["P1"], "OS_STATUS": ["LIVING"], "OS_MONTHS": ["3"]}).to_excel(path, index=False)
    else:
        path.write_bytes(content)  # a file broken on purpose
    with pytest.raises(ValueError) as error:
        read_clinical(path, "cbioportal")
    message = str(error.value)
    assert str(path) in message and kind in message
    assert "format 'cdr'" in message and "TSV" in message
