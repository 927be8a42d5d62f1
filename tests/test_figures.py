"""Figure pieces with computed answers: scale bars, map sizes, short titles, Kaplan-Meier annotations (equal to
lifelines'), Figure 2 panel text (equal to Table 1 and scikit-learn), group plots and the QC thumbnail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test
from matplotlib.collections import LineCollection
from sklearn.metrics import roc_auc_score

from workflow_scripts.analysis.cartography import read_store_layout
from workflow_scripts.analysis.evaluate import figure2_panel_text, table1
from workflow_scripts.analysis.maps import MAP_MAX_IN, map_size_inches, map_um_per_px
from workflow_scripts.analysis.survival_figures import km_annotation, km_annotation_text, month_ticks
from workflow_scripts.common.figures import MEDIAN_COLOUR, draw_groups, pyplot, scale_bar_mm, scale_bar_px, wrap_label
from workflow_scripts.inputs.barcodes import short_slide_name
from workflow_scripts.slides.grid import Grid
from workflow_scripts.slides.qc_thumbnail import KEPT_OUTLINE, STATUS_BANNER, TISSUE_OUTLINE, qc_image
from workflow_scripts.slides.tilestore import write_tile_store
from workflow_scripts.slides.tiling import SlideQC


def test_scale_bar_length_in_pixels():
    assert scale_bar_px(1.0, 0.5) == 2000  # 1000 um at 0.5 um/px
    assert scale_bar_px(0.5, 16.0) == 31.25
    # a 400-px wide image of 16 um/px: a quarter is 100 px = 1.6 mm, the longest round length below is 1 mm
    assert scale_bar_mm(400, 16.0) == 1.0
    assert scale_bar_mm(400, 2.0) == 0.2  # 100 px = 0.2 mm exactly
    with pytest.raises(ValueError, match="micrometres"):
        scale_bar_px(1.0, 0.0)


def test_map_scale_comes_from_the_store(tmp_path):
    # 256-px tiles at 0.5 um/px = 128 um a tile; 512 level-0 px a tile (0.25 um/px); thumbnail 64x downsampled
    attrs = {"tile_px": 256, "mpp": 0.5, "level0_tile_px": 512, "source_mpp": 0.25, "grid_shape": [2, 1]}
    write_tile_store(tmp_path / "S.h5", "S", np.array([[0, 0], [512, 0]]), np.array([[0, 0], [1, 0]]),
                     np.ones(2), np.zeros((2, 256, 256, 3), np.uint8), attrs, encoding="raw",
                     thumbnail=np.full((8, 16, 3), 200, np.uint8), thumbnail_downsample=64.0)
    layout = read_store_layout(tmp_path / "S.h5", with_thumbnail=True)
    assert layout.tile_um == 128.0
    assert map_um_per_px(layout, overlay=False) == 128.0  # the plain map: one pixel a tile
    assert map_um_per_px(layout, overlay=True) == 16.0  # 64 level-0 px of 0.25 um
    assert scale_bar_px(1.0, map_um_per_px(layout, True)) == 62.5


def test_map_size_follows_the_grid_within_the_cap():
    assert map_size_inches(100, 80) == pytest.approx((8.0, 6.4))  # 0.08 in a tile, under the cap
    width, height = map_size_inches(300, 200)  # 24 x 16 in at 0.08 in a tile: shrunk by min(10/24, 8/16)
    assert (width, height) == pytest.approx((10.0, 16 * 10 / 24))
    assert width <= MAP_MAX_IN[0] and height <= MAP_MAX_IN[1]
    assert map_size_inches(5, 4) == pytest.approx((4.0, 3.2))  # tiny slides grow to a 4-inch long side


def test_short_slide_names():
    slide = "TCGA-A1-A0SB-01Z-00-DX1.12345678-1234-1234-1234-123456789ABC"
    assert short_slide_name(slide) == "TCGA-A1-A0SB DX1"
    assert short_slide_name("TCGA-A1-A0SB-01A") == "TCGA-A1-A0SB"
    assert short_slide_name("CMU-1-Small-Region") == "CMU-1-Small-Region"
    assert short_slide_name("a" * 30) == "a" * 23 + "\u2026"


def test_month_ticks():
    assert month_ticks(50).tolist() == [0, 12, 24, 36, 48, 60]
    assert month_ticks(48).tolist() == [0, 12, 24, 36, 48]
    assert month_ticks(150).tolist() == list(range(0, 169, 24))
    assert month_ticks(300).tolist() == [0, 60, 120, 180, 240, 300]


def test_km_annotation_equals_lifelines():
    first = pd.DataFrame({"os_months": [2.0, 4.0, 6.0, 8.0, 9.0, 12.0], "os_event": [1, 1, 0, 1, 1, 1]})
    second = pd.DataFrame({"os_months": [3.0, 5.0, 7.0, 9.0, 11.0, 14.0], "os_event": [1, 0, 0, 1, 0, 0]})
    annotation = km_annotation({"low": first, "high": second})
    reference = logrank_test(first["os_months"], second["os_months"], first["os_event"], second["os_event"])
    assert annotation["p_value"] == pytest.approx(reference.p_value)
    frame = pd.concat([first.assign(group=0), second.assign(group=1)], ignore_index=True)
    cox = CoxPHFitter().fit(frame, duration_col="os_months", event_col="os_event").summary.loc["group"]
    assert annotation["hr"] == pytest.approx(cox["exp(coef)"])
    assert annotation["hr_ci_low"] == pytest.approx(cox["exp(coef) lower 95%"])
    assert annotation["hr_ci_high"] == pytest.approx(cox["exp(coef) upper 95%"])
    # by hand: the first group's KM is 5/6 at 2, 4/6 at 4, (6 censored) 4/6 * 2/3 = 0.44 at 8: median 8; the
    # second's lowest is 5/6 * 2/3 = 0.56 (at 9): not reached
    assert annotation["medians"]["low"] == 8.0
    assert np.isinf(annotation["medians"]["high"])
    assert annotation["medians"]["low"] == KaplanMeierFitter().fit(first["os_months"], first["os_event"]) \
        .median_survival_time_
    text = km_annotation_text(annotation)
    assert f"HR {cox['exp(coef)']:.2f} (95% CI {cox['exp(coef) lower 95%']:.2f}-" in text
    assert "high vs low" in text and f"log-rank p = {reference.p_value:.3g}" in text
    assert "low: 8.0 mo" in text and "high: not reached" in text


def test_km_annotation_without_a_second_group():
    only = pd.DataFrame({"os_months": [1.0, 2.0, 3.0], "os_event": [1, 1, 1]})
    annotation = km_annotation({"low": only, "high": only.iloc[:0]})
    assert np.isnan(annotation["hr"]) and np.isnan(annotation["p_value"])
    assert annotation["medians"] == {"low": 2.0}  # S(1) = 2/3, S(2) = 1/3
    assert "HR n/a: needs two non-empty groups" in km_annotation_text(annotation)


def test_figure2_panel_text_is_table1():
    labels = [0, 0, 0, 1, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.3, 0.9, 0.2, 0.7]
    table = pd.DataFrame({"slide_id": [f"s{i}" for i in range(8)], "patient_id": [f"p{i // 2}" for i in range(8)],
                          "trait": "A", "model": "ensemble", "set": "test", "label": labels, "score": scores,
                          "mean_tile_score": scores})
    summary = table1(table, ["A"], n_boot=50, ci=0.9, seed=0)
    row = summary.iloc[0]
    assert row["test_auc_ensemble"] == pytest.approx(roc_auc_score(labels, scores))
    text = figure2_panel_text(summary, "A", "test", ci=0.9)
    low, high = row["test_auc_ensemble_ci_low"], row["test_auc_ensemble_ci_high"]
    assert text == f"AUC {roc_auc_score(labels, scores):.2f} (90% CI {low:.2f}-{high:.2f})\nn = 8 slides, 4 patients"
    assert figure2_panel_text(summary, "A", "ood_near").startswith("AUC n/a")
    assert figure2_panel_text(None, "A", "test") == ""


def test_groups_get_a_box_only_from_five_points():
    plt = pyplot()
    figure, axis = plt.subplots()
    draw_groups(axis, [np.array([0.5]), np.array([0.2, 0.4, 0.6]), np.array([0.1, 0.2, 0.3, 0.4, 0.9])],
                ["C0", "C1", "C2"], np.random.default_rng(0))
    assert len(axis.patches) == 1  # one box: the group of five
    medians = [line for line in axis.lines if line.get_color() == MEDIAN_COLOUR]
    assert [line.get_ydata()[0] for line in medians] == [0.3]  # the box's median line, black
    lines = [item for item in axis.collections if isinstance(item, LineCollection)]
    assert [segment[0][1] for line in lines for segment in line.get_segments()] == [0.4]  # the 3-point group's
    points = [item for item in axis.collections if not isinstance(item, LineCollection)]
    assert sum(item.get_offsets().shape[0] for item in points) == 9  # every point drawn
    plt.close(figure)
    assert wrap_label("Luminal A subtype tumours", 10) == "Luminal A\nsubtype\ntumours"


def test_qc_thumbnail_keeps_the_he_colours_and_outlines_what_it_found():
    pink = (230, 150, 200)
    thumbnail = np.zeros((40, 60, 3), np.uint8) + np.array(pink, np.uint8)
    tissue = np.zeros((40, 60), bool)
    tissue[10:30, 10:50] = True
    qc = SlideQC("TCGA-A1-A0SB-01Z-00-DX1.x", "TCGA-A1-A0SB", status="pass", n_tiles=2, blur_fraction=0.25,
                 thumbnail=thumbnail, tissue=tissue, pen=np.zeros((40, 60), bool), kept_cells=[(1, 1), (2, 1)],
                 grid=Grid(10.0, 6, 4), mask_downsample=1.0)
    image = np.asarray(qc_image(qc))
    # 60 px wide -> drawn 8x (480 px); the banner is opaque in the status colour
    assert image.shape[1] == 480
    assert tuple(image[1, 1]) == STATUS_BANNER["pass"]
    top = int(np.argmax((image == pink).all(axis=-1).any(axis=1)))  # first row of the thumbnail
    body = image[top:top + 320]
    assert tuple(body[200, 300]) == pink  # inside the tissue, off every outline: no tint
    assert tuple(body[0, 0]) == pink  # outside the tissue
    assert tuple(body[160, 80]) == TISSUE_OUTLINE  # the tissue's left edge, mask column 10 -> drawn column 80
    # kept cells (1,1) and (2,1) of 10 mask px = 80 drawn px: x 80-239, y 80-159, outlined 2 px inside
    assert tuple(body[120, 80]) == KEPT_OUTLINE and tuple(body[120, 239]) == KEPT_OUTLINE
    assert tuple(body[120, 240]) == pink and tuple(body[120, 120]) == pink
    assert image.shape[0] > top + 320  # the legend band below
