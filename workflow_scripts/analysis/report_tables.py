"""The report's tables: results/{cohort}/report/{name}.html, one self-contained HTML page per table of the run.

Contract (this module writes them; nothing reads them back): each page is one HTML file (report_format.html_page)
holding a title, a one-line note and one <table> of text cells, built from the TSV as its owner reads it, with no
number recomputed: REPORT_PAGES names them (qc, labels, table1, spearman, members, hti, logrank, cox,
group_tests). The TSVs stay the machine-readable outputs; these pages are what Snakemake's report shows.
Numbers: AUC and statistics 2 decimals, p- and q-values 2 significant digits or <0.001, intervals [low, high],
counts as integers, a missing value as report_format.MISSING.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from workflow_scripts.analysis.ensemble import read_members
from workflow_scripts.analysis.evaluation_tables import read_spearman, read_table1
from workflow_scripts.analysis.report_format import (
    format_count,
    format_estimate,
    format_mean_range,
    format_number,
    format_p,
    format_percent,
    format_text,
    html_page,
)
from workflow_scripts.analysis.report_labels import slide_names
from workflow_scripts.analysis.report_survival import (
    cox_display,
    group_tests_display,
    logrank_display,
    read_cox,
    read_group_tests,
    read_logrank,
)
from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.tables import read_table
from workflow_scripts.learning.labels import SETS
from workflow_scripts.slides.qc_table import read_qc_table

SET_NAMES = {"test": "Test", "ood_near": "OOD-near", "ood_all": "OOD-all", "in_sample": "In-sample",
             "train_pool": "Train pool", "ood_far": "OOD-far"}
DECIDED_BY_NAMES = {"val_slide_auc": "validation AUC", "val_loss": "validation loss (AUC tied)",
                    "split": "split number (AUC and loss tied)", "only_model": "only model"}
HTI_COLUMNS = ["slide_id", "patient_id", "n_positive_tiles", "hti", "hta", "hta_p"]
SUMMARY_COLUMNS = ["trait", "patients", "slides"]


@dataclass(frozen=True)
class Page:
    """One report page: its title, its one-line note and the display table."""

    title: str
    note: str
    display: pd.DataFrame


def split_models(members: pd.DataFrame) -> dict[str, int]:
    """Number of split models per trait (ensemble_members.tsv has one row per trait and split)."""
    return members.groupby("trait")["split"].nunique().to_dict()


def table1_display(table1: pd.DataFrame, n_models: Mapping[str, int], ci: float) -> pd.DataFrame:
    """Table 1 as in the paper: per trait the split models' test AUC mean (range), the ensemble's AUC with its CI
    on test, OOD-near and OOD-all slides, and the slides (patients) each AUC is over."""
    counts = {n_models.get(trait) for trait in table1["trait"]}
    models = f"{counts.pop()} split models" if len(counts) == 1 and None not in counts else "split models"
    level = f"{100 * ci:g}% CI"
    display = {"Trait": table1["trait"].map(format_text),
               f"Test AUC, {models}: mean (range)": [
                   format_mean_range(*values)
                   for values in zip(table1["test_auc_mean"], table1["test_auc_min"], table1["test_auc_max"])]}
    for name in ("test", "ood_near", "ood_all"):
        display[f"{SET_NAMES[name]} AUC, ensemble [{level}]"] = [
            format_estimate(*values) for values in zip(table1[f"{name}_auc_ensemble"],
                                                       table1[f"{name}_auc_ensemble_ci_low"],
                                                       table1[f"{name}_auc_ensemble_ci_high"])]
        display[f"{SET_NAMES[name]} n slides (patients)"] = [
            f"{format_count(slides)} ({format_count(patients)})"
            for slides, patients in zip(table1[f"n_{name}"], table1[f"n_{name}_patients"])]
    return pd.DataFrame(display)


def spearman_display(spearman: pd.DataFrame) -> pd.DataFrame:
    """The Spearman table: rho, p and the Benjamini-Hochberg q per trait and set."""
    return pd.DataFrame({
        "Trait": spearman["trait"].map(format_text),
        "Set": spearman["set"].map(lambda name: SET_NAMES.get(name, name)),
        "n": spearman["n"].map(format_count),
        "ρ": spearman["rho"].map(format_number),
        "p": spearman["p_value"].map(format_p),
        "q (BH)": spearman["q_value"].map(format_p),
        "Note": spearman["note"].map(format_text),
    })


def members_display(members: pd.DataFrame) -> pd.DataFrame:
    """Every split model's validation slide AUC and loss, its rank and whether the ensemble uses it."""
    return pd.DataFrame({
        "Trait": members["trait"].map(format_text),
        "Split": members["split"].map(format_count),
        "Best validation slide AUC": members["best_val_slide_auc"].map(format_number),
        "Validation loss at best": members["val_loss_at_best"].map(lambda value: format_number(value, 3)),
        "Rank": members["rank"].map(format_count),
        "Decided by": members["decided_by"].map(lambda value: DECIDED_BY_NAMES.get(value, value)),
        "In ensemble": members["chosen"].map({True: "yes", False: "no"}),
    })


def qc_display(qc: pd.DataFrame) -> pd.DataFrame:
    """The QC table, failed slides first: verdict, resolution, tissue, pen and blur shares and tiles kept."""
    qc = qc.assign(order=(qc["status"] == "pass")).sort_values(["order", "slide_id"], kind="stable")
    names = slide_names(list(qc["slide_id"]))
    return pd.DataFrame({
        "Slide": qc["slide_id"].map(names),
        "Status": qc["status"],
        "Reason": qc["reason"].map(format_text),
        "µm/px": qc["mpp"].map(lambda value: format_number(value, 3)),
        "Objective": qc["objective_power"].map(lambda value: format_number(value, 0)),
        "Size (px)": [f"{format_count(width)} × {format_count(height)}"
                      for width, height in zip(qc["width"], qc["height"])],
        "Tissue": qc["tissue_fraction"].map(format_percent),
        "Pen": qc["pen_fraction"].map(format_percent),
        "Blur": qc["blur_fraction"].map(format_percent),
        "Tiles": qc["n_tiles"].map(format_count),
        "Slide id": qc["slide_id"],
    })


def labels_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Patients (slides) per trait, per set and per label, from labels/summary.tsv."""
    display = {"Trait": summary["trait"].map(format_text)}
    groups = [("All", "")] + [(SET_NAMES[name], f"_{name}") for name in SETS] + [
        (f"Label {value}", f"_label_{value}") for value in (1, 0)]
    for title, suffix in groups:
        if f"patients{suffix}" in summary.columns:
            display[f"{title}: patients (slides)"] = [
                f"{format_count(patients)} ({format_count(slides)})"
                for patients, slides in zip(summary[f"patients{suffix}"], summary[f"slides{suffix}"])]
    return pd.DataFrame(display)


def hti_display(hti: pd.DataFrame) -> pd.DataFrame:
    """HTI and HTA per slide, most heterogeneous first (no HTI last), with each combination's share of tiles."""
    hti = hti.sort_values(["hti", "slide_id"], ascending=[False, True], na_position="last", kind="stable")
    display = {"Slide": hti["slide_id"].map(slide_names(list(hti["slide_id"]))),
               "Positive tiles": hti["n_positive_tiles"].map(format_count),
               "HTI": hti["hti"].map(format_number), "HTA": hti["hta"].map(format_number),
               "HTA p": hti["hta_p"].map(format_p)}
    for column in (name for name in hti.columns if name.startswith("p_")):
        display[f"Share {column[2:]}"] = hti[column].map(lambda value: format_percent(value, 0))
    display["Slide id"] = hti["slide_id"]
    return pd.DataFrame(display)


def qc_note(qc: pd.DataFrame) -> str:
    """The QC page's note: how many slides passed and failed."""
    passed = int((qc["status"] == "pass").sum())
    return (f"{len(qc)} slides: {passed} pass, {len(qc) - passed} fail (failed slides first). Only passing slides "
            "enter labels, training and heterogeneity.")


def build_pages(paths: Mapping[str, str | os.PathLike], ci: float) -> dict[str, Page]:
    """Every report page from the run's tables (paths by page name, as in REPORT_PAGES)."""
    qc, members = read_qc_table(paths["qc"]), read_members(paths["members"])
    hti = read_table(paths["hti"], HTI_COLUMNS)
    level = f"{100 * ci:g}%"
    return {
        "qc": Page("Slide QC", qc_note(qc), qc_display(qc)),
        "labels": Page("Labels per trait", "Patients (slides) per trait, set and label; the OOD sets are used only "
                       "for evaluation.", labels_display(read_table(paths["labels"], SUMMARY_COLUMNS))),
        "table1": Page("Table 1: slide-level AUC", f"Held-out test AUC of each split model (mean, range) and of the "
                       f"ensemble, with {level} bootstrap intervals (patients resampled); OOD reference label = "
                       "above or below the median.",
                       table1_display(read_table1(paths["table1"]), split_models(members), ci)),
        "spearman": Page("Spearman correlation of slide scores with expression", "q = Benjamini-Hochberg over the "
                         "held-out sets of all traits; in-sample rows are outside the family.",
                         spearman_display(read_spearman(paths["spearman"]))),
        "members": Page("Ensemble members", "Split models ranked by best validation slide AUC per trait; the top "
                        "ones form the majority-vote ensemble.", members_display(members)),
        "hti": Page("Heterogeneity per slide", f"{len(hti)} slides, sorted by HTI (highest first); HTA p from "
                    "permutations.", hti_display(hti)),
        "logrank": Page("Log-rank tests of overall survival", "Secondary HTI threshold tests and the bulk "
                        "expression reference, on the HTI survival cohort; no multiple-testing correction.",
                        logrank_display(read_logrank(paths["logrank"]))),
        "cox": Page("Cox models of overall survival", "Primary test: HTI as a continuous covariate (HR per 0.1 "
                    "HTI); adjusted model with age and stage.", cox_display(read_cox(paths["cox"]))),
        "group_tests": Page("HTI by group (Figures 5b and 6)", "Mann-Whitney (2 groups) or Kruskal-Wallis (more) "
                            "test of HTI across groups; one test per panel.",
                            group_tests_display(read_group_tests(paths["group_tests"]))),
    }


REPORT_PAGES: tuple[str, ...] = ("qc", "labels", "table1", "spearman", "members", "hti", "logrank", "cox",
                                 "group_tests")


def write_page(page: Page, name: str, path: str | os.PathLike) -> None:
    """Write one page atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(html_page(page.display, page.title, page.note, table_id=name), encoding="utf-8")


def write_report_tables(inputs: Mapping[str, str | os.PathLike], outputs: Mapping[str, str | os.PathLike],
                        ci: float, log: Callable[[str], None] = print) -> None:
    """Build every page of REPORT_PAGES from the run's tables and write each to its output path."""
    missing = [name for name in REPORT_PAGES if name not in inputs or name not in outputs]
    if missing:
        raise ValueError(f"report tables: no input or output path for {missing}")
    for name, page in build_pages(inputs, ci).items():
        write_page(page, name, outputs[name])
        log(f"{outputs[name]}: {len(page.display)} rows")
