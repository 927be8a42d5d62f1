"""Covariate tables merged into clinical.tsv: cBioPortal sample and patient files, a user's CSV keyed on sample
barcodes, the primary-tumour (01) sample rule, override-when-present precedence, and errors naming file and column."""

from __future__ import annotations

import csv
import logging

import pytest

from workflow_scripts.inputs.clinical import CLINICAL_COLUMNS, read_clinical_table
from workflow_scripts.inputs.covariates import (
    CovariateSource,
    apply_covariates,
    covariate_values,
    make_clinical_file,
)

REAL_FILE = "tcga/brca_tcga_pan_can_atlas_2018.data_clinical_patient.txt"
# base table: TCGA-CDR layout (days), four patients; 0001 and 0003 already have a subtype / ER status
CDR = (
    "bcr_patient_barcode\tOS\tOS.time\tajcc_pathologic_tumor_stage\tsubtype\tER_STATUS_BY_IHC\n"
    "TCGA-AA-0001\t1\t365.25\tStage IIA\tBRCA_LumB\tNegative\n"
    "TCGA-AA-0002\t0\t730.5\t[Not Available]\t\t\n"
    "TCGA-AA-0003\t0\t60.875\tStage I\tBRCA_Basal\tPositive\n"
    "TCGA-AA-0004\t1\t30.4375\tStage IV\t\t\n"
)
# cBioPortal sample file: 0001 has a primary (01), a metastatic (06) and a normal (11) sample with different ER;
# 0004 only a metastatic one; 0009 is not in the base table
SAMPLE = (
    "#Patient Identifier\tSample Identifier\tER Status By IHC\tPR status by ihc\n"
    "#Patient\tSample\tER\tPR\n"
    "#STRING\tSTRING\tSTRING\tSTRING\n"
    "#1\t1\t1\t1\n"
    "PATIENT_ID\tSAMPLE_ID\tER_STATUS_BY_IHC\tPR_STATUS_BY_IHC\n"
    "TCGA-AA-0001\tTCGA-AA-0001-06\tNegative\tNegative\n"
    "TCGA-AA-0001\tTCGA-AA-0001-01\tPositive\tPositive\n"
    "TCGA-AA-0001\tTCGA-AA-0001-11\tIndeterminate\t[Not Evaluated]\n"
    "TCGA-AA-0002\tTCGA-AA-0002-01\t[Not Available]\tNegative\n"
    "TCGA-AA-0004\tTCGA-AA-0004-06\tPositive\tPositive\n"
    "TCGA-AA-0009\tTCGA-AA-0009-01\tPositive\tPositive\n"
)
PATIENT = (
    "#Patient Identifier\tSubtype\n#Patient\tSubtype\n#STRING\tSTRING\n#1\t1\n"
    "PATIENT_ID\tSUBTYPE\n"
    "TCGA-AA-0001\tBRCA_LumA\n"
    "TCGA-AA-0002\tBRCA_Her2\n"
    "TCGA-AA-0003\t\n"
)
# a user's CSV keyed on aliquot barcodes: 0003 has two primary aliquots (vial A is kept) and a normal one
OWN_CSV = (
    "barcode,her2,pathologic_stage\n"
    "TCGA-AA-0003-01B-11R-A000-07,Negative,stage iii\n"
    "TCGA-AA-0003-01A-11R-A000-07,Positive,stage  ii\n"
    "TCGA-AA-0003-11A-11R-A000-07,Negative,stage iv\n"
    "TCGA-AA-0004-01A-11R-A000-07,Equivocal,\n"
)


@pytest.fixture
def files(tmp_path):
    paths = {name: tmp_path / name for name in ("cdr.tsv", "sample.txt", "patient.txt", "own.csv")}
    for (name, path), text in zip(paths.items(), (CDR, SAMPLE, PATIENT, OWN_CSV)):
        path.write_text(text)
    return paths


def sources(files) -> list[CovariateSource]:
    return [
        CovariateSource.from_config(files["sample.txt"], {
            "format": "cbioportal_sample",
            "columns": {"er_status": "ER_STATUS_BY_IHC", "pr_status": "PR_STATUS_BY_IHC"},
        }),
        CovariateSource.from_config(files["patient.txt"], {
            "format": "cbioportal_patient", "columns": {"subtype": "SUBTYPE"},
        }),
        CovariateSource.from_config(files["own.csv"], {
            "format": "csv", "key": "barcode", "columns": {"her2_status": "her2", "stage": "pathologic_stage"},
        }),
    ]


def test_sample_file_uses_the_primary_tumour_sample(files):
    values = covariate_values(sources(files)[0])
    assert values.to_dict("records") == [
        {"patient_id": "TCGA-AA-0001", "er_status": "positive", "pr_status": "positive"},  # 01, not 06 or 11
        {"patient_id": "TCGA-AA-0002", "er_status": "", "pr_status": "negative"},
        {"patient_id": "TCGA-AA-0009", "er_status": "positive", "pr_status": "positive"},
    ]  # 0004 has only a metastatic sample: no value


def test_csv_keyed_on_aliquot_barcodes_keeps_vial_a(files):
    values = covariate_values(sources(files)[2])
    assert values.to_dict("records") == [
        {"patient_id": "TCGA-AA-0003", "her2_status": "positive", "stage": "STAGE II"},
        {"patient_id": "TCGA-AA-0004", "her2_status": "", "stage": ""},  # Equivocal is not a status
    ]


def test_merge_overrides_when_present_and_logs_counts(files, tmp_path, caplog):
    log = logging.getLogger("test_covariates")
    with caplog.at_level(logging.INFO, logger=log.name):
        table = make_clinical_file(files["cdr.tsv"], "cdr", tmp_path / "clinical.tsv", sources(files), log)
    assert list(table.columns) == CLINICAL_COLUMNS
    by_patient = table.set_index("patient_id")
    # hand-merged: base, then sample (ER, PR), then patient (subtype), then the CSV (HER2, stage)
    assert by_patient["er_status"].to_dict() == {
        "TCGA-AA-0001": "positive", "TCGA-AA-0002": "", "TCGA-AA-0003": "positive", "TCGA-AA-0004": ""}
    assert by_patient["pr_status"].to_dict() == {
        "TCGA-AA-0001": "positive", "TCGA-AA-0002": "negative", "TCGA-AA-0003": "", "TCGA-AA-0004": ""}
    assert by_patient["subtype"].to_dict() == {
        "TCGA-AA-0001": "BRCA_LumA", "TCGA-AA-0002": "BRCA_Her2", "TCGA-AA-0003": "BRCA_Basal", "TCGA-AA-0004": ""}
    assert by_patient["her2_status"].to_dict() == {
        "TCGA-AA-0001": "", "TCGA-AA-0002": "", "TCGA-AA-0003": "positive", "TCGA-AA-0004": ""}
    assert by_patient["stage"].to_dict() == {
        "TCGA-AA-0001": "STAGE IIA", "TCGA-AA-0002": "", "TCGA-AA-0003": "STAGE II", "TCGA-AA-0004": "STAGE IV"}
    assert by_patient["os_months"].tolist() == [12.0, 24.0, 2.0, 1.0]
    replaced = "(1 replaced a different value)"
    assert f"{files['sample.txt']}: supplied er_status for 1 of 4 patients {replaced}" in caplog.text
    assert f"{files['sample.txt']}: 1 patients of the table are not in the base table" in caplog.text
    assert f"{files['patient.txt']}: supplied subtype for 2 of 4 patients (1 replaced a different value)" in caplog.text
    assert f"{files['own.csv']}: supplied stage for 1 of 4 patients (1 replaced a different value)" in caplog.text
    assert "covariates known: er_status 2, pr_status 2, her2_status 1, subtype 3, stage 3" in caplog.text
    assert read_clinical_table(tmp_path / "clinical.tsv").equals(table)


def test_later_table_wins(files, tmp_path):
    (tmp_path / "second.tsv").write_text("patient_id\tpam50\nTCGA-AA-0001\tBRCA_Normal\nTCGA-AA-0002\t\n")
    second = CovariateSource.from_config(tmp_path / "second.tsv", {"format": "tsv", "columns": {"subtype": "pam50"}})
    base = make_clinical_file(files["cdr.tsv"], "cdr", tmp_path / "base.tsv")
    merged = apply_covariates(base, [sources(files)[1], second]).set_index("patient_id")
    assert merged.loc["TCGA-AA-0001", "subtype"] == "BRCA_Normal"  # the later table's value
    assert merged.loc["TCGA-AA-0002", "subtype"] == "BRCA_Her2"  # the later table is empty there: kept


def test_missing_key_or_mapped_column_names_file_and_column(files):
    no_key = CovariateSource.from_config(files["own.csv"], {"format": "csv", "columns": {"stage": "pathologic_stage"}})
    with pytest.raises(ValueError, match="no key column 'patient_id'") as error:
        covariate_values(no_key)
    assert str(files["own.csv"]) in str(error.value)
    bad_column = CovariateSource.from_config(files["patient.txt"], {"format": "cbioportal_patient",
                                                                    "columns": {"subtype": "PAM50"}})
    with pytest.raises(ValueError, match="covariate subtype maps to column 'PAM50'") as error:
        covariate_values(bad_column)
    assert str(files["patient.txt"]) in str(error.value)
    with pytest.raises(ValueError, match=r"covariate columns \['grade'\]"):
        CovariateSource.from_config(files["own.csv"], {"format": "csv", "columns": {"grade": "g"}})
    (files["own.csv"]).write_text("patient_id,stage\nP1,I\nP1,II\n")
    with pytest.raises(ValueError, match=r"own.csv: key\(s\) listed twice: \['P1'\]"):
        covariate_values(CovariateSource.from_config(files["own.csv"], {"format": "csv",
                                                                         "columns": {"stage": "stage"}}))


def test_real_cbioportal_patient_file_as_covariate_table(shared_data, files):
    path = shared_data / REAL_FILE
    values = covariate_values(CovariateSource.from_config(path, {"format": "cbioportal_patient",
                                                                 "columns": {"subtype": "SUBTYPE"}}))
    with open(path, newline="") as handle:  # independent check with the csv module
        rows = list(csv.DictReader((line for line in handle if not line.startswith("#")), delimiter="\t"))
    expected = {row["PATIENT_ID"]: row["SUBTYPE"] for row in rows}
    assert len(values) == len(expected) == 1084
    assert dict(zip(values["patient_id"], values["subtype"])) == expected
    assert {value for value in expected.values() if value}.issubset(
        {"BRCA_LumA", "BRCA_LumB", "BRCA_Basal", "BRCA_Her2", "BRCA_Normal"})
