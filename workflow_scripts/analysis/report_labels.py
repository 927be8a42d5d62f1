"""Short slide names and the labels of the report's per-slide items (maps, QC thumbnails), so no long id stands alone.

A TCGA slide id such as ``TCGA-AB-1234-01Z-00-DX1.<UUID>`` is shown as ``TCGA-AB-1234 DX1`` (patient and slide
type with its number: inputs.barcodes.short_slide_name, as in the map titles). Snakemake's report lists items by
their labels and shows only one item per distinct set of labels, so names that would collide (two samples or two
files of one patient's DX1) fall back to the id before its first dot, then to the whole id, until they are unique.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from workflow_scripts.analysis.report_format import format_number
from workflow_scripts.common.tables import read_table
from workflow_scripts.inputs.barcodes import short_slide_name
from workflow_scripts.slides.qc_table import read_qc_table


def slide_names(slide_ids: Sequence[str]) -> dict[str, str]:
    """Short names of many slides, unique: a colliding short name becomes the id before its dot, then the id."""
    names = {slide_id: short_slide_name(slide_id) for slide_id in slide_ids}
    for longer in (lambda slide_id: str(slide_id).split(".")[0], str):
        counts = pd.Series(list(names.values()), dtype=object).value_counts()
        repeated = set(counts[counts > 1].index)
        names = {slide_id: longer(slide_id) if name in repeated else name for slide_id, name in names.items()}
    return names


def named_rows(table: pd.DataFrame) -> pd.DataFrame:
    """A per-slide table (hti.tsv, qc/slides.tsv) indexed by slide id with each slide's short name (column name)."""
    return table.assign(name=table["slide_id"].map(slide_names(list(table["slide_id"])))).set_index("slide_id")


def named_row(slide_id: str, table: pd.DataFrame, what: str) -> pd.Series:
    """One slide's row of a `named_rows` table; an error naming the slide and the table when it has none."""
    if slide_id not in table.index:
        raise ValueError(f"report item of slide {slide_id!r} has no row in {what}")
    return table.loc[slide_id]


def map_labels(slide_id: str, hti: pd.DataFrame) -> dict[str, str]:
    """The report labels of one slide's heterogeneity map: short name, HTI and HTA (hti.tsv as `named_rows`)."""
    row = named_row(slide_id, hti, "hti.tsv")
    return {"slide": str(row["name"]), "HTI": format_number(row["hti"]), "HTA": format_number(row["hta"])}


def thumbnail_labels(slide_id: str, qc: pd.DataFrame) -> dict[str, str]:
    """The report labels of one slide's QC thumbnail: short name and QC verdict (qc/slides.tsv as `named_rows`)."""
    row = named_row(slide_id, qc, "qc/slides.tsv")
    verdict = "pass" if row["status"] == "pass" else f"fail: {row['reason']}"
    return {"slide": str(row["name"]), "QC": verdict}


def survival_figure_place(name: str) -> tuple[str, str]:
    """Subcategory and label of one survival figure (survival/figures/{name}.png), from its file name."""
    if name.startswith("km_hti_"):
        low, _, high = name.removeprefix("km_hti_").partition("_")
        return "Kaplan-Meier", f"HTI ≤ {low} vs > {high}"
    if name.startswith("figure5a_"):
        return "Figure 5a", f"survival by HTI and by {name.removeprefix('figure5a_')} expression"
    titles = {"figure5b": ("Figure 5b", "HTI by expression label"), "figure6": ("Figure 6", "HTI by ER and PAM50")}
    return titles.get(name, ("More figures", name))


def read_named_hti(path: str | os.PathLike) -> pd.DataFrame:
    """hti.tsv (slide_id, hti, hta checked) as `named_rows` gives it, for the labels of the report's maps."""
    return named_rows(read_table(path, ["slide_id", "hti", "hta"]))


def read_named_qc(path: str | os.PathLike) -> pd.DataFrame:
    """qc/slides.tsv as `named_rows` gives it, for the labels of the report's QC thumbnails."""
    return named_rows(read_qc_table(path))
