"""Reading trait rows from the PanCanAtlas mRNA TSV and miRNA CSV, and choosing one aliquot per patient."""

from __future__ import annotations

import gzip
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.inputs.expression import (
    TraitNotFoundError,
    detect_layout,
    primary_aliquots,
    read_expression,
    read_trait_expression,
)


def write_mrna(path: Path, columns: list[str], rows: dict[str, list[str]]) -> Path:
    """Write a matrix in the mRNA TSV layout (gene_id, then one column per aliquot)."""
    lines = ["\t".join(["gene_id", *columns])]
    lines += ["\t".join([gene, *values]) for gene, values in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_mirna(path: Path, columns: list[str], rows: dict[str, list[str]]) -> Path:
    """Write a matrix in the miRNA CSV layout (Genes, Correction, then one column per aliquot)."""
    lines = [",".join(["Genes", "Correction", *columns])]
    lines += [",".join([name, "Corrected", *values]) for name, values in rows.items()]
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


ALIQUOTS = [
    "TCGA-A1-A0SB-01A-11R-A144-07",
    "TCGA-A1-A0SB-11A-12R-A144-07",  # solid tissue normal: dropped
    "TCGA-A2-A04P-01B-11R-A034-07",  # vial B, chosen over nothing else
    "TCGA-A2-A0CM-01B-01R-A034-07",  # vial B portion 01
    "TCGA-A2-A0CM-01A-31R-A034-07",  # vial A portion 31: wins (vial A first)
    "TCGA-A2-A0CM-01A-21R-A034-07",  # vial A portion 21: wins over portion 31
    "TCGA-BH-A0B3-01A-11R-A056-07",
    "TCGA-BH-A0B3-01A-11R-A034-07",  # same vial and portion: lexicographically first barcode wins
    "TCGA-BH-A0B3-06A-11R-A034-07",  # metastasis: dropped
]


def test_aliquot_choice_rule_vial_then_portion_then_barcode():
    kept, choices = primary_aliquots(ALIQUOTS)
    assert kept == {
        "TCGA-A1-A0SB-01A-11R-A144-07": "TCGA-A1-A0SB",
        "TCGA-A2-A04P-01B-11R-A034-07": "TCGA-A2-A04P",
        "TCGA-A2-A0CM-01A-21R-A034-07": "TCGA-A2-A0CM",
        "TCGA-BH-A0B3-01A-11R-A034-07": "TCGA-BH-A0B3",
    }
    by_patient = {choice.patient_id: choice for choice in choices}
    assert sorted(by_patient) == ["TCGA-A2-A0CM", "TCGA-BH-A0B3"]
    assert by_patient["TCGA-A2-A0CM"].candidates == (
        "TCGA-A2-A0CM-01A-21R-A034-07",
        "TCGA-A2-A0CM-01A-31R-A034-07",
        "TCGA-A2-A0CM-01B-01R-A034-07",
    )


def test_plain_patient_ids_are_kept_as_they_are():
    kept, choices = primary_aliquots(["patient-1", "P2", "TCGA-A1-A0SB"])
    assert kept == {"patient-1": "patient-1", "P2": "P2", "TCGA-A1-A0SB": "TCGA-A1-A0SB"}
    assert choices == []


def test_duplicate_plain_patient_column_is_an_error():
    with pytest.raises(ValueError, match="patient 'P1' has two columns"):
        primary_aliquots(["P1", "P1"], "matrix.tsv")


def test_malformed_tcga_column_names_the_file_and_column():
    with pytest.raises(ValueError, match=r"m\.tsv: column 'TCGA-XX'"):
        primary_aliquots(["TCGA-XX"], "m.tsv")


def test_mrna_reads_requested_rows_for_primary_aliquots(tmp_path, caplog):
    values = {
        "MKI67|4288": ["1.5", "99", "2.5", "7", "3.5", "4.5", "5.5", "6.5", "100"],
        "ESR1|2099": ["10", "11", "12", "13", "14", "15", "NA", "", "18"],
        "TP53|7157": ["0"] * 9,
    }
    path = write_mrna(tmp_path / "mrna.tsv", ALIQUOTS, values)
    log = logging.getLogger("test_expression")
    with caplog.at_level(logging.INFO, logger="test_expression"):
        table = read_expression(path, ["ESR1|2099", "MKI67|4288"], "mrna", log)
    assert list(table.columns) == ["ESR1|2099", "MKI67|4288"]
    assert list(table.index) == ["TCGA-A1-A0SB", "TCGA-A2-A04P", "TCGA-A2-A0CM", "TCGA-BH-A0B3"]
    assert table["MKI67|4288"].tolist() == [1.5, 2.5, 4.5, 6.5]
    esr1 = table["ESR1|2099"].tolist()
    assert esr1[:3] == [10.0, 12.0, 15.0] and math.isnan(esr1[3])  # chosen A034 aliquot of A0B3 is empty
    assert "patient TCGA-A2-A0CM: kept aliquot TCGA-A2-A0CM-01A-21R-A034-07 of 3" in caplog.text
    assert "patient TCGA-BH-A0B3: kept aliquot TCGA-BH-A0B3-01A-11R-A034-07 of 2" in caplog.text


def test_missing_values_drop_the_patient_for_that_trait(tmp_path):
    path = write_mrna(tmp_path / "mrna.tsv", ["P1", "P2", "P3", "P4"], {"G|1": ["1", "NA", "", "NaN"]})
    series = read_trait_expression(path, "G|1")
    assert series.to_dict() == {"P1": 1.0}


def test_mirna_csv_with_crlf_and_gzip(tmp_path):
    columns = ["TCGA-A1-A0SB-01A-11R-A144-13", "TCGA-A1-A0SE-01A-11R-A084-13", "TCGA-A1-A0SE-10A-01D-A084-13"]
    rows = {"hsa-let-7a-5p": ["1", "2", "3"], "hsa-miR-17-5p": ["0.25", "NA", "9"]}
    plain = write_mirna(tmp_path / "mirna.csv", columns, rows)
    packed = tmp_path / "mirna.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        table = read_expression(path, ["hsa-miR-17-5p"], "mirna")
        assert list(table.index) == ["TCGA-A1-A0SB", "TCGA-A1-A0SE"]
        assert table["hsa-miR-17-5p"].iloc[0] == 0.25 and np.isnan(table["hsa-miR-17-5p"].iloc[1])


def test_missing_trait_error_names_trait_file_and_similar_rows(tmp_path):
    path = write_mrna(tmp_path / "mrna.tsv", ["P1", "P2"], {"MKI67|4288": ["1", "2"], "ESR1|2099": ["3", "4"]})
    with pytest.raises(TraitNotFoundError) as caught:
        read_expression(path, ["MKI67|9999", "ESR1|2099"])
    message = str(caught.value)
    assert "'MKI67|9999'" in message and str(path) in message and "'MKI67|4288'" in message
    assert "ESR1" not in message


def test_wrong_source_for_the_file_is_an_error(tmp_path):
    path = write_mrna(tmp_path / "mrna.tsv", ["P1"], {"G|1": ["1"]})
    with pytest.raises(ValueError, match="expected a mirna matrix .* found a mrna matrix"):
        read_expression(path, ["G|1"], "mirna")


def test_unknown_header_and_bad_cells_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="not a PanCanAtlas expression matrix"):
        detect_layout("id\tA\tB\n", tmp_path / "x.tsv")
    path = write_mrna(tmp_path / "mrna.tsv", ["P1", "P2"], {"G|1": ["1", "high"]})
    with pytest.raises(ValueError, match=r"trait 'G\|1', column 'P2': 'high' is not a number"):
        read_expression(path, ["G|1"])
    short = write_mrna(tmp_path / "short.tsv", ["P1", "P2"], {"G|1": ["1"]})
    with pytest.raises(ValueError, match="line 2 .* has 2 cells, the header has 3"):
        read_expression(short, ["G|1"])


def test_streaming_stops_after_the_last_wanted_row(tmp_path):
    """Rows after the wanted ones are never parsed: a malformed trailing row does not matter."""
    path = tmp_path / "mrna.tsv"
    path.write_text("gene_id\tP1\tP2\nA|1\t1\t2\nB|2\t3\t4\nbroken row without tabs\n")
    table = read_expression(path, ["A|1"])
    assert table["A|1"].tolist() == [1.0, 2.0]


def test_matrix_round_trip_against_pandas(tmp_path):
    """A generated matrix read row by row equals pandas reading the whole file."""
    rng = np.random.default_rng(0)
    patients = [f"TCGA-AA-{index:04d}-01A-11R-A000-07" for index in range(40)]
    genes = [f"G{index}|{index}" for index in range(30)]
    matrix = rng.normal(size=(30, 40)).round(6)
    rows = {gene: [repr(float(value)) for value in matrix[i]] for i, gene in enumerate(genes)}
    path = write_mrna(tmp_path / "mrna.tsv", patients, rows)
    wanted = ["G7|7", "G29|29", "G0|0"]
    table = read_expression(path, wanted)
    expected = pd.read_csv(path, sep="\t", index_col=0).loc[wanted].T  # independent check
    expected.index = [name[:12] for name in expected.index]
    np.testing.assert_array_equal(table.to_numpy(), expected.to_numpy())
    assert list(table.index) == list(expected.index)


@pytest.mark.parametrize("writer, name", [(write_mrna, "matrix.tsv"), (write_mirna, "mirs.csv")])
def test_repeated_aliquot_columns_are_an_error_naming_them_and_the_file(tmp_path, writer, name):
    repeated = "TCGA-A1-A0SB-01A-11R-A144-07"
    columns = [repeated, "TCGA-A2-A04P-01B-11R-A034-07", repeated, "P7", "P7", "P7"]
    path = writer(tmp_path / name, columns, {"MKI67|4288": ["1", "2", "3", "4", "5", "6"]})
    with pytest.raises(ValueError) as error:
        read_expression(path, ["MKI67|4288"])
    message = str(error.value)
    assert message.startswith(f"{path}: the header repeats 2 column name(s)")
    assert f"'{repeated}' x2" in message and "'P7' x3" in message
    assert "TCGA-A2-A04P" not in message


def test_unique_header_passes_the_repeat_check():
    layout = detect_layout("gene_id\tTCGA-A1-A0SB-01A-11R-A144-07\tTCGA-A1-A0SB-01A-11R-A144-08\n", "m.tsv")
    assert layout.sample_columns == ("TCGA-A1-A0SB-01A-11R-A144-07", "TCGA-A1-A0SB-01A-11R-A144-08")
