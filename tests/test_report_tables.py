"""The report's HTML tables: number formats, Table 1 as in the paper, self-contained pages, labels and categories."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from qc_rows import qc_frame
from workflow_scripts.analysis.cox import COX_COLUMNS
from workflow_scripts.analysis.ensemble import MEMBER_COLUMNS
from workflow_scripts.analysis.evaluate import table1
from workflow_scripts.analysis.evaluation_tables import SPEARMAN_COLUMNS
from workflow_scripts.analysis.group_tests import GROUP_TEST_COLUMNS
from workflow_scripts.analysis.report_format import (
    MISSING,
    format_ci,
    format_count,
    format_estimate,
    format_mean_range,
    format_p,
)
from workflow_scripts.analysis.report_images import report_copy, write_report_images
from workflow_scripts.analysis.report_labels import (
    map_labels,
    named_rows,
    slide_names,
    survival_figure_place,
    thumbnail_labels,
)
from workflow_scripts.analysis.report_survival import group_sizes
from workflow_scripts.analysis.report_tables import (
    REPORT_PAGES,
    hti_display,
    qc_display,
    table1_display,
    write_report_tables,
)
from workflow_scripts.analysis.survival import LOGRANK_COLUMNS
from workflow_scripts.common.tables import write_tsv

REPO = Path(__file__).resolve().parents[1]
UUID_A = "0A1B2C3D-0000-4000-8000-000000000001"
UUID_B = "0A1B2C3D-0000-4000-8000-000000000002"
CATEGORIES = {"1. Slide QC", "2. Labels", "3. Evaluation", "4. Heterogeneity", "5. Survival"}


@pytest.mark.parametrize(("value", "expected"), [
    (0.0004, "<0.001"), (0.001, "0.0010"), (0.01234, "0.012"), (0.05, "0.050"), (0.456, "0.46"), (1.0, "1.0"),
    (float("nan"), MISSING), (None, MISSING), ("", MISSING),
])
def test_p_values_have_two_significant_digits_or_a_floor(value, expected):
    assert format_p(value) == expected


def test_counts_intervals_and_estimates():
    assert format_count(12.0) == "12"
    assert format_count(float("nan")) == MISSING
    assert format_ci(0.714, 0.9251) == "[0.71, 0.93]"
    assert format_ci(0.7, float("nan")) == MISSING
    assert format_estimate(0.8549, 0.7, 0.95) == "0.85 [0.70, 0.95]"
    assert format_estimate(0.85, float("nan"), float("nan")) == "0.85"
    assert format_mean_range(0.8, 0.75, 0.85) == "0.80 (0.75–0.85)"


def split_scores(scores: dict[str, list[float]], labels: list[int], set_name: str) -> pd.DataFrame:
    """Slide scores of one trait and set: one slide per patient, the given scores per model."""
    rows = []
    for model, values in scores.items():
        for index, (score, label) in enumerate(zip(values, labels)):
            rows.append({"slide_id": f"{set_name}{index}", "patient_id": f"{set_name}-p{index}", "trait": "A",
                         "model": model, "set": set_name, "label": label, "score": score, "mean_tile_score": score})
    return pd.DataFrame(rows)


def test_table1_shows_the_split_models_mean_and_range_and_the_ensemble():
    # labels 1, 1, 0, 0: split_0 ranks both positives first (AUC 1), split_1 wins 3 of the 4 positive-negative
    # pairs (0.75), split_2 wins 2 of 4 (0.5): mean 0.75, range 0.50-1.00. The ensemble has split_0's scores.
    test_scores = {"split_0": [0.9, 0.8, 0.2, 0.1], "split_1": [0.9, 0.2, 0.8, 0.1],
                   "split_2": [0.9, 0.1, 0.8, 0.2], "ensemble": [0.9, 0.8, 0.2, 0.1]}
    ood = {"ensemble": [0.9, 0.2, 0.8, 0.1, 0.7]}  # positives 0.9, 0.2 vs negatives 0.8, 0.1, 0.7: 4 of 6 pairs
    slides = pd.concat([split_scores(test_scores, [1, 1, 0, 0], "test"),
                        split_scores(ood, [1, 1, 0, 0, 0], "ood_near"), split_scores(ood, [1, 1, 0, 0, 0], "ood_all")])
    for model in ("split_1", "split_2"):
        assert roc_auc_score([1, 1, 0, 0], test_scores[model]) == {"split_1": 0.75, "split_2": 0.5}[model]
    result = table1(slides, ["A"], n_boot=50, ci=0.9, seed=0)
    display = table1_display(result, {"A": 3}, ci=0.9).iloc[0]
    assert display["Test AUC, 3 split models: mean (range)"] == "0.75 (0.50–1.00)"
    assert display["Test n slides (patients)"] == "4 (4)"
    assert display["OOD-near n slides (patients)"] == "5 (5)"
    assert display["OOD-near AUC, ensemble [90% CI]"].startswith("0.67 [")
    row = result.iloc[0]
    assert display["Test AUC, ensemble [90% CI]"] == format_estimate(1.0, row["test_auc_ensemble_ci_low"],
                                                                      row["test_auc_ensemble_ci_high"])


def test_table1_rows_with_one_class_show_a_missing_auc():
    hand = {"trait": ["B"], "n_test": [3], "test_auc_mean": [np.nan], "test_auc_min": [np.nan],
            "test_auc_max": [np.nan], "test_auc_ensemble": [np.nan], "n_test_patients": [2]}
    for name in ("ood_near", "ood_all"):
        hand |= {f"n_{name}": [10], f"{name}_auc_ensemble": [0.6123], f"n_{name}_patients": [9]}
    for name in ("test", "ood_near", "ood_all"):
        hand |= {f"{name}_auc_ensemble_ci_low": [0.41 if name != "test" else np.nan],
                 f"{name}_auc_ensemble_ci_high": [0.799 if name != "test" else np.nan]}
    frame = pd.DataFrame(hand)
    display = table1_display(pd.concat([frame, frame.assign(trait="C")]), {"B": 5, "C": 4}, ci=0.95).iloc[0]
    assert display["Test AUC, split models: mean (range)"] == MISSING  # the number of models differs by trait
    assert display["Test AUC, ensemble [95% CI]"] == MISSING
    assert display["Test n slides (patients)"] == "3 (2)"
    assert display["OOD-all AUC, ensemble [95% CI]"] == "0.61 [0.41, 0.80]"


def test_slide_names_are_short_and_unique():
    primary = f"TCGA-AB-1234-01Z-00-DX1.{UUID_A}"
    other_sample = "TCGA-AB-1234-06Z-00-DX1"
    assert slide_names([f"TCGA-CD-5678-01Z-00-DX2.{UUID_A}", "local_slide.v2"]) == {
        f"TCGA-CD-5678-01Z-00-DX2.{UUID_A}": "TCGA-CD-5678 DX2", "local_slide.v2": "local_slide"}
    # the same patient's DX1 of two samples: the barcodes; the same barcode in two files: the whole ids
    assert slide_names([primary, other_sample]) == {primary: "TCGA-AB-1234-01Z-00-DX1", other_sample: other_sample}
    twin = f"TCGA-AB-1234-01Z-00-DX1.{UUID_B}"
    assert slide_names([primary, twin]) == {primary: primary, twin: twin}


def test_map_and_thumbnail_labels():
    slide = f"TCGA-AB-1234-01Z-00-DX1.{UUID_A}"
    hti = named_rows(pd.DataFrame({"slide_id": [slide], "hti": [0.8349], "hta": [np.nan]}))
    assert map_labels(slide, hti) == {"slide": "TCGA-AB-1234 DX1", "HTI": "0.83", "HTA": MISSING}
    with pytest.raises(ValueError, match="other.*hti.tsv"):
        map_labels("other", hti)
    qc = named_rows(qc_frame([{"slide_id": slide, "patient_id": "TCGA-AB-1234", "status": "fail", "reason": "blur"},
                              {"slide_id": "s2", "patient_id": "p2", "status": "pass"}]))
    assert thumbnail_labels(slide, qc) == {"slide": "TCGA-AB-1234 DX1", "QC": "fail: blur"}
    assert thumbnail_labels("s2", qc) == {"slide": "s2", "QC": "pass"}


def test_survival_figures_are_placed_by_name():
    assert survival_figure_place("km_hti_0.3_0.7") == ("Kaplan-Meier", "HTI ≤ 0.3 vs > 0.7")
    assert survival_figure_place("figure5a_miR-17-5p") == ("Figure 5a", "survival by HTI and by miR-17-5p expression")
    assert survival_figure_place("figure6")[0] == "Figure 6"


def test_group_sizes_pair_each_group_with_its_count():
    assert group_sizes("negative;positive", "12;30") == "negative (n=12); positive (n=30)"
    with pytest.raises(ValueError, match="differ in length"):
        group_sizes("a;b", "1")


def test_qc_lists_failed_slides_first_and_hti_sorts_by_hti():
    qc = qc_frame([{"slide_id": "s1", "patient_id": "p1", "status": "pass", "tissue_fraction": 0.5},
                   {"slide_id": "s2", "patient_id": "p2", "status": "fail", "reason": "no tissue"}])
    display = qc_display(qc)
    assert list(display["Slide"]) == ["s2", "s1"] and list(display["Tissue"]) == [MISSING, "50.0%"]
    hti = pd.DataFrame({"slide_id": ["a", "b", "c"], "patient_id": ["pa", "pb", "pc"], "n_positive_tiles": [0, 5, 9],
                        "hti": [np.nan, 0.2, 0.9], "hta": [np.nan, 0.1, 0.3], "hta_p": [np.nan, 0.5, 0.0001],
                        "p_A": [np.nan, 1.0, 0.25]})
    display = hti_display(hti)
    assert list(display["Slide"]) == ["c", "b", "a"]
    assert list(display["HTA p"]) == ["<0.001", "0.50", MISSING]
    assert list(display["Share A"]) == ["25%", "100%", MISSING]


class Tags(HTMLParser):
    """Counts start tags and collects the attributes that would load something from outside the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.external += [f"{tag} {name}={value}" for name, value in attrs if name in ("src", "href")]


def write_run_tables(folder: Path) -> dict[str, Path]:
    """A small run's tables, one per report page, written as their owners write them."""
    slide = f"TCGA-AB-1234-01Z-00-DX1.{UUID_A}"
    tables = {
        "qc": qc_frame([{"slide_id": slide, "patient_id": "TCGA-AB-1234", "status": "pass", "mpp": 0.5}]),
        "labels": pd.DataFrame({"trait": ["A"], "patients": [10], "slides": [11], "patients_train_pool": [4],
                                "slides_train_pool": [5]}),
        "table1": table1(split_scores({"split_0": [0.9, 0.1], "ensemble": [0.9, 0.1]}, [1, 0], "test"), ["A"],
                         n_boot=20, ci=0.95, seed=0),
        "members": pd.DataFrame([["A", 0, 0.8, 0.4, 1, "val_slide_auc", True]], columns=MEMBER_COLUMNS),
        "spearman": pd.DataFrame([["A", "test", 2, 1.0, 0.0002, 0.0004, ""]], columns=SPEARMAN_COLUMNS),
        "hti": pd.DataFrame({"slide_id": [slide], "patient_id": ["TCGA-AB-1234"], "traits": ["A+B"],
                             "n_positive_tiles": [5], "hti": [0.5], "hta": [0.25], "hta_p": [0.03]}),
        "logrank": pd.DataFrame([["hti", "secondary", "hti_survival", "A+B", 0.5, 0.5, np.nan, 3, 4, 1, 2, 1.7,
                                  0.19, ""]], columns=LOGRANK_COLUMNS),
        "cox": pd.DataFrame([["hti", "primary", "hti", "per 0.1 HTI", 0.1, 1.105, 0.9, 1.35, 0.33, 7, 3, 0, "",
                              0.61, 0.2, 0.65, ""]], columns=COX_COLUMNS),
        "group_tests": pd.DataFrame([["6", "ER status", "er_status", "mannwhitneyu", "negative;positive", "3;4", 1,
                                      5.0, 0.6, ""]], columns=GROUP_TEST_COLUMNS),
    }
    paths = {name: folder / f"{name}.tsv" for name in tables}
    for name, frame in tables.items():
        write_tsv(frame, paths[name])
    return paths


def test_every_page_is_one_self_contained_html_file_with_a_table(tmp_path):
    inputs = write_run_tables(tmp_path / "tables")
    outputs = {name: tmp_path / "report" / f"{name}.html" for name in REPORT_PAGES}
    write_report_tables(inputs, outputs, ci=0.95, log=lambda line: None)
    for name, path in outputs.items():
        text = path.read_text(encoding="utf-8")
        parser = Tags()
        parser.feed(text)
        assert text.startswith("<!DOCTYPE html>") and parser.tags.get("table") == 1, name
        assert parser.tags.get("h1") == 1 and not parser.external and "script" not in parser.tags, name
        assert not re.search(r"@import|url\(", text), name
    assert sorted(path.name for path in (tmp_path / "report").iterdir()) == sorted(f"{n}.html" for n in REPORT_PAGES)
    table1_page = outputs["table1"].read_text(encoding="utf-8")
    assert "<td class=\"data row0 col1\" >1.00 (1.00–1.00)</td>" in table1_page
    assert "&lt;0.001" in outputs["spearman"].read_text(encoding="utf-8")
    assert "TCGA-AB-1234 DX1" in outputs["hti"].read_text(encoding="utf-8")
    assert "1.10 [0.90, 1.35]" in outputs["cox"].read_text(encoding="utf-8")
    first = {name: path.read_bytes() for name, path in outputs.items()}
    write_report_tables(inputs, outputs, ci=0.95, log=lambda line: None)
    assert first == {name: path.read_bytes() for name, path in outputs.items()}  # byte-identical reruns


def test_a_stale_table_is_an_error_naming_the_file(tmp_path):
    inputs = write_run_tables(tmp_path)
    write_tsv(pd.DataFrame({"trait": ["A"]}), inputs["cox"])
    outputs = {name: tmp_path / f"{name}.html" for name in REPORT_PAGES}
    with pytest.raises(ValueError, match=r"cox\.tsv: missing columns"):
        write_report_tables(inputs, outputs, ci=0.95, log=lambda line: None)


def report_calls(text: str) -> list[str]:
    """The argument text of every report(...) call in a rules file."""
    calls = []
    for match in re.finditer(r"\breport\(", text):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        calls.append(text[match.end():end - 1])
    return calls


def test_every_report_item_has_a_pipeline_category_and_a_caption():
    calls = [(path.name, call) for path in sorted((REPO / "rules").glob("*.smk"))
             for call in report_calls(path.read_text())]
    assert len(calls) >= 14
    for name, call in calls:
        category = re.search(r'category="([^"]+)"', call)
        assert category and category.group(1) in CATEGORIES, f"{name}: report item without a category: {call}"
        caption = re.search(r'caption="([^"]+)"', call)
        assert caption and (REPO / "rules" / caption.group(1)).is_file(), f"{name}: caption missing: {call}"


def test_report_images_are_jpeg_copies_capped_in_size(tmp_path):
    from PIL import Image

    maps, thumbnails = tmp_path / "maps", tmp_path / "thumbnails"
    maps.mkdir()
    thumbnails.mkdir()
    Image.new("RGBA", (2400, 1200), (200, 30, 30, 255)).save(maps / "s1.overlay.png")
    Image.new("RGB", (2400, 1200), (30, 200, 30)).save(maps / "s1.png")  # the map alone: not copied
    Image.new("RGB", (300, 500), (30, 30, 200)).save(thumbnails / "s1.png")
    counts = write_report_images(maps, [thumbnails / "s1.png"], tmp_path / "out_maps", tmp_path / "out_thumbs")
    assert counts == (1, 1)
    assert [path.name for path in (tmp_path / "out_maps").iterdir()] == ["s1.jpg"]
    with Image.open(tmp_path / "out_maps" / "s1.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (1000, 500))  # long side 2400 -> 1000, aspect kept
        red, green, blue = image.getpixel((500, 250))
        assert red > 180 and green < 60 and blue < 60
    with Image.open(tmp_path / "out_thumbs" / "s1.jpg") as image:
        assert image.size == (300, 500)  # already small: never enlarged
    assert report_copy(thumbnails / "s1.png", tmp_path / "again.jpg", max_px=100) == (60, 100)
    with pytest.raises(ValueError, match="no heterogeneity map"):
        write_report_images(thumbnails, [], tmp_path / "m", tmp_path / "t")
