"""The survival tables (logrank.tsv, cox.tsv, group_tests.tsv) as the report shows them: one readable row per test.

Each builder takes the table as its owner wrote it (analysis.survival, analysis.cox, analysis.group_tests) and
returns the display frame of text cells (report_format's number forms); nothing is recomputed here.
"""

from __future__ import annotations

import os

import pandas as pd

from workflow_scripts.analysis.cox import COX_COLUMNS
from workflow_scripts.analysis.group_tests import GROUP_TEST_COLUMNS
from workflow_scripts.analysis.report_format import (
    format_count,
    format_estimate,
    format_number,
    format_p,
    format_text,
    is_missing,
)
from workflow_scripts.analysis.survival import LOGRANK_COLUMNS
from workflow_scripts.common.tables import read_table

LOGRANK_TEXT = ("comparison", "role", "cohort", "traits", "note")
COX_TEXT = ("model", "role", "covariate", "unit", "exclusions", "note")
GROUP_TEXT = ("figure", "panel", "variable", "test", "groups", "n_per_group", "note")


def read_logrank(path: str | os.PathLike) -> pd.DataFrame:
    """logrank.tsv with its columns (analysis.survival.LOGRANK_COLUMNS) checked."""
    return read_table(path, LOGRANK_COLUMNS, text=LOGRANK_TEXT)


def read_cox(path: str | os.PathLike) -> pd.DataFrame:
    """cox.tsv with its columns (analysis.cox.COX_COLUMNS) checked."""
    return read_table(path, COX_COLUMNS, text=COX_TEXT)


def read_group_tests(path: str | os.PathLike) -> pd.DataFrame:
    """group_tests.tsv with its columns (analysis.group_tests.GROUP_TEST_COLUMNS) checked."""
    return read_table(path, GROUP_TEST_COLUMNS, text=GROUP_TEXT)


def logrank_groups(row: pd.Series) -> str:
    """How a log-rank row split the patients: the HTI thresholds, or the trait's median expression."""
    if row["comparison"] == "hti":
        return f"HTI ≤ {format_number(row['low_max'])} vs > {format_number(row['high_min'])}"
    return f"{row['traits']} expression below vs above median ({format_number(row['expression_median'], 3)})"


def logrank_display(logrank: pd.DataFrame) -> pd.DataFrame:
    """The log-rank table: groups, patients and events per group, the test statistic and p."""
    return pd.DataFrame({
        "Comparison": [logrank_groups(row) for _, row in logrank.iterrows()],
        "Role": logrank["role"].map(format_text),
        "Traits": logrank["traits"].map(format_text),
        "n low / high": [f"{format_count(low)} / {format_count(high)}"
                         for low, high in zip(logrank["n_low"], logrank["n_high"])],
        "Events low / high": [f"{format_count(low)} / {format_count(high)}"
                              for low, high in zip(logrank["events_low"], logrank["events_high"])],
        "χ²": logrank["test_statistic"].map(format_number),
        "p": logrank["p_value"].map(format_p),
        "Note": logrank["note"].map(format_text),
    })


def cox_display(cox: pd.DataFrame) -> pd.DataFrame:
    """The Cox table: hazard ratio with its 95% CI, p, the patients used and the model checks."""
    return pd.DataFrame({
        "Model": cox["model"].map(format_text),
        "Role": cox["role"].map(format_text),
        "Covariate": cox["covariate"].map(format_text),
        "Unit": cox["unit"].map(format_text),
        "HR [95% CI]": [format_estimate(hr, low, high)
                        for hr, low, high in zip(cox["hr"], cox["hr_ci_low"], cox["hr_ci_high"])],
        "p": cox["p"].map(format_p),
        "n": cox["n"].map(format_count),
        "Events": cox["events"].map(format_count),
        "Excluded": [format_count(n) if is_missing(why) else f"{format_count(n)} ({why})"
                     for n, why in zip(cox["excluded"], cox["exclusions"])],
        "C-index": cox["concordance"].map(format_number),
        "PH test p": cox["ph_p"].map(format_p),
        "Note": cox["note"].map(format_text),
    })


def group_sizes(groups: object, sizes: object) -> str:
    """The groups of one panel with their sizes, e.g. negative (n=12); positive (n=30)."""
    if is_missing(groups):
        return "–"
    names, counts = str(groups).split(";"), str(sizes).split(";")
    if len(names) != len(counts):
        raise ValueError(f"group_tests.tsv: groups {groups!r} and n_per_group {sizes!r} differ in length")
    return "; ".join(f"{name} (n={format_count(count)})" for name, count in zip(names, counts))


def group_tests_display(tests: pd.DataFrame) -> pd.DataFrame:
    """The HTI-by-group tests (Figures 5b and 6): groups with their sizes, test, statistic and p."""
    return pd.DataFrame({
        "Figure": tests["figure"].map(format_text),
        "Panel": tests["panel"].map(format_text),
        "Groups": [group_sizes(groups, sizes) for groups, sizes in zip(tests["groups"], tests["n_per_group"])],
        "Excluded": tests["excluded"].map(format_count),
        "Test": tests["test"].map(format_text),
        "Statistic": tests["statistic"].map(format_number),
        "p": tests["p_value"].map(format_p),
        "Note": tests["note"].map(format_text),
    })
