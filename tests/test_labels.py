"""Percentile labels per trait, checked exactly against numpy.percentile, and the slide sets built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qc_rows import qc_frame
from workflow_scripts.common.tables import read_table
from workflow_scripts.inputs.slidetable import SlideRecord, write_slide_table
from workflow_scripts.learning.labels import (
    LABEL_COLUMNS,
    LabelSettings,
    cohort_expression,
    label_trait,
    make_labels_summary_files,
    make_trait_labels_file,
    percentile_ranks,
    read_labels,
    summarise_labels,
    trait_slide_sets,
)
from workflow_scripts.learning.splits import SplitSettings, draw_splits, read_splits
from workflow_scripts.slides.qc_table import write_qc_table

DEFAULT = LabelSettings()


def labelled(values, settings: LabelSettings = DEFAULT) -> pd.DataFrame:
    """Label an array of values for patients P000, P001, ..."""
    series = pd.Series(values, index=[f"P{index:03d}" for index in range(len(values))], dtype=float)
    return label_trait(series, "T", settings)


def test_hand_computed_eleven_values():
    """Values 0..10: q20 = 2, q30 = 3, q50 = 5, q70 = 7, q80 = 8; percentile rank of value v is 10 v."""
    table = labelled(np.arange(11))
    assert table["percentile"].tolist() == [10.0 * v for v in range(11)]
    assert table["label"].tolist() == [0, 0, 0, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, 1, 1, 1]
    assert (
        table["set"].tolist() == ["train_pool"] * 3 + ["ood_near"] + ["ood_far"] * 3 + ["ood_near"] + ["train_pool"] * 3
    )
    assert table["median_label"].tolist() == [0] * 6 + [1] * 5


def test_hand_computed_five_values_with_interpolated_thresholds():
    """[10,20,30,40,50]: q20 = 18, q30 = 22, q70 = 38, q80 = 42 (linear interpolation between ranks)."""
    table = labelled([30, 10, 50, 20, 40])
    by_value = table.set_index("value")
    assert by_value.loc[10.0, "label"] == 0 and by_value.loc[50.0, "label"] == 1
    assert by_value["set"].to_dict() == {
        30.0: "ood_far",
        10.0: "train_pool",
        50.0: "train_pool",
        20.0: "ood_near",
        40.0: "ood_near",
    }
    assert by_value["percentile"].to_dict() == {30.0: 50.0, 10.0: 0.0, 50.0: 100.0, 20.0: 25.0, 40.0: 75.0}


def expected_from_numpy(values: np.ndarray, settings: LabelSettings) -> tuple[list, list, list]:
    """Labels, sets and median labels straight from numpy.percentile thresholds."""

    def q(percent: float) -> float:
        return float(np.percentile(values, percent))

    low, high = q(settings.low_percentile), q(settings.high_percentile)
    near_low = q(settings.low_percentile + settings.near_width)
    near_high = q(settings.high_percentile - settings.near_width)
    labels, sets = [], []
    for value in values:
        if value >= high:
            labels.append(1), sets.append("train_pool")
        elif value <= low:
            labels.append(0), sets.append("train_pool")
        elif value <= near_low or value >= near_high:
            labels.append(pd.NA), sets.append("ood_near")
        else:
            labels.append(pd.NA), sets.append("ood_far")
    return labels, sets, [int(value > np.median(values)) for value in values]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "settings", [LabelSettings(), LabelSettings(25, 75, 5), LabelSettings(10, 90, 15), LabelSettings(33.3, 66.7, 0)]
)
def test_thresholds_match_numpy_percentile_on_generated_data_with_ties(seed, settings):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    kind = seed % 3
    if kind == 0:
        values = rng.lognormal(size=n)  # continuous, untied
    elif kind == 1:
        values = rng.integers(0, 12, size=n).astype(float)  # heavy ties
    else:
        values = np.where(rng.random(n) < 0.15, 0.0, rng.normal(5, 2, size=n).round(1))  # zeros + ties
    try:
        table = labelled(values, settings)
    except ValueError as error:  # a tie spanning both cut-offs is refused, never mislabelled
        assert "cannot be split" in str(error)
        assert np.any(
            (values >= np.percentile(values, settings.high_percentile))
            & (values <= np.percentile(values, settings.low_percentile))
        )
        return
    labels, sets, medians = expected_from_numpy(values, settings)
    assert table["label"].tolist() == labels
    assert table["set"].tolist() == sets
    assert table["median_label"].tolist() == medians
    for value in np.unique(values):  # tied patients share everything
        group = table[table["value"] == value]
        assert group["set"].nunique() == 1 and group["percentile"].nunique() == 1


def test_untied_percentile_agrees_with_labels():
    """Without ties, percentile >= high <=> label 1 and percentile <= low <=> label 0 (same numpy definition)."""
    values = np.random.default_rng(3).normal(size=157)
    table = labelled(values)
    assert ((table["percentile"] >= 80) == (table["label"] == 1).fillna(False)).all()
    assert ((table["percentile"] <= 20) == (table["label"] == 0).fillna(False)).all()
    for p in (0, 20, 37.5, 80, 100):  # numpy.percentile at an untied value's rank returns that value
        index = np.argmin(np.abs(table["percentile"] - p))
        if np.isclose(table["percentile"].iloc[index], p):
            assert np.percentile(values, p) == pytest.approx(table["value"].iloc[index])


def test_percentile_ranks_with_ties_use_average_rank():
    assert percentile_ranks(np.array([5.0, 1.0, 5.0, 3.0, 9.0])).tolist() == [62.5, 0.0, 62.5, 25.0, 100.0]
    with pytest.raises(ValueError, match="at least 2"):
        percentile_ranks(np.array([1.0]))


def test_tie_across_both_cutoffs_is_refused_and_nan_is_dropped():
    with pytest.raises(ValueError, match="trait 'T': value 1.0 is tied"):
        labelled([1, 1, 1, 1, 1, 1, 1, 1, 2, 0])
    table = labelled([1.0, np.nan, 3.0])
    assert table["patient_id"].tolist() == ["P000", "P002"]
    with pytest.raises(ValueError, match="1 patient"):
        labelled([1.0, np.nan])


def test_settings_validation():
    assert LabelSettings.from_config({"low_percentile": 20, "high_percentile": 80, "near_width": 10}) == DEFAULT
    with pytest.raises(ValueError, match="low_percentile < high_percentile"):
        LabelSettings(80, 20)
    with pytest.raises(ValueError, match="near_width"):
        LabelSettings(20, 80, -1)
    with pytest.raises(ValueError, match="unknown setting"):
        LabelSettings.from_config({"low": 20})


def test_cohort_is_slide_patients_with_expression():
    expression = pd.Series({"A": 1.0, "B": np.nan, "C": 3.0, "D": 4.0})
    slides = pd.DataFrame({"slide_id": ["s1", "s2", "s3", "s4"], "patient_id": ["A", "A", "B", "C"]})
    assert cohort_expression(expression, slides).to_dict() == {"A": 1.0, "C": 3.0}


def small_cohort() -> tuple[pd.DataFrame, pd.DataFrame]:
    """20 patients P00..P19 with value = index (P19 has no slide), P00 and P10 with two slides."""
    slides = pd.DataFrame(
        {
            "slide_id": [f"S{index:02d}" for index in range(19)] + ["S00b", "S10b"],
            "patient_id": [f"P{index:02d}" for index in range(19)] + ["P00", "P10"],
        }
    )
    expression = pd.Series({f"P{index:02d}": float(index) for index in range(20)})
    return slides, label_trait(cohort_expression(expression, slides), "T", DEFAULT)


def test_summary_counts_patients_and_slides_per_set_and_label():
    """19 values 0..18: q20 = 3.6, q30 = 5.4, q70 = 12.6, q80 = 14.4 -> 0..3 low, 15..18 high, 4,5,13,14 near."""
    slides, labels = small_cohort()
    summary = summarise_labels(labels, slides).set_index("trait").loc["T"]
    assert summary.to_dict() == {
        "patients": 19,
        "slides": 21,
        "patients_train_pool": 8,
        "slides_train_pool": 9,  # P00 has two slides
        "patients_ood_near": 4,
        "slides_ood_near": 4,
        "patients_ood_far": 7,
        "slides_ood_far": 8,  # P10 has two slides
        "patients_label_1": 4,
        "slides_label_1": 4,
        "patients_label_0": 4,
        "slides_label_0": 5,
    }


def test_trait_slide_sets_roles_labels_and_patients_in_one_set():
    slides, labels = small_cohort()
    qc = slides.assign(status=["pass"] * 20 + ["fail"], n_tiles=1)  # S10b fails QC
    splits = draw_splits(sorted(set(slides["patient_id"])), SplitSettings(0.2, 0.2, 2), seed=7)
    sets = trait_slide_sets(labels, splits, qc, "T", 1)
    assert list(sets.columns) == ["slide_id", "patient_id", "label", "median_label", "role"]
    assert "S10b" not in set(sets["slide_id"]) and len(sets) == 20
    assert sets.groupby("patient_id")["role"].nunique().max() == 1
    merged = sets.merge(labels, on="patient_id", suffixes=("", "_patient"))
    assert (merged["label"].fillna(-1) == merged["label_patient"].fillna(-1)).all()
    pool = merged["set"] == "train_pool"
    roles = merged["patient_id"].map(splits.set_index("patient_id")["split_1"])
    assert (merged.loc[pool, "role"] == roles[pool]).all()
    assert (merged.loc[~pool, "role"] == merged.loc[~pool, "set"]).all()
    assert merged.loc[merged["role"].isin(["train", "val", "test"]), "label"].notna().all()
    assert sets.loc[sets["patient_id"] == "P00", "slide_id"].tolist() == ["S00", "S00b"]
    with pytest.raises(ValueError, match="no column 'split_5'"):
        trait_slide_sets(labels, splits, qc, "T", 5)
    with pytest.raises(ValueError, match="no labels for trait 'X'"):
        trait_slide_sets(labels, splits, qc, "X", 0)


def write_matrix(path: Path, patients: list[str], rows: dict[str, np.ndarray]) -> Path:
    """An mRNA-layout matrix with the given rows."""
    lines = ["\t".join(["gene_id", *patients])]
    lines += ["\t".join([gene, *(repr(float(value)) for value in values)]) for gene, values in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_trait_files_summary_and_byte_identical_reruns(tmp_path):
    rng = np.random.default_rng(11)
    patients = [f"TCGA-AA-{index:04d}" for index in range(60)]
    aliquots = [f"{patient}-01A-11R-A000-07" for patient in patients]
    matrix = write_matrix(
        tmp_path / "mrna.tsv", aliquots, {"MKI67|4288": rng.normal(size=60), "ESR1|2099": rng.normal(size=60)}
    )
    records = [SlideRecord(f"{patient}-01Z-00-DX1.x", patient, "x.svs", "x.svs") for patient in patients[5:]]
    write_slide_table(records, tmp_path / "slides.tsv")
    config = {"low_percentile": 20, "high_percentile": 80, "near_width": 10}
    outputs = []
    for run in ("a", "b"):
        paths = []
        for name, gene in (("MKI67", "MKI67|4288"), ("ESR1", "ESR1|2099")):
            path = tmp_path / run / f"{name}.tsv"
            make_trait_labels_file(
                matrix, tmp_path / "slides.tsv", {"name": name, "source": "mrna", "id": gene}, config, path
            )
            paths.append(path)
        summary = make_labels_summary_files(
            paths, tmp_path / "slides.tsv", tmp_path / run / "labels.tsv", tmp_path / run / "summary.tsv"
        )
        outputs.append([path.read_bytes() for path in sorted((tmp_path / run).iterdir())])
    assert outputs[0] == outputs[1]
    labels = read_labels(tmp_path / "a" / "labels.tsv")
    assert list(labels.columns) == LABEL_COLUMNS
    assert labels.groupby("trait").size().to_dict() == {"ESR1": 55, "MKI67": 55}
    first = labels[labels["trait"] == "MKI67"]
    assert first["patient_id"].tolist() == patients[5:]
    assert (first["label"] == 1).sum() == 11 and (first["label"] == 0).sum() == 11  # 55 untied values: 11 each side
    assert summary["slides_train_pool"].tolist() == [22, 22]
    text = (tmp_path / "a" / "MKI67.tsv").read_text().splitlines()
    assert text[0] == "\t".join(LABEL_COLUMNS)
    ood_line = next(line for line in text[1:] if "\tood_" in line)
    assert ood_line.split("\t")[4] == "NaN"  # OOD label missing, written as every table writes missing values


SNAKEFILE = """
SCRIPTS = "{scripts}/"
TRAITS = {{"MKI67": {{"name": "MKI67", "source": "mrna", "id": "MKI67|4288"}},
          "miR-17-5p": {{"name": "miR-17-5p", "source": "mirna", "id": "hsa-miR-17-5p"}}}}
MATRIX = {{"mrna": "mrna.tsv", "mirna": "mirna.csv"}}

rule all:
    input: "labels/labels.tsv", "splits/splits.tsv", "survival/clinical.tsv"

rule labels_trait:
    input: matrix=lambda w: MATRIX[TRAITS[w.trait]["source"]], slides="slides.tsv"
    output: labels="labels/{{trait}}.tsv"
    params: trait=lambda w: TRAITS[w.trait], labels={{"low_percentile": 20, "high_percentile": 80, "near_width": 10}}
    log: "logs/labels_{{trait}}.log"
    script: SCRIPTS + "labels_trait.py"

rule labels_summary:
    input: labels=expand("labels/{{trait}}.tsv", trait=TRAITS), slides="slides.tsv"
    output: labels="labels/labels.tsv", summary="labels/summary.tsv"
    log: "logs/labels_summary.log"
    script: SCRIPTS + "labels_summary.py"

rule splits:
    input: qc="qc.tsv"
    output: splits="splits/splits.tsv"
    params: splits={{"test_fraction": 0.1, "val_fraction": 0.1, "n_splits": 5}}, seed=42
    log: "logs/splits.log"
    script: SCRIPTS + "splits.py"

rule clinical:
    input: clinical="clinical.txt"
    output: clinical="survival/clinical.tsv"
    params: format="cbioportal"
    log: "logs/clinical.log"
    script: SCRIPTS + "clinical.py"
"""


@pytest.mark.slow
def test_snakemake_scripts_write_every_output(tmp_path, repo_root):
    """The four thin scripts run under Snakemake's `script:` and write what the rules declare."""
    import subprocess
    import sys

    rng = np.random.default_rng(5)
    patients = [f"TCGA-AA-{index:04d}" for index in range(30)]
    write_matrix(tmp_path / "mrna.tsv", [f"{p}-01A-11R-A000-07" for p in patients], {"MKI67|4288": rng.normal(size=30)})
    mirna = [",".join(["Genes", "Correction", *(f"{p}-01A-11R-A000-13" for p in patients)])]
    mirna.append(",".join(["hsa-miR-17-5p", "Corrected", *(repr(float(v)) for v in rng.normal(size=30))]))
    (tmp_path / "mirna.csv").write_text("\n".join(mirna) + "\n")
    slide_ids = [f"{p}-01Z-00-DX1.u" for p in patients]
    write_slide_table(
        [SlideRecord(slide, patient, "x.svs", "x.svs") for slide, patient in zip(slide_ids, patients)],
        tmp_path / "slides.tsv",
    )
    qc = qc_frame({"slide_id": slide_ids, "patient_id": patients, "status": ["pass"] * 29 + ["fail"], "reason": ""})
    write_qc_table(qc, tmp_path / "qc.tsv")
    (tmp_path / "clinical.txt").write_text("#a\nPATIENT_ID\tOS_STATUS\tOS_MONTHS\nTCGA-AA-0000\t1:DECEASED\t5\n")
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(scripts=repo_root / "workflow_scripts" / "scripts"))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_table(tmp_path / "labels" / "summary.tsv")
    assert summary["trait"].tolist() == ["MKI67", "miR-17-5p"]
    assert summary["patients_train_pool"].tolist() == [12, 12]  # 30 untied values: 6 at each end
    splits = read_splits(tmp_path / "splits" / "splits.tsv")
    assert len(splits) == 29 and splits["test"].sum() == 3
    assert "1 patients, 0 excluded" in (tmp_path / "logs" / "clinical.log").read_text()
