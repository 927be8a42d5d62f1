"""TCGA barcode parsing: hand-checked examples, errors that name the string, and the paper's real manifests."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import FrozenInstanceError

import pytest

from workflow_scripts.inputs.barcodes import (
    is_tcga_name,
    normalise_sample_types,
    parse_barcode,
    parse_slide_filename,
    patient_id,
    same_slide_uuid,
    sample_type_exclusion,
)


def test_aliquot_barcode_fields():
    barcode = parse_barcode("TCGA-A1-A0SB-01A-11R-A144-07")
    assert barcode.project == "TCGA"
    assert barcode.tss == "A1"
    assert barcode.participant == "A0SB"
    assert barcode.patient_id == "TCGA-A1-A0SB"
    assert barcode.sample_id == "TCGA-A1-A0SB-01"
    assert barcode.sample_type == 1
    assert barcode.is_tumour
    assert barcode.vial == "A"
    assert barcode.portion == 11
    assert barcode.analyte == "R"
    assert barcode.plate == "A144"
    assert barcode.center == "07"
    assert barcode.slide_type is None and barcode.slide_number is None


def test_normal_sample_and_patient_only():
    normal = parse_barcode("TCGA-BH-A0W4-11A")
    assert normal.sample_type == 11 and not normal.is_tumour
    assert normal.sample_id == "TCGA-BH-A0W4-11"
    assert normal.portion is None
    patient = parse_barcode("TCGA-BH-A0W4")
    assert patient.patient_id == "TCGA-BH-A0W4"
    assert patient.sample_id is None and patient.sample_type is None and patient.vial is None


def test_slide_barcodes_digit_and_letter_order():
    diagnostic = parse_barcode("TCGA-AR-A5QM-01Z-00-DX1")
    assert (diagnostic.slide_type, diagnostic.slide_number, diagnostic.portion) == ("DX", 1, 0)
    assert diagnostic.vial == "Z"
    tissue = parse_barcode("TCGA-A1-A0SB-01A-01-TSA")
    assert (tissue.slide_type, tissue.slide_order, tissue.slide_number) == ("TS", "A", None)
    bottom = parse_barcode("TCGA-A1-A0SB-01A-02-BS12")
    assert (bottom.slide_type, bottom.slide_number, bottom.portion) == ("BS", 12, 2)


def test_barcode_is_frozen():
    barcode = parse_barcode("TCGA-A1-A0SB")
    with pytest.raises(FrozenInstanceError):
        barcode.tss = "XX"  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "TCGA",
        "TCGA-A1-A0S",
        "XXXX-A1-A0SB",
        "TCGA-A1-A0SB-1A",
        "TCGA-A1-A0SB-01A-11R-A14",
        "TCGA-A1-A0SB-01Z-00-XX1",
    ],
)
def test_bad_barcode_error_names_the_string(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(").replace("[", r"\[")):
        parse_barcode(bad)


def test_slide_filename_uuid_lowercased_and_slide_id():
    name = "TCGA-AR-A5QM-01Z-00-DX1.A9017CED-FF57-4090-95B9-94DC91854347.svs"
    parsed = parse_slide_filename(name)
    assert parsed.slide_id == "TCGA-AR-A5QM-01Z-00-DX1.A9017CED-FF57-4090-95B9-94DC91854347"
    assert parsed.uuid == "a9017ced-ff57-4090-95b9-94dc91854347"
    assert parsed.barcode.patient_id == "TCGA-AR-A5QM"
    assert parsed.barcode.slide_type == "DX"
    assert same_slide_uuid(parsed.uuid, "A9017CED-FF57-4090-95B9-94DC91854347")
    assert not same_slide_uuid(parsed.uuid, "A9017CED-FF57-4090-95B9-94DC91854348")


@pytest.mark.parametrize(
    "bad",
    [
        "TCGA-AR-A5QM-01Z-00-DX1.svs",
        "TCGA-AR-A5QM-01Z-00-DX1.A9017CED-FF57-4090-95B9-94DC9185434.svs",
        "TCGA-AR-A5QM-01Z-00-DX1.A9017CED-FF57-4090-95B9-94DC91854347.tif",
        "TCGA-AR-A5QM-01A-11R-A144-07.A9017CED-FF57-4090-95B9-94DC91854347.svs",
        "../TCGA-AR-A5QM-01Z-00-DX1.A9017CED-FF57-4090-95B9-94DC91854347.svs",
        "tcga-ar-a5qm-01z-00-dx1.a9017ced-ff57-4090-95b9-94dc91854347.svs",
    ],
)
def test_bad_slide_filename_error_names_it(bad):
    with pytest.raises(ValueError) as error:
        parse_slide_filename(bad)
    assert repr(bad) in str(error.value)


def test_patient_id_from_barcode_slide_id_and_filename():
    assert patient_id("TCGA-A1-A0SB-01A-11R-A144-07") == "TCGA-A1-A0SB"
    assert patient_id("TCGA-AR-A5QM-01Z-00-DX1.A9017CED-FF57-4090-95B9-94DC91854347") == "TCGA-AR-A5QM"
    assert patient_id("TCGA-AR-A5QM-01Z-00-DX1.tif") == "TCGA-AR-A5QM"
    assert is_tcga_name("TCGA-AR-A5QM-01Z-00-DX1.tif")
    assert not is_tcga_name("slide_0001.svs")
    with pytest.raises(ValueError, match="slide_0001"):
        patient_id("slide_0001.svs")


def _manifest_names(path):
    with open(path, newline="") as handle:
        return [row["filename"] for row in csv.DictReader(handle, delimiter="\t")]


@pytest.mark.parametrize(
    ("manifest", "n_slides", "n_patients", "n_multi_slide_patients", "non_primary"),
    [("gdc_manifest_brca_761.txt", 761, 703, 54, {6: 1}), ("gdc_manifest_luad_469.txt", 469, 410, 18, {2: 1})],
)
def test_real_manifests_parse(shared_data, manifest, n_slides, n_patients, n_multi_slide_patients, non_primary):
    names = _manifest_names(shared_data / "tcga" / manifest)
    assert len(names) == n_slides
    parsed = [parse_slide_filename(name) for name in names]
    assert all(p.barcode.slide_type == "DX" for p in parsed)
    assert all(len(p.barcode.patient_id) == 12 for p in parsed)
    assert all(len(p.barcode.sample_id) == 15 for p in parsed)
    assert all(p.barcode.is_tumour for p in parsed)
    assert len({p.slide_id for p in parsed}) == n_slides
    assert len({p.uuid for p in parsed}) == n_slides
    patients = Counter(p.barcode.patient_id for p in parsed)
    assert len(patients) == n_patients
    assert sum(1 for count in patients.values() if count > 1) == n_multi_slide_patients
    sample_types = Counter(p.barcode.sample_type for p in parsed)
    assert {k: v for k, v in sample_types.items() if k != 1} == non_primary
    # one sample's DX slides are numbered DX1, DX2, ... without repeats
    per_sample = Counter((p.barcode.sample_id, p.barcode.vial, p.barcode.slide_number) for p in parsed)
    assert max(per_sample.values()) == 1


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("TCGA-E2-A15E-06Z-00-DX1.D394A007-91A2-4445-9B4A-1629EE684A51.svs",
         "sample type 06 (Metastatic) is not a primary tumour"),
        ("TCGA-50-5066-02Z-00-DX1.A2CA045A-7956-4E04-9EC9-5856FC789110",
         "sample type 02 (Recurrent Solid Tumor) is not a primary tumour"),
        ("TCGA-A1-A0SB-11A-01-TS1.svs", "sample type 11 (Solid Tissue Normal) is not a primary tumour"),
        ("TCGA-A1-A0SB-33A-01-TS1.svs", "sample type 33 (unknown code) is not a primary tumour"),
        ("TCGA-AR-A5QM-01Z-00-DX1.A9017CED-FF57-4090-95B9-94DC91854347.svs", None),
        ("TCGA-AR-A5QM-01Z-00-DX1", None),
        ("TCGA-AR-A5QM.svs", None),  # patient level: no sample type to judge
        ("slide_0001.svs", None),  # a local cohort's own id
        ("P001", None),
    ],
)
def test_sample_type_exclusion_default_primary_only(name, reason):
    assert sample_type_exclusion(name) == reason


def test_sample_type_exclusion_with_configured_types():
    metastatic = "TCGA-E2-A15E-06Z-00-DX1.svs"
    assert sample_type_exclusion(metastatic, ["01", "06"]) is None
    assert sample_type_exclusion(metastatic, [6]) is None  # YAML reads an unquoted 06 as the integer 6
    assert sample_type_exclusion("TCGA-AR-A5QM-01Z-00-DX1.svs", ("06",)) == (
        "sample type 01 (Primary Solid Tumor) is not one of the allowed sample types 06"
    )
    assert normalise_sample_types(["1", 6, "06"]) == ("01", "06")
    assert normalise_sample_types("01") == ("01",)
    for bad in (["1A"], ["001"], [True], []):
        with pytest.raises(ValueError, match="sample type"):
            normalise_sample_types(bad)
