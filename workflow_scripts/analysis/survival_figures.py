"""Survival figures: Kaplan-Meier curves by HTI and, side by side on the same patients, by bulk expression
(Figure 5a), and HTI distributions with group sizes and a rank-test p-value (Figures 5b and 6)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.analysis.cox import Design, fit_design
from workflow_scripts.analysis.group_tests import Panel, group_test
from workflow_scripts.analysis.survival import expression_groups, hti_groups, logrank
from workflow_scripts.common.figures import GROUP_COLOURS, draw_groups, pyplot, save_figure, wrap_label

GROUP_IN = 1.0  # width of one group of a distribution panel: a 12-character name at 8 pt and a margin
MONTH_STEPS = ((120, 12), (240, 24))  # follow-up up to 10 years: yearly ticks; up to 20: every 2 years; else 5


def month_step(max_months: float) -> int:
    """Tick step of a survival time axis in months: 12, or 24 / 60 for long follow-up."""
    return next((step for limit, step in MONTH_STEPS if max_months <= limit), 60)


def month_ticks(max_months: float) -> np.ndarray:
    """Ticks from 0 to the first step at or past the longest follow-up (also where the at-risk counts are given)."""
    step = month_step(max_months)
    return np.arange(0, step * max(1, np.ceil(max_months / step)) + 1, step)


def median_text(months: float) -> str:
    """A Kaplan-Meier median survival time for the panel, 'not reached' when the curve stays above 0.5."""
    return "not reached" if not np.isfinite(months) else f"{months:.1f} mo"


def km_annotation(groups: dict[str, pd.DataFrame]) -> dict:
    """HR (95% CI) of the second group vs the first (univariable Cox of the group indicator), log-rank p, medians."""
    from lifelines import KaplanMeierFitter

    names = [name for name, group in groups.items() if not group.empty]
    medians = {}
    for name in names:
        fitter = KaplanMeierFitter().fit(groups[name]["os_months"], groups[name]["os_event"])
        medians[name] = float(fitter.median_survival_time_)
    result = {"medians": medians, "hr": np.nan, "hr_ci_low": np.nan, "hr_ci_high": np.nan, "p_value": np.nan,
              "note": "needs two non-empty groups", "reference": None, "compared": None}
    if len(groups) != 2 or len(names) != 2:
        return result
    reference, compared = names
    test = logrank(groups[reference], groups[compared])
    frame = pd.concat([groups[reference].assign(group=0), groups[compared].assign(group=1)], ignore_index=True)
    frame = pd.DataFrame({"os_months": pd.to_numeric(frame["os_months"], errors="coerce"),
                          "os_event": pd.to_numeric(frame["os_event"], errors="coerce"), "group": frame["group"]})
    cox = fit_design(Design("km_groups", "figure", frame.dropna(), {"group": f"{compared} vs {reference}"}))[0]
    return result | {"hr": cox["hr"], "hr_ci_low": cox["hr_ci_low"], "hr_ci_high": cox["hr_ci_high"],
                     "p_value": test["p_value"], "note": cox["note"] or test["note"], "reference": reference,
                     "compared": compared}


def km_annotation_text(annotation: dict) -> str:
    """The text box of a Kaplan-Meier panel: hazard ratio with its 95% CI, log-rank p and median survival."""
    lines = []
    if annotation["compared"] is not None and np.isfinite(annotation["hr"]):
        lines.append(f"HR {annotation['hr']:.2f} (95% CI {annotation['hr_ci_low']:.2f}-{annotation['hr_ci_high']:.2f})")
        lines.append(f"  {annotation['compared']} vs {annotation['reference']}")
    elif annotation["note"]:
        lines.append(f"HR n/a: {annotation['note']}")
    if np.isfinite(annotation["p_value"]):
        lines.append(f"log-rank p = {annotation['p_value']:.3g}")
    lines.append("median survival:")
    lines += [f"  {name}: {median_text(months)}" for name, months in annotation["medians"].items()]
    return "\n".join(lines)


def draw_km(axis: object, groups: dict[str, pd.DataFrame], title: str) -> None:
    """Kaplan-Meier curves with 95% CI bands, the at-risk row, yearly ticks, and HR, p and medians beside them."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    fitters, labels = [], []
    for (name, group), colour in zip(groups.items(), GROUP_COLOURS):
        if group.empty:
            continue
        fitter = KaplanMeierFitter(label=f"{name} (n={len(group)}, {int(group['os_event'].sum())} events)")
        fitter.fit(group["os_months"], group["os_event"])
        fitter.plot_survival_function(ax=axis, ci_show=True, color=colour, show_censors=True,
                                      censor_styles={"ms": 5, "marker": "|"})
        fitters.append(fitter)
        labels.append(name)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("survival probability")
    axis.set_title(title, fontsize=9, loc="left")
    if not fitters:
        axis.text(0.5, 0.5, "no patients in any group", ha="center", va="center", transform=axis.transAxes)
        return
    ticks = month_ticks(max(float(fitter.timeline.max()) for fitter in fitters))
    axis.set_xticks(ticks)
    axis.set_xlim(0, ticks[-1])
    axis.set_xlabel("overall survival (months)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    axis.text(1.02, 0.55, km_annotation_text(km_annotation(groups)), transform=axis.transAxes, fontsize=8,
              va="top", ha="left", family="monospace")
    add_at_risk_counts(*fitters, ax=axis, labels=labels, rows_to_show=["At risk"], ypos=-0.3, xticks=ticks)


def plot_km_panels(panels: list[tuple[str, dict[str, pd.DataFrame]]], path: str | os.PathLike) -> None:
    """Several Kaplan-Meier panels side by side in one figure."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(9.5 * len(panels), 5), squeeze=False)
    for axis, (title, groups) in zip(axes[0], panels):
        draw_km(axis, groups, title)
    figure.tight_layout()
    save_figure(figure, path, dpi=120, tight=True)


def plot_km(groups: dict[str, pd.DataFrame], title: str, path: str | os.PathLike) -> None:
    """One Kaplan-Meier panel."""
    plot_km_panels([(title, groups)], path)


def tick_labels(groups: dict[str, np.ndarray]) -> list[str]:
    """Group names with their sizes, e.g. 'LumA\\n(n=12)', so every box shows how many patients it holds."""
    return [f"{wrap_label(name)}\n(n={len(values)})" for name, values in groups.items()]


def panel_title(panel: Panel) -> str:
    """The panel's title with its rank test and p-value (and the patients left out)."""
    result = group_test(panel.groups)
    test = {"mann_whitney_u": "Mann-Whitney", "kruskal_wallis": "Kruskal-Wallis"}.get(result["test"], "")
    stat = f"{test} p = {result['p_value']:.3g}" if test and not np.isnan(result["p_value"]) else result["note"]
    return f"{panel.title}\n{stat}" + (f"; {panel.excluded} unknown excluded" if panel.excluded else "")


def panel_widths(panels: list[Panel]) -> list[float]:
    """Inches per panel: 4, or GROUP_IN a group when more, so wrapped group names never run into each other."""
    return [max(4.0, GROUP_IN * len(panel.groups)) for panel in panels] or [4.0]


def plot_distributions(panels: list[Panel], ylabel: str, path: str | os.PathLike) -> None:
    """Box plots with points of HTI per group for several panels, n per group and the test p (Figures 5b, 6)."""
    plt = pyplot()
    widths = panel_widths(panels)
    figure, axes = plt.subplots(1, len(widths), figsize=(sum(widths), 4.3), squeeze=False,
                                gridspec_kw={"width_ratios": widths})
    rng = np.random.default_rng(0)
    for axis, panel in zip(axes[0], panels):
        if not panel.groups:
            axis.text(0.5, 0.5, "not available", ha="center", va="center", transform=axis.transAxes)
        else:
            values = [np.asarray(group, dtype=float) for group in panel.groups.values()]
            draw_groups(axis, values, [GROUP_COLOURS[0]] * len(values), rng)
            axis.set_xticks(range(len(values)), tick_labels(panel.groups), fontsize=8)
            axis.set_xlim(-0.6, len(values) - 0.4)
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
    """One km_hti_<low>_<high>.png per HTI log-rank row (its p-value is recomputed in the panel's text)."""
    for _, row in logrank[logrank["comparison"] == "hti"].iterrows():
        low_max, high_min = float(row["low_max"]), float(row["high_min"])
        title = f"Overall survival by HTI ({' + '.join(traits)}): > {high_min:g} vs <= {low_max:g}"
        plot_km(hti_km_groups(cohort, low_max, high_min), title,
                directory / f"km_hti_{threshold_name(low_max, high_min)}.png")


def write_expression_figures(
    cohort: pd.DataFrame, labels: pd.DataFrame, logrank: pd.DataFrame, directory: Path
) -> None:
    """Figure 5a: figure5a_<trait>.png, KM by HTI (first threshold pair) beside KM by the trait's bulk expression."""
    hti_row = logrank[logrank["comparison"] == "hti"].iloc[0]
    low_max, high_min = float(hti_row["low_max"]), float(hti_row["high_min"])
    hti_panel = (f"HTI > {high_min:g} vs <= {low_max:g} (n={len(cohort)})",
                 hti_km_groups(cohort, low_max, high_min))
    for _, row in logrank[logrank["comparison"] == "expression_median"].iterrows():
        trait = str(row["traits"])
        low, high = expression_groups(cohort, labels, trait)
        title = f"{trait} bulk expression vs median (n={len(cohort)})"
        plot_km_panels([hti_panel, (title, {f"{trait} below median": low, f"{trait} above median": high})],
                       directory / f"figure5a_{trait}.png")


def write_distribution_figures(panels: list[Panel], directory: Path) -> None:
    """Figure 5b (HTI by each trait's expression) and Figure 6 (HTI by ER status and PAM50 subtype)."""
    plot_distributions([panel for panel in panels if panel.figure == "5b"], "HTI", directory / "figure5b.png")
    plot_distributions([panel for panel in panels if panel.figure == "6"], "HTI", directory / "figure6.png")

