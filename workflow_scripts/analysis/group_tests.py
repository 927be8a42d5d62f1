"""HTI by group (paper Figures 5b and 6): the groups, their sizes and a rank test of whether HTI differs.

Panels: Figure 5b splits the survival cohort by each chosen trait's bulk expression reference label (median_label
of the labels table: above or below the median expression of the trait's labelled cohort); Figure 6 by ER status
(positive vs negative only: unknown, '' in clinical.tsv, and indeterminate are excluded and counted) and by PAM50
subtype (every non-empty subtype; unknown excluded and counted). Test: two-sided Mann-Whitney U for 2 groups,
Kruskal-Wallis H for more (scipy.stats); fewer than 2 non-empty groups or all values tied give NaN and a `note`.
Rows of survival/group_tests.tsv (GROUP_TEST_COLUMNS): `groups` and `n_per_group` list the groups in the panel's
order, separated by ';' (for the expression panels: below median;above median, i.e. n_low;n_high).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import kruskal, mannwhitneyu

GROUP_TEST_COLUMNS = [
    "figure", "panel", "variable", "test", "groups", "n_per_group", "excluded", "statistic", "p_value", "note",
]
EXPRESSION_GROUPS = {0: "below median", 1: "above median"}
ER_GROUPS = ("negative", "positive")


@dataclass(frozen=True)
class Panel:
    """One distribution panel: HTI values per group, in display order, and the patients left out."""

    figure: str
    title: str
    variable: str
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    excluded: int = 0


def category_groups(
    cohort: pd.DataFrame, column: str, keep: tuple[str, ...] | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """HTI per category of a column (sorted, or in `keep` order) and how many patients with an HTI were left out."""
    with_hti = cohort.dropna(subset=["hti"]) if "hti" in cohort else cohort.iloc[:0]
    if column not in cohort.columns:
        return {}, len(with_hti)
    text = with_hti[column].map(lambda value: "" if pd.isna(value) else str(value).strip())
    names = list(keep) if keep is not None else sorted(set(text) - {""})
    groups = {name: with_hti.loc[text == name, "hti"].to_numpy(float) for name in names}
    groups = {name: values for name, values in groups.items() if len(values)}
    return groups, len(with_hti) - sum(len(values) for values in groups.values())


def group_test(groups: dict[str, np.ndarray]) -> dict:
    """Mann-Whitney U (2 groups) or Kruskal-Wallis H (more) of HTI across groups; NaN and a note when undefined."""
    values = [np.asarray(group, float) for group in groups.values() if len(group)]
    row = {"test": "", "statistic": float("nan"), "p_value": float("nan"), "note": ""}
    if len(values) < 2:
        return row | {"note": f"{len(values)} non-empty group(s); a test needs 2"}
    row["test"] = "mann_whitney_u" if len(values) == 2 else "kruskal_wallis"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns, and returns NaN, when every value is tied
        result = mannwhitneyu(*values, alternative="two-sided") if len(values) == 2 else kruskal(*values)
    if np.isnan(result.pvalue) or np.ptp(np.concatenate(values)) == 0:
        return row | {"note": "all HTI values are tied"}
    return row | {"statistic": float(result.statistic), "p_value": float(result.pvalue)}


def expression_panels(cohort: pd.DataFrame, labels: pd.DataFrame, traits: list[str]) -> list[Panel]:
    """Figure 5b panels: HTI of the cohort split by each trait's expression reference label (below/above median)."""
    panels = []
    for trait in traits:
        rows = labels.loc[labels["trait"] == trait, ["patient_id", "median_label"]]
        labelled = cohort.merge(rows, on="patient_id", how="left")
        labelled["expression"] = pd.to_numeric(labelled["median_label"], errors="coerce").map(EXPRESSION_GROUPS)
        groups, excluded = category_groups(labelled, "expression", tuple(EXPRESSION_GROUPS.values()))
        panels.append(Panel("5b", f"HTI by {trait} expression", f"{trait} median_label", groups, excluded))
    return panels


def clinical_panels(cohort: pd.DataFrame) -> list[Panel]:
    """Figure 6 panels: HTI by ER status (negative vs positive) and by PAM50 subtype."""
    er = cohort.assign(er_status=cohort["er_status"].astype(str).str.lower()) if "er_status" in cohort else cohort
    er_groups, er_excluded = category_groups(er, "er_status", ER_GROUPS)
    subtype_groups, subtype_excluded = category_groups(cohort, "subtype")
    return [Panel("6", "HTI by ER status", "er_status", er_groups, er_excluded),
            Panel("6", "HTI by PAM50 subtype", "subtype", subtype_groups, subtype_excluded)]


def distribution_panels(cohort: pd.DataFrame, labels: pd.DataFrame, traits: list[str]) -> list[Panel]:
    """The panels of Figures 5b and 6, in that order."""
    return [*expression_panels(cohort, labels, traits), *clinical_panels(cohort)]


def group_test_table(panels: list[Panel]) -> pd.DataFrame:
    """One row per panel: its groups, their sizes, the patients left out and the rank test."""
    rows = [
        {"figure": panel.figure, "panel": panel.title, "variable": panel.variable,
         "groups": ";".join(panel.groups), "n_per_group": ";".join(str(len(v)) for v in panel.groups.values()),
         "excluded": panel.excluded} | group_test(panel.groups)
        for panel in panels
    ]
    return pd.DataFrame(rows, columns=GROUP_TEST_COLUMNS)
