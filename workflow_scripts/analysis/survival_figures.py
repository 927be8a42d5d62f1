"""Survival figures: Kaplan-Meier curves by HTI and by bulk expression (Figure 5a), HTI distributions (5b, 6)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.analysis.survival import clinical_panels, expression_panels, hti_groups
from workflow_scripts.common.figures import pyplot, save_figure


def plot_km(groups: dict[str, pd.DataFrame], title: str, path: str | os.PathLike) -> None:
    """Kaplan-Meier curves with 95% CI bands and numbers at risk for named groups (empty groups are skipped)."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 5))
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
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def plot_distributions(
    panels: list[tuple[str, dict[str, np.ndarray]]], ylabel: str, path: str | os.PathLike
) -> None:
    """Box plots with points of HTI per category for several panels (Figures 5b and 6)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(4 * max(len(panels), 1), 4), squeeze=False)
    rng = np.random.default_rng(0)
    for axis, (title, groups) in zip(axes[0], panels):
        names = [name for name, values in groups.items() if len(values)]
        if not names:
            axis.text(0.5, 0.5, "not available", ha="center", va="center", transform=axis.transAxes)
        else:
            values = [np.asarray(groups[name], dtype=float) for name in names]
            axis.boxplot(values, positions=range(len(names)), widths=0.5, showfliers=False)
            for position, points in enumerate(values):
                axis.scatter(position + rng.uniform(-0.12, 0.12, points.size), points, s=10, alpha=0.7)
            axis.set_xticks(range(len(names)), [f"{name}\n(n={len(groups[name])})" for name in names], fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.set_ylabel(ylabel)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def threshold_name(low_max: float, high_min: float) -> str:
    """File-name part for a threshold pair, e.g. km_hti_0.3_0.7.png."""
    return f"{low_max:g}_{high_min:g}"


def write_km_figures(
    cohort: pd.DataFrame, logrank: pd.DataFrame, traits: list[str], thresholds: list[dict], directory: Path
) -> None:
    """One km_hti_<low>_<high>.png per threshold pair, titled with its log-rank p-value."""
    for threshold in thresholds:
        low_max, high_min = float(threshold["low_max"]), float(threshold["high_min"])
        low, high = hti_groups(cohort, low_max, high_min)
        row = logrank[(logrank["low_max"] == low_max) & (logrank["high_min"] == high_min)].iloc[0]
        title = f"HTI ({' + '.join(traits)}): > {high_min:g} vs <= {low_max:g}, log-rank p = {row['p_value']:.3g}"
        plot_km({f"HTI <= {low_max:g}": low, f"HTI > {high_min:g}": high}, title,
                directory / f"km_hti_{threshold_name(low_max, high_min)}.png")


def write_expression_figures(expressions: dict[str, pd.DataFrame], results: list[dict], directory: Path) -> None:
    """Figure 5a: one figure5a_<trait>.png of survival by bulk expression label per trait."""
    for (trait, expression), result in zip(expressions.items(), results, strict=True):
        groups = {f"{trait} low": expression[expression["label"] == 0],
                  f"{trait} high": expression[expression["label"] == 1]}
        plot_km(groups, f"{trait} bulk expression label, log-rank p = {result['p_value']:.3g}",
                directory / f"figure5a_{trait}.png")


def write_distribution_figures(cohort: pd.DataFrame, labels: pd.DataFrame, traits: list[str], directory: Path) -> None:
    """Figure 5b (HTI by each trait's expression) and Figure 6 (HTI by ER status and PAM50 subtype)."""
    plot_distributions(expression_panels(cohort, labels, traits), "HTI", directory / "figure5b.png")
    plot_distributions(clinical_panels(cohort), "HTI", directory / "figure6.png")
