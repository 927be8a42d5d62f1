"""Survival figures: Kaplan-Meier curves by HTI and, side by side on the same patients, by bulk expression
(Figure 5a), and HTI distributions with group sizes and a rank-test p-value (Figures 5b and 6)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.analysis.group_tests import Panel, group_test
from workflow_scripts.analysis.survival import expression_groups, hti_groups
from workflow_scripts.common.figures import pyplot, save_figure


def draw_km(axis: object, groups: dict[str, pd.DataFrame], title: str) -> None:
    """Kaplan-Meier curves with 95% CI bands and numbers at risk for named groups (empty groups are skipped)."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    fitters = []
    for name, group in groups.items():
        if group.empty:
            continue
        fitter = KaplanMeierFitter(label=f"{name} (n={len(group)})")
        fitter.fit(group["os_months"], group["os_event"])
        fitter.plot_survival_function(ax=axis, ci_show=True)
        fitters.append(fitter)
    if fitters:
        add_at_risk_counts(*fitters, ax=axis)
    else:
        axis.text(0.5, 0.5, "no patients in any group", ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel("overall survival (months)")
    axis.set_ylabel("survival probability")
    axis.set_ylim(0, 1.05)
    axis.set_title(title, fontsize=9)


def plot_km_panels(panels: list[tuple[str, dict[str, pd.DataFrame]]], path: str | os.PathLike) -> None:
    """Several Kaplan-Meier panels side by side in one figure."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for axis, (title, groups) in zip(axes[0], panels):
        draw_km(axis, groups, title)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def plot_km(groups: dict[str, pd.DataFrame], title: str, path: str | os.PathLike) -> None:
    """One Kaplan-Meier panel."""
    plot_km_panels([(title, groups)], path)


def tick_labels(groups: dict[str, np.ndarray]) -> list[str]:
    """Group names with their sizes, e.g. 'LumA\\n(n=12)', so every box shows how many patients it holds."""
    return [f"{name}\n(n={len(values)})" for name, values in groups.items()]


def panel_title(panel: Panel) -> str:
    """The panel's title with its rank test and p-value (and the patients left out)."""
    result = group_test(panel.groups)
    test = {"mann_whitney_u": "Mann-Whitney", "kruskal_wallis": "Kruskal-Wallis"}.get(result["test"], "")
    stat = f"{test} p = {result['p_value']:.3g}" if test and not np.isnan(result["p_value"]) else result["note"]
    return f"{panel.title}\n{stat}" + (f"; {panel.excluded} unknown excluded" if panel.excluded else "")


def plot_distributions(panels: list[Panel], ylabel: str, path: str | os.PathLike) -> None:
    """Box plots with points of HTI per group for several panels, n per group and the test p (Figures 5b, 6)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(4 * max(len(panels), 1), 4.3), squeeze=False)
    rng = np.random.default_rng(0)
    for axis, panel in zip(axes[0], panels):
        if not panel.groups:
            axis.text(0.5, 0.5, "not available", ha="center", va="center", transform=axis.transAxes)
        else:
            values = [np.asarray(group, dtype=float) for group in panel.groups.values()]
            axis.boxplot(values, positions=range(len(values)), widths=0.5, showfliers=False)
            for position, points in enumerate(values):
                axis.scatter(position + rng.uniform(-0.12, 0.12, points.size), points, s=10, alpha=0.7)
            axis.set_xticks(range(len(values)), tick_labels(panel.groups), fontsize=8)
        axis.set_title(panel_title(panel), fontsize=9)
        axis.set_ylabel(ylabel)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def threshold_name(low_max: float, high_min: float) -> str:
    """File-name part for a threshold pair, e.g. km_hti_0.3_0.7.png."""
    return f"{low_max:g}_{high_min:g}"


def hti_km_groups(cohort: pd.DataFrame, low_max: float, high_min: float) -> dict[str, pd.DataFrame]:
    """The low and high HTI groups of one threshold pair, named for the legend."""
    low, high = hti_groups(cohort, low_max, high_min)
    return {f"HTI <= {low_max:g}": low, f"HTI > {high_min:g}": high}


def write_km_figures(cohort: pd.DataFrame, logrank: pd.DataFrame, traits: list[str], directory: Path) -> None:
    """One km_hti_<low>_<high>.png per HTI log-rank row, titled with its p-value."""
    for _, row in logrank[logrank["comparison"] == "hti"].iterrows():
        low_max, high_min = float(row["low_max"]), float(row["high_min"])
        title = f"HTI ({' + '.join(traits)}): > {high_min:g} vs <= {low_max:g}, log-rank p = {row['p_value']:.3g}"
        plot_km(hti_km_groups(cohort, low_max, high_min), title,
                directory / f"km_hti_{threshold_name(low_max, high_min)}.png")


def write_expression_figures(
    cohort: pd.DataFrame, labels: pd.DataFrame, logrank: pd.DataFrame, directory: Path
) -> None:
    """Figure 5a: figure5a_<trait>.png, KM by HTI (first threshold pair) beside KM by the trait's bulk expression."""
    hti_row = logrank[logrank["comparison"] == "hti"].iloc[0]
    low_max, high_min = float(hti_row["low_max"]), float(hti_row["high_min"])
    hti_panel = (f"HTI > {high_min:g} vs <= {low_max:g} (n={len(cohort)}), log-rank p = {hti_row['p_value']:.3g}",
                 hti_km_groups(cohort, low_max, high_min))
    for _, row in logrank[logrank["comparison"] == "expression_median"].iterrows():
        trait = str(row["traits"])
        low, high = expression_groups(cohort, labels, trait)
        title = f"{trait} bulk expression vs median (n={len(cohort)}), log-rank p = {row['p_value']:.3g}"
        plot_km_panels([hti_panel, (title, {f"{trait} below median": low, f"{trait} above median": high})],
                       directory / f"figure5a_{trait}.png")


def write_distribution_figures(panels: list[Panel], directory: Path) -> None:
    """Figure 5b (HTI by each trait's expression) and Figure 6 (HTI by ER status and PAM50 subtype)."""
    plot_distributions([panel for panel in panels if panel.figure == "5b"], "HTI", directory / "figure5b.png")
    plot_distributions([panel for panel in panels if panel.figure == "6"], "HTI", directory / "figure6.png")

