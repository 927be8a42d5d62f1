"""Synthetic demo cohort: real Aperio slides, real-format tables, deterministic, and a truth that holds."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import openslide
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test
from scipy.stats import spearmanr

from workflow_scripts.common.hashing import md5_file
from workflow_scripts.demo.cohort import DemoOutputs, write_demo_cohort
from workflow_scripts.demo.config import DemoConfig
from workflow_scripts.demo.image import render_slide
from workflow_scripts.demo.layout import BACKGROUND, SlideLayout, cell_truth, heterogeneity_index, trait_fractions
from workflow_scripts.demo.omics import SurvivalModel, simulate_survival
from workflow_scripts.demo.plan import plan_cohort
from workflow_scripts.demo.truth import (
    TruthError,
    read_patient_truths,
    read_slide_truths,
    read_truth,
    truth_path,
    write_truth,
)
from workflow_scripts.inputs.barcodes import parse_barcode, parse_slide_filename
from workflow_scripts.inputs.clinical import read_cbioportal_table
from workflow_scripts.inputs.slidetable import read_slide_table

TINY = {"n_patients": 6, "slide_size": [768, 576]}
SIGNATURES = ["nuclear_density", "stroma_hue"]


def generate(root: Path, config: dict, seed: int = 42) -> dict[str, Path]:
    """Write a demo cohort under `root` with the same relative layout the workflow uses."""
    outputs = {
        "table": root / "slides.tsv",
        "slides_dir": root / "slides",
        "mrna": root / "expression" / "mrna.tsv",
        "mirna": root / "expression" / "mirna.csv",
        "clinical": root / "clinical" / "data_clinical_patient.txt",
        "truth_dir": root / "truth",
    }
    write_demo_cohort(DemoConfig.from_mapping(config), seed, DemoOutputs.of(**outputs))
    return outputs


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("demo_a"), TINY)


@pytest.fixture(scope="module")
def slide_table(cohort) -> pd.DataFrame:
    return read_slide_table(cohort["table"])


def test_every_slide_opens_as_aperio_40x_with_three_levels(cohort, slide_table):
    assert len(slide_table) >= 7  # 6 patients, ceil(15%) = 1 with a DX2 slide
    for row in slide_table.itertuples():
        with openslide.OpenSlide(row.path) as slide:
            assert slide.properties["openslide.vendor"] == "aperio"
            assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
            assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.25)
            assert slide.properties["openslide.objective-power"] == "40"
            assert slide.level_count == 3
            assert [round(d) for d in slide.level_downsamples] == [1, 4, 16]
            assert slide.dimensions == (768, 576)


def test_slide_table_names_md5_and_sizes_are_real(cohort, slide_table):
    assert list(slide_table.columns) == ["slide_id", "patient_id", "path", "file_name", "md5", "size", "file_id"]
    assert (slide_table["file_id"] == "").all()
    for row in slide_table.itertuples():
        path = Path(row.path)
        assert path.parent == cohort["slides_dir"] and path.name == row.file_name
        assert md5_file(path) == row.md5
        assert path.stat().st_size == int(row.size)
        name = parse_slide_filename(row.file_name)
        assert name.slide_id == row.slide_id and name.barcode.patient_id == row.patient_id
        assert name.barcode.tss == "ZZ" and name.barcode.sample_type == 1 and name.barcode.slide_type == "DX"
    assert sorted(p.name for p in cohort["slides_dir"].iterdir()) == sorted(slide_table["file_name"])
    assert set(slide_table["slide_id"].str.extract(r"-(DX\d)\.")[0]) == {"DX1", "DX2"}


def test_tissue_is_pink_on_white_and_background_is_white(cohort, slide_table):
    row = slide_table.iloc[0]
    truth = read_truth(truth_path(cohort["truth_dir"], row.slide_id))
    grid, cell, tissue_fraction = truth.trait_grid, truth.cell_px, truth.tissue_fraction
    with openslide.OpenSlide(row.path) as slide:
        image = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"), dtype=float)
    tissue = np.argwhere((grid[..., 0] != BACKGROUND) & (tissue_fraction == 1.0))
    empty = np.argwhere(tissue_fraction == 0.0)
    assert len(tissue) and len(empty)
    r, c = tissue[0]
    tissue_rgb = image[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell].mean(axis=(0, 1))
    r, c = empty[0]
    background_rgb = image[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell].mean(axis=(0, 1))
    assert background_rgb.min() > 230
    assert tissue_rgb[1] < tissue_rgb[0] - 40  # eosin/haematoxylin: red and blue above green


def test_mrna_matrix_is_pancanatlas_format_with_planted_and_decoy_genes(cohort, slide_table):
    matrix = pd.read_csv(cohort["mrna"], sep="\t", index_col=None)  # independent check of the input format
    assert matrix.columns[0] == "gene_id"
    genes = matrix["gene_id"].tolist()
    assert "MKI67|4288" in genes and len(genes) >= 21
    assert all("|" in gene for gene in genes)
    barcodes = [parse_barcode(column) for column in matrix.columns[1:]]
    assert all(b.analyte == "R" and b.center == "07" and b.plate for b in barcodes)
    samples = {(b.sample_type, b.vial) for b in barcodes}
    assert {(1, "A"), (1, "B"), (11, "A")} <= samples
    with_expression = {b.patient_id for b in barcodes}
    assert 0 < len(set(slide_table["patient_id"]) - with_expression) < 6
    assert np.isfinite(matrix.iloc[:, 1:].to_numpy(float)).all()


def test_mirna_matrix_is_pancanatlas_format(cohort):
    lines = cohort["mirna"].read_text().splitlines()
    header = lines[0].split(",")
    assert header[:2] == ["Genes", "Correction"]
    rows = [line.split(",") for line in lines[1:]]
    assert "hsa-miR-17-5p" in [row[0] for row in rows] and len(rows) >= 21
    assert {row[1] for row in rows} == {"Corrected", "Uncorrected"}
    assert all(len(row) == len(header) for row in rows)
    assert all(parse_barcode(column).center == "13" for column in header[2:])


def test_clinical_file_is_cbioportal_format(cohort, slide_table):
    lines = cohort["clinical"].read_text().splitlines()
    assert all(line.startswith("#") for line in lines[:4]) and not lines[4].startswith("#")
    assert len({len(line.split("\t")) for line in lines}) == 1
    table = read_cbioportal_table(cohort["clinical"])
    for column in ["PATIENT_ID", "SUBTYPE", "AGE", "AJCC_PATHOLOGIC_TUMOR_STAGE", "OS_STATUS", "OS_MONTHS"]:
        assert column in table.columns
    assert sorted(table["PATIENT_ID"]) == sorted(set(slide_table["patient_id"]))
    assert set(table["OS_STATUS"]) <= {"0:LIVING", "1:DECEASED", ""}
    known = table[table["OS_STATUS"] != ""]
    assert len(known) == 5  # ceil(2% of 6) = 1 patient without follow-up
    assert (known["OS_MONTHS"].astype(float) > 0).all()


def test_truth_grids_match_tables_and_hti(cohort, slide_table):
    slides = read_slide_truths(cohort["truth_dir"] / "slides.tsv")
    patients = read_patient_truths(cohort["truth_dir"] / "patients.tsv")
    assert sorted(slides["slide_id"]) == sorted(slide_table["slide_id"])
    assert sorted(patients["patient_id"]) == sorted(set(slide_table["patient_id"]))
    for _, row in slides.iterrows():
        truth = read_truth(truth_path(cohort["truth_dir"], row.slide_id))
        grid = truth.trait_grid
        assert grid.shape == (576 // 192, 768 // 192, 2)
        assert truth.grid_shape == (4, 3) and truth.cell_px == 192 and truth.level0_size == (768, 576)
        assert truth.traits == ("MKI67", "miR-17-5p") and truth.slide_id == row.slide_id
        assert truth.true_hti == pytest.approx(row.true_hti, abs=1e-9)
        assert truth.summary()["n_tissue_tiles"] == row.n_tissue_tiles
        assert set(np.unique(grid)) <= {0, 1, BACKGROUND}
        assert row.true_hti == pytest.approx(heterogeneity_index(grid), abs=1e-6)
        assert [row["fraction_MKI67"], row["fraction_miR-17-5p"]] == pytest.approx(
            list(trait_fractions(grid)), abs=1e-6
        )


def test_truth_reader_refuses_broken_files_naming_them(cohort, slide_table, tmp_path):
    truth = read_truth(truth_path(cohort["truth_dir"], slide_table.iloc[0]["slide_id"]))
    copy = tmp_path / "copy.h5"
    write_truth(copy, truth)
    again = read_truth(copy)
    assert np.array_equal(again.trait_grid, truth.trait_grid) and again.summary() == truth.summary()
    with h5py.File(copy, "a") as h5:  # malformed on purpose
        del h5["tissue_fraction"]
        h5["tissue_fraction"] = np.zeros((1, 1), np.float32)
    with pytest.raises(TruthError, match=f"truth file {copy}: tissue_fraction is \\(1, 1\\)"):
        read_truth(copy)
    with h5py.File(copy, "a") as h5:  # malformed on purpose
        del h5.attrs["cell_px"]
    with pytest.raises(TruthError, match=f"truth file {copy} lacks \\['cell_px'\\]"):
        read_truth(copy)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(TruthError, match="text.h5 cannot be read as HDF5"):
        read_truth(tmp_path / "text.h5")


def test_same_seed_gives_identical_bytes_and_another_seed_differs(cohort, tmp_path):
    again = generate(tmp_path / "again", TINY)
    for key in ["mrna", "mirna", "clinical"]:
        assert again[key].read_bytes() == cohort[key].read_bytes()
    for directory in ["slides_dir", "truth_dir"]:
        names = sorted(p.name for p in cohort[directory].iterdir())
        assert names == sorted(p.name for p in again[directory].iterdir())
        for name in names:
            assert (again[directory] / name).read_bytes() == (cohort[directory] / name).read_bytes(), name
    first = read_slide_table(cohort["table"]).drop(columns="path")
    second = read_slide_table(again["table"]).drop(columns="path")
    pd.testing.assert_frame_equal(first, second)
    other = plan_cohort(DemoConfig.from_mapping(TINY), seed=43)
    assert [s.slide_id for s in other.slides] != first["slide_id"].tolist()


def test_truth_does_not_depend_on_signal():
    visible = plan_cohort(DemoConfig.from_mapping({**TINY, "signal": 1.0}), seed=7)
    invisible = plan_cohort(DemoConfig.from_mapping({**TINY, "signal": 0.0}), seed=7)
    for a, b in zip(visible.slides, invisible.slides, strict=True):
        assert a.slide_id == b.slide_id and np.array_equal(a.trait_grid, b.trait_grid)
    pd.testing.assert_frame_equal(visible.mrna, invisible.mrna)


def test_expression_rises_with_true_trait_fraction():
    plan = plan_cohort(DemoConfig.from_mapping({"n_patients": 60, "slide_size": [768, 576]}), seed=3)
    patients = plan.patients[plan.patients["has_expression"]]
    for trait in ["MKI67", "miR-17-5p"]:
        fraction, value = patients[f"fraction_{trait}"], patients[f"value_{trait}"]
        assert fraction.std() > 0.25  # fractions spread over 0..1, so percentile labels mean something
        assert spearmanr(fraction, value).statistic > 0.8


def hand_grid(combos: list[tuple[int, int]], n_negative: int = 0, n_background: int = 0) -> np.ndarray:
    """A one-row trait grid with the given positive tiles, trait-negative tiles and background cells."""
    cells = list(combos) + [(0, 0)] * n_negative + [(BACKGROUND, BACKGROUND)] * n_background
    return np.array(cells, dtype=np.uint8)[None]


def test_hti_equals_hand_computation():
    # positive tiles: {A}, {A}, {B}, {A,B} -> p = 1/2, 1/4, 1/4 over C = 3 combinations
    grid = hand_grid([(1, 0), (1, 0), (0, 1), (1, 1)], n_negative=3, n_background=2)
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) / math.log(3)
    assert heterogeneity_index(grid) == pytest.approx(expected)
    assert expected == pytest.approx(0.94639, abs=1e-5)
    assert heterogeneity_index(hand_grid([(1, 0), (0, 1), (1, 1)])) == pytest.approx(1.0)
    assert heterogeneity_index(hand_grid([(1, 1)] * 5, n_negative=4)) == 0.0
    assert heterogeneity_index(hand_grid([], n_negative=3, n_background=1)) == 0.0
    assert list(trait_fractions(grid)) == pytest.approx([3 / 7, 2 / 7])


def test_cell_truth_uses_tissue_share_and_majority_of_tissue():
    # 2 x 2 cells of 8 level-0 px (2 x 2 field px at scale 4); region 1 carries trait A only
    tissue = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], bool)
    region = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]], np.int8)
    layout = SlideLayout(tissue, region, np.array([[0, 0], [1, 0]], bool), field_scale=4)
    grid, fraction = cell_truth(layout, cell_px=8, min_tissue_fraction=0.5)
    assert fraction.tolist() == [[1.0, 0.25], [0.0, 1.0]]
    assert grid[..., 0].tolist() == [[1, BACKGROUND], [BACKGROUND, 0]]  # 3/4 of cell (0,0) in region 1
    assert (grid[0, 0, 1], grid[1, 1, 1]) == (0, 0)


def signature_layout(marked_traits: tuple[int, int]) -> SlideLayout:
    """All tissue; left half region 0 without traits, right half region 1 with `marked_traits`."""
    region = np.zeros((96, 192), np.int8)
    region[:, 96:] = 1
    return SlideLayout(np.ones((96, 192), bool), region, np.array([[0, 0], marked_traits], bool), field_scale=4)


def halves(signal: float, marked_traits: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rendered trait-free and trait-carrying halves of a signature layout, as float RGB."""
    image = render_slide(signature_layout(marked_traits), SIGNATURES, signal, np.random.default_rng(seed))
    return image[:, :384].astype(float), image[:, 384:].astype(float)


def dark_share(part: np.ndarray, threshold: float = 400) -> float:
    """Share of pixels dark enough to be haematoxylin nuclei (RGB sum below `threshold`)."""
    return float((part.sum(axis=-1) < threshold).mean())


@pytest.mark.parametrize("signal", [1.0, 0.5, 0.0])
def test_nuclear_density_signature_scales_with_signal(signal):
    plain, marked = halves(signal, (1, 0))
    expected_ratio = 1 + 3.0 * signal  # DENSITY_GAIN 4: 4x the nuclei at full signal (less where they overlap)
    assert dark_share(marked) / dark_share(plain) == pytest.approx(expected_ratio, rel=0.25)
    assert abs(plain[..., 2].mean() - marked[..., 2].mean()) < 25 * signal + 3  # only nuclei change colour


@pytest.mark.parametrize("signal", [1.0, 0.5, 0.0])
def test_stroma_hue_signature_scales_with_signal(signal):
    plain, marked = halves(signal, (0, 1))
    stroma = lambda part: part[part.sum(axis=-1) > 400].mean(axis=0)  # noqa: E731
    shift = stroma(plain) - stroma(marked)
    assert shift[2] == pytest.approx(90 * signal, abs=15)  # blue: pink-lilac -> salmon
    assert dark_share(marked) / dark_share(plain) == pytest.approx(1.0, abs=0.2)


def test_signatures_separate_single_tiles_shrunk_to_a_75_px_network_input():
    from PIL import Image

    def tiles_75(part: np.ndarray) -> list[np.ndarray]:
        """The four 192-px tiles of a half, shrunk as the network input is (96 px at 20x, then 75 px)."""
        cut = [part[r : r + 192, c : c + 192].astype(np.uint8) for r in (0, 192) for c in (0, 192)]
        return [np.asarray(Image.fromarray(t).resize((75, 75), Image.BILINEAR), float) for t in cut]

    plain, marked = (tiles_75(part) for part in halves(1.0, (1, 0), seed=1))
    assert min(dark_share(t, 450) for t in marked) > max(dark_share(t, 450) for t in plain)
    plain, marked = (tiles_75(part) for part in halves(1.0, (0, 1), seed=1))
    assert min(t[..., 2].mean() for t in plain) > max(t[..., 2].mean() for t in marked) + 40


def test_survival_hazard_ratio_per_hti_is_recovered():
    rng = np.random.default_rng(11)
    hti = rng.uniform(0, 1, 3000)
    model = SurvivalModel(median_months=120.0, log_hazard_per_hti=3.0, follow_up_months=(1e9, 1e9))
    months, event = simulate_survival(hti, rng, model)
    assert event.all()  # follow-up never ends: every death observed
    fit = CoxPHFitter().fit(pd.DataFrame({"T": months, "E": event, "hti": hti}), "T", "E")
    assert fit.params_["hti"] == pytest.approx(3.0, abs=0.15)
    zero = simulate_survival(np.zeros(4000), rng, model)[0]
    assert np.median(zero) == pytest.approx(120.0, rel=0.08)


def test_survival_link_is_strong_enough_for_a_50_patient_logrank():
    plan = plan_cohort(DemoConfig.from_mapping({"n_patients": 50, "slide_size": [768, 576]}), seed=5)
    patients = plan.patients
    high = patients["true_hti"] > 0.5
    assert 5 <= high.sum() <= 45
    result = logrank_test(
        patients.loc[high, "os_months"], patients.loc[~high, "os_months"],
        patients.loc[high, "os_event"], patients.loc[~high, "os_event"],
    )  # fmt: skip
    assert result.p_value < 0.05
    assert 0 < patients["os_event"].mean() < 1  # some censoring
    clinical = plan.clinical.set_index("PATIENT_ID")
    reported = clinical[clinical["OS_MONTHS"] != ""]
    truth = patients.set_index("patient_id").loc[reported.index]
    assert reported["OS_MONTHS"].astype(float).to_numpy() == pytest.approx(truth["os_months"].to_numpy(), abs=1e-5)
    assert (reported["OS_STATUS"] == np.where(truth["os_event"] == 1, "1:DECEASED", "0:LIVING")).all()


def test_heterogeneity_varies_across_patients():
    plan = plan_cohort(DemoConfig.from_mapping({"n_patients": 40}), seed=9)
    hti = plan.patients["true_hti"]
    assert (hti == 0).sum() >= 5 and (hti > 0.7).sum() >= 5  # homogeneous and highly mixed slides


def test_traits_are_independent_across_patients_so_no_trait_is_a_proxy_for_another():
    """The label-1 and label-0 patients of one trait carry the other trait equally often (no shortcut to learn)."""
    plan = plan_cohort(DemoConfig.from_mapping({"n_patients": 400, "slide_size": [768, 576]}), seed=3)
    fractions = plan.patients[["fraction_MKI67", "fraction_miR-17-5p"]]
    assert abs(spearmanr(fractions.iloc[:, 0], fractions.iloc[:, 1]).statistic) < 0.15
    for trait, other in (fractions.columns, fractions.columns[::-1]):
        high = fractions[trait] >= fractions[trait].quantile(0.8)
        low = fractions[trait] <= fractions[trait].quantile(0.2)
        assert abs(fractions.loc[high, other].mean() - fractions.loc[low, other].mean()) < 0.15, trait


def test_homogeneous_slides_draw_each_trait_independently_including_none():
    plan = plan_cohort(DemoConfig.from_mapping({"n_patients": 200, "slide_size": [768, 576],
                                                "homogeneous_fraction": 1.0}), seed=4)  # fmt: skip
    combos = {tuple(slide.layout.region_traits[0]) for slide in plan.slides}
    assert combos == {(False, False), (True, False), (False, True), (True, True)}
    assert all((slide.layout.region_traits == slide.layout.region_traits[0]).all() for slide in plan.slides)
    assert (plan.patients["true_hti"] == 0).all()


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"n_patient": 5}, "demo.n_patient"),
        ({"signal": 1.5}, "demo.signal"),
        ({"slide_size": [100, 576]}, "demo.slide_size"),
        ({"traits": [{"name": "X", "source": "mrna", "id": "X|1", "signature": "glow"}]}, "demo.traits[0].signature"),
        (
            {"traits": [{"name": "X", "source": "rppa", "id": "X|1", "signature": "stroma_hue"}]},
            "demo.traits[0].source",
        ),
        ({"survival": {"median": 3}}, "demo.survival"),
    ],
)
def test_bad_config_names_the_key(bad, key):
    with pytest.raises(ValueError, match=key.replace("[", r"\[").replace("]", r"\]")):
        DemoConfig.from_mapping(bad)


def test_configured_traits_plant_their_own_rows(tmp_path):
    traits = [
        {"name": "ESR1", "source": "mrna", "id": "ESR1|2099", "signature": "nuclear_size"},
        {"name": "TOP2A", "source": "mrna", "id": "TOP2A|7153", "signature": "stroma_hue"},
        {"name": "miR-21", "source": "mirna", "id": "hsa-miR-21-5p", "signature": "nuclear_density"},
    ]
    plan = plan_cohort(DemoConfig.from_mapping({**TINY, "traits": traits}), seed=1)
    assert list(plan.mrna.index).count("ESR1|2099") == 1 and "TOP2A|7153" in plan.mrna.index
    assert list(plan.mirna.index).count("hsa-miR-21-5p") == 1
    assert plan.slides[0].trait_grid.shape[-1] == 3
