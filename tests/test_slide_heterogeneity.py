"""Per-slide heterogeneity outputs: hand-checked hti.tsv rows, gallery picks and the files of the whole job."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from qc_rows import qc_frame
from test_cartography import make_store
from workflow_scripts.analysis.cartography import write_cartography
from workflow_scripts.analysis.heterogeneity import hta_test, hti
from workflow_scripts.analysis.slide_heterogeneity import (
    HeterogeneityOutputs,
    HtaSettings,
    combination_names,
    gallery_picks,
    map_title,
    slide_row,
    write_heterogeneity,
)
from workflow_scripts.common.seeds import stable_seed
from workflow_scripts.common.tables import read_table, write_tsv
from workflow_scripts.slides.qc_table import write_qc_table

BG = 255
# 2 x 3 grid, traits (A, B): A only, B only, background / A and B, A only, none
TENSOR = np.array([[[1, 0], [0, 1], [BG, BG]], [[1, 1], [1, 0], [0, 0]]], dtype=np.uint8)
SETTINGS = HtaSettings(region=2, permutations=20, seed=42)


def test_slide_row_by_hand():
    row = slide_row("S1", "P1", TENSOR, ["A", "B"], SETTINGS)
    # positive tiles: A only x2, B only x1, A and B x1 -> p = (1/2, 1/4, 1/4) over 2**2 - 1 = 3 combinations
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) / math.log(3)
    assert row["hti"] == pytest.approx(expected)
    assert row["n_positive_tiles"] == 4 and row["traits"] == "A+B"
    assert (row["p_A+ B-"], row["p_A- B+"], row["p_A+ B+"]) == pytest.approx((0.5, 0.25, 0.25))
    spatial = hta_test(TENSOR, 2, 20, stable_seed(42, "S1"))
    assert (row["hta"], row["hta_p"], row["hta_p_clt"]) == (spatial.hta, spatial.p_value, spatial.p_value_clt)
    assert combination_names(["A", "B"]) == ["A+ B-", "A- B+", "A+ B+"]
    assert map_title(row, 2).startswith(f"S1\nHTI {expected:.2f}  HTA")


def test_slide_row_in_the_observed_base():
    # drop the A and B tile: A only x2, B only x1 -> two observed combinations, p = (2/3, 1/3)
    tensor = TENSOR.copy()
    tensor[1, 0] = (0, 0)
    observed = HtaSettings(region=2, permutations=20, seed=42, log_base="observed")
    paper = slide_row("S1", "P1", tensor, ["A", "B"], SETTINGS)
    package = slide_row("S1", "P1", tensor, ["A", "B"], observed)
    entropy = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert paper["hti"] == pytest.approx(entropy / math.log(3))
    assert package["hti"] == pytest.approx(entropy / math.log(2))
    assert package["hta"] == pytest.approx(paper["hta"] * math.log(3) / math.log(2))
    assert (package["hta_p"], package["p_A+ B-"]) == pytest.approx((paper["hta_p"], 2 / 3))


def test_slide_without_positive_tiles_has_nan_shares():
    row = slide_row("S0", "P0", np.zeros((2, 2, 2), np.uint8), ["A", "B"], SETTINGS)
    assert row["n_positive_tiles"] == 0 and math.isnan(row["hti"]) and math.isnan(row["p_A+ B+"])


def test_gallery_spreads_over_hti_order_with_nan_last():
    table = pd.DataFrame({"slide_id": [f"s{index:02d}" for index in range(30)],
                          "hti": [np.nan] + list(np.linspace(0, 1, 29))})
    picks = gallery_picks(table)
    assert len(picks) == 24 and picks["slide_id"].iloc[0] == "s29" and picks["slide_id"].iloc[-1] == "s00"
    assert picks["hti"].iloc[:-1].is_monotonic_decreasing
    small = gallery_picks(table.iloc[1:4])
    assert small["slide_id"].tolist() == ["s03", "s02", "s01"]


def test_write_heterogeneity_files(tmp_path):
    stores = []
    for slide_id in ("S1", "S2"):
        make_store(tmp_path / "tiles" / f"{slide_id}.h5", slide_id, [[0, 0], [1, 0], [0, 1], [1, 1], [2, 1]], (3, 2),
                   thumbnail=np.full((24, 30, 3), 220, np.uint8))
        stores.append(tmp_path / "tiles" / f"{slide_id}.h5")
    # S1 is stored with traits in the other order: the job must pick them by name
    write_cartography(tmp_path / "cartography" / "S1.h5", TENSOR[..., ::-1], ["B", "A"], "S1")
    homogeneous = np.where(TENSOR == BG, BG, np.array([1, 0], np.uint8)).astype(np.uint8)
    write_cartography(tmp_path / "cartography" / "S2.h5", homogeneous, ["A", "B"], "S2")
    qc = qc_frame([{"slide_id": "S1", "patient_id": "P1", "status": "pass"},
                   {"slide_id": "S2", "patient_id": "P2", "status": "pass"},
                   {"slide_id": "S3", "patient_id": "P3", "status": "fail"}])
    write_qc_table(qc, tmp_path / "qc.tsv")
    write_tsv(pd.DataFrame({"trait": ["A", "B"]}), tmp_path / "traits.tsv")
    out = tmp_path / "out"
    outputs = HeterogeneityOutputs(out / "hti.tsv", out / "maps", out / "gallery.png")
    table = write_heterogeneity(tmp_path / "traits.tsv", tmp_path / "qc.tsv", tmp_path / "cartography", stores,
                                SETTINGS, outputs)
    written = read_table(outputs.hti)
    assert written["slide_id"].tolist() == ["S1", "S2"] == table["slide_id"].tolist()
    assert written["hti"].tolist() == pytest.approx([hti(TENSOR), 0.0])
    assert written.loc[0, "hti"] == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)) / math.log(3))
    names = sorted(path.name for path in (tmp_path / "out" / "maps").iterdir())
    assert names == ["S1.overlay.png", "S1.png", "S2.overlay.png", "S2.png"]
    assert (tmp_path / "out" / "gallery.png").read_bytes()[:4] == b"\x89PNG"
