"""Survival analysis of the heterogeneity index: the cohort, its censoring and the log-rank tests (Figure 5a).

Cohort ("hti_survival"): one slide per patient (DX1, else the lowest DX number, else the first slide id), patients
that no chosen model was trained on: held-out test patients plus patients that are OOD (set ood_near or ood_far)
for every chosen trait, with overall survival in the clinical table and a defined HTI (a slide without positive
tiles has none). Switches (SurvivalSettings): drop_zero_hti leaves out HTI = 0 patients (the authors' code);
max_months censors administratively at the cap, time = min(t, cap) and event = 0 where t > cap (the authors'
code used 120). Groups by HTI: low = HTI <= low_max, high = HTI > high_min; every configured threshold pair is a
secondary analysis (no multiple-testing correction), the continuous-HTI Cox model (analysis.cox) the primary one.
Figure 5a: on the same patients, low vs high bulk expression of each chosen trait by its reference label
(median_label: value above the median of the trait's labelled cohort). Degenerate comparisons (an empty group,
no event) are written as NaN with a `note`, never raised.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workflow_scripts.inputs.barcodes import parse_barcode

COHORT_NAME = "hti_survival"
CHOOSE_BY = ("test_auc", "validation_auc")
LOGRANK_COLUMNS = [
    "comparison", "role", "cohort", "traits", "low_max", "high_min", "expression_median", "n_low", "n_high",
    "events_low", "events_high", "test_statistic", "p_value", "note",
]


@dataclass(frozen=True)
class SurvivalSettings:
    """The `survival:` config block: HTI threshold pairs, the censoring cap and whether HTI = 0 patients count."""

    thresholds: tuple[tuple[float, float], ...] = ((0.5, 0.5), (0.3, 0.7))
    max_months: float | None = None
    drop_zero_hti: bool = False

    def __post_init__(self) -> None:
        """Reject threshold pairs whose high group starts below the low group, and a cap that is not positive."""
        for low_max, high_min in self.thresholds:
            if high_min < low_max:
                raise ValueError(f"survival threshold high_min {high_min} is below low_max {low_max}")
        if self.max_months is not None and not self.max_months > 0:
            raise ValueError(f"survival.max_months must be > 0 or null, got {self.max_months}")

    @classmethod
    def from_config(cls, config: Mapping) -> SurvivalSettings:
        """Build the settings from the `survival:` config block, rejecting unknown keys."""
        unknown = set(config) - {"thresholds", "max_months", "drop_zero_hti"}
        if unknown:
            raise ValueError(f"survival: unknown setting(s) {sorted(unknown)}")
        thresholds = config.get("thresholds", [{"low_max": 0.5, "high_min": 0.5}, {"low_max": 0.3, "high_min": 0.7}])
        max_months = config.get("max_months")
        return cls(tuple((float(pair["low_max"]), float(pair["high_min"])) for pair in thresholds),
                   None if max_months is None else float(max_months), bool(config.get("drop_zero_hti", False)))


def table1_test_aucs(table1: pd.DataFrame) -> dict[str, float]:
    """Each trait's ensemble test AUC from table1 (the paper's choice; NaN when undefined)."""
    return dict(zip(table1["trait"].astype(str), pd.to_numeric(table1["test_auc_ensemble"], errors="coerce")))


def validation_scores(members: pd.DataFrame) -> dict[str, float]:
    """Each trait's mean best validation slide AUC over its chosen ensemble members (NaN when none is defined)."""
    chosen = members[members["chosen"].astype(bool)]
    means = chosen.groupby(chosen["trait"].astype(str))["best_val_slide_auc"].mean()
    return {str(trait): float(means.get(trait, np.nan)) for trait in members["trait"].astype(str).unique()}


def choose_by_score(scores: Mapping[str, float], traits: list[str] | None = None, n: int = 2) -> list[str]:
    """The configured traits (checked against the scored ones), else the n best scores (NaN last, then by name)."""
    known = list(scores)
    if traits:
        missing = [trait for trait in traits if trait not in known]
        if missing:
            raise ValueError(f"configured heterogeneity traits {missing} are not in table1 (has {known})")
        chosen = list(traits)
    else:
        ranked = sorted(known, key=lambda trait: (math.isnan(scores[trait]), -np.nan_to_num(scores[trait]), trait))
        chosen = ranked[:n]
    if len(chosen) < 2:
        raise ValueError(f"heterogeneity needs at least 2 traits, got {chosen}")
    return chosen


def slide_rank(slide_id: str) -> tuple[int, int, str]:
    """Sort key preferring diagnostic slides by DX number (DX1 first), then other slides by id."""
    barcode_text = slide_id.split(".", 1)[0]
    try:
        barcode = parse_barcode(barcode_text)
    except ValueError:
        match = re.search(r"DX(\d+)", barcode_text)
        return (0, int(match.group(1)), slide_id) if match else (1, 0, slide_id)
    if barcode.slide_type == "DX" and barcode.slide_number is not None:
        return (0, barcode.slide_number, slide_id)
    return (1, 0, slide_id)


def one_slide_per_patient(table: pd.DataFrame) -> pd.DataFrame:
    """Keep each patient's preferred slide (DX1, else lowest DX number, else first slide id)."""
    if table.empty:
        return table.copy()
    ranks = table["slide_id"].astype(str).map(slide_rank)
    ordered = table.assign(_rank=ranks).sort_values(["patient_id", "_rank"], kind="mergesort")
    return ordered.drop_duplicates("patient_id", keep="first").drop(columns="_rank").reset_index(drop=True)


def survival_patients(labels: pd.DataFrame, held_out: set[str], traits: list[str]) -> set[str]:
    """Patients unseen by every chosen model: held-out test patients plus patients OOD for all chosen traits."""
    ood_for_all: set[str] | None = None
    for trait in traits:
        rows = labels[labels["trait"] == trait]
        if rows.empty:
            raise ValueError(f"no labels for heterogeneity trait {trait}")
        ood = set(rows.loc[rows["set"].astype(str).isin(["ood_near", "ood_far"]), "patient_id"].astype(str))
        ood_for_all = ood if ood_for_all is None else ood_for_all & ood
    return set(held_out) | (ood_for_all or set())


def survival_cohort(hti_table: pd.DataFrame, clinical: pd.DataFrame, patients: set[str]) -> pd.DataFrame:
    """One row per selected patient: HTI of the preferred slide joined with overall survival and covariates."""
    chosen = one_slide_per_patient(hti_table[hti_table["patient_id"].astype(str).isin(patients)])
    cohort = chosen.merge(clinical, on="patient_id", how="inner")
    cohort["os_months"] = pd.to_numeric(cohort["os_months"], errors="coerce")
    cohort["os_event"] = pd.to_numeric(cohort["os_event"], errors="coerce")
    cohort["hti"] = pd.to_numeric(cohort["hti"], errors="coerce")
    cohort = cohort.dropna(subset=["os_months", "os_event"])
    return cohort[cohort["os_months"] >= 0].reset_index(drop=True)


def analysis_cohort(
    cohort: pd.DataFrame, settings: SurvivalSettings, log: logging.Logger | None = None
) -> pd.DataFrame:
    """The HTI survival cohort: patients with an HTI, without HTI = 0 if told so, censored at max_months if set."""
    log = log or logging.getLogger(__name__)
    missing = cohort["hti"].isna()
    if missing.any():
        log.info("survival: %d patient(s) without an HTI (no positive tile) left out", int(missing.sum()))
    cohort = cohort[~missing]
    if settings.drop_zero_hti:
        cohort, dropped = drop_zero_hti(cohort)
        log.info("survival: drop_zero_hti left out %d patient(s) with HTI = 0: %s", len(dropped), dropped[:20])
    if settings.max_months is not None:
        over = int((cohort["os_months"] > settings.max_months).sum())
        cohort = censor_at(cohort, settings.max_months)
        log.info("survival: %d patient(s) censored at max_months = %g", over, settings.max_months)
    return cohort.reset_index(drop=True)


def drop_zero_hti(cohort: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Leave out patients whose HTI is exactly 0 (the authors' code did); returns the rest and the dropped ids."""
    zero = cohort["hti"] == 0
    return cohort[~zero].reset_index(drop=True), cohort.loc[zero, "patient_id"].astype(str).tolist()


def censor_at(cohort: pd.DataFrame, max_months: float) -> pd.DataFrame:
    """Administrative censoring at the cap: time = min(t, cap), event = 0 where t > cap (t = cap keeps its event)."""
    over = cohort["os_months"] > max_months
    return cohort.assign(os_months=cohort["os_months"].clip(upper=max_months),
                         os_event=cohort["os_event"].where(~over, 0).astype(int))


def hti_groups(cohort: pd.DataFrame, low_max: float, high_min: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patients with HTI <= low_max and with HTI > high_min (NaN HTI in neither)."""
    return cohort[cohort["hti"] <= low_max], cohort[cohort["hti"] > high_min]


def logrank(low: pd.DataFrame, high: pd.DataFrame) -> dict:
    """Log-rank test of two groups with counts; NaN and a note when a group is empty or there is no event."""
    from lifelines.statistics import logrank_test

    row = {
        "n_low": len(low), "n_high": len(high),
        "events_low": int(low["os_event"].sum()), "events_high": int(high["os_event"].sum()),
        "test_statistic": float("nan"), "p_value": float("nan"), "note": "",
    }
    if len(low) == 0 or len(high) == 0:
        row["note"] = "a group is empty"
    elif row["events_low"] + row["events_high"] == 0:
        row["note"] = "no events"
    else:
        result = logrank_test(low["os_months"], high["os_months"], low["os_event"], high["os_event"])
        row["test_statistic"], row["p_value"] = float(result.test_statistic), float(result.p_value)
    return row


def logrank_table(cohort: pd.DataFrame, traits: list[str], thresholds: list[tuple[float, float]]) -> pd.DataFrame:
    """Log-rank of high vs low HTI for every threshold pair (secondary analyses of the HTI survival cohort)."""
    rows = []
    for low_max, high_min in thresholds:
        if high_min < low_max:
            raise ValueError(f"survival threshold high_min {high_min} is below low_max {low_max}")
        low, high = hti_groups(cohort, low_max, high_min)
        row = {"comparison": "hti", "role": "secondary", "cohort": COHORT_NAME, "traits": "+".join(traits),
               "low_max": low_max, "high_min": high_min, "expression_median": np.nan}
        rows.append(row | logrank(low, high))
    return pd.DataFrame(rows, columns=LOGRANK_COLUMNS)


def expression_groups(cohort: pd.DataFrame, labels: pd.DataFrame, trait: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cohort's patients below (median_label 0) and above (1) the median bulk expression of one trait."""
    rows = labels.loc[labels["trait"] == trait, ["patient_id", "median_label"]]
    labelled = cohort.merge(rows, on="patient_id", how="left")
    label = pd.to_numeric(labelled["median_label"], errors="coerce")
    return labelled[label == 0], labelled[label == 1]


def expression_logrank(cohort: pd.DataFrame, labels: pd.DataFrame, trait: str) -> dict:
    """Figure 5a: log-rank of high vs low bulk expression of one trait on exactly the HTI survival cohort."""
    low, high = expression_groups(cohort, labels, trait)
    values = pd.to_numeric(labels.loc[labels["trait"] == trait, "value"], errors="coerce").dropna()
    row = {"comparison": "expression_median", "role": "reference", "cohort": COHORT_NAME, "traits": trait,
           "low_max": np.nan, "high_min": np.nan,
           "expression_median": float(np.median(values)) if len(values) else np.nan}
    result = row | logrank(low, high)
    unlabelled = len(cohort) - len(low) - len(high)
    if unlabelled:
        result["note"] = "; ".join(filter(None, [result["note"], f"{unlabelled} patient(s) without a {trait} label"]))
    return result


def expression_columns(cohort: pd.DataFrame, labels: pd.DataFrame, traits: list[str]) -> pd.DataFrame:
    """The cohort with each trait's bulk expression value and reference label (expression_<t>, median_label_<t>)."""
    for trait in traits:
        rows = labels.loc[labels["trait"] == trait, ["patient_id", "value", "median_label"]].rename(
            columns={"value": f"expression_{trait}", "median_label": f"median_label_{trait}"})
        cohort = cohort.merge(rows, on="patient_id", how="left")
    return cohort
