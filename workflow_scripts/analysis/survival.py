"""Survival analysis of the heterogeneity index: Kaplan-Meier, log-rank and Cox models (paper Figures 5 and 6).

Cohort: one slide per patient (DX1, else the lowest DX number, else the first slide id), patients that no chosen
model was trained on: held-out test patients plus patients that are OOD (set ood_near or ood_far) for every chosen
trait, with overall survival in the clinical table.  Groups by HTI: low = HTI <= low_max, high = HTI > high_min.
Degenerate comparisons (an empty group, no event, a failed fit) are written as NaN with a `note`, never raised.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from workflow_scripts.inputs.barcodes import parse_barcode

LOGRANK_COLUMNS = [
    "comparison", "traits", "low_max", "high_min", "n_low", "n_high", "events_low", "events_high",
    "test_statistic", "p_value", "note",
]
COX_COLUMNS = ["model", "covariate", "coef", "hr", "hr_ci_low", "hr_ci_high", "p", "n", "events", "note"]


def choose_traits(table1: pd.DataFrame, traits: list[str] | None = None, n: int = 2) -> list[str]:
    """Traits for heterogeneity: the configured list, else the n best by ensemble test AUC (NaN last, then name)."""
    known = table1["trait"].astype(str).tolist()
    if traits:
        missing = [trait for trait in traits if trait not in known]
        if missing:
            raise ValueError(f"configured heterogeneity traits {missing} are not in table1 (has {known})")
        chosen = list(traits)
    else:
        ranked = table1.assign(_auc=pd.to_numeric(table1["test_auc_ensemble"], errors="coerce"))
        ranked = ranked.assign(_missing=ranked["_auc"].isna()).sort_values(
            ["_missing", "_auc", "trait"], ascending=[True, False, True], kind="mergesort"
        )
        chosen = ranked["trait"].astype(str).head(n).tolist()
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


def logrank_table(cohort: pd.DataFrame, traits: list[str], thresholds: list[dict]) -> pd.DataFrame:
    """Log-rank of high vs low HTI for every threshold pair."""
    rows = []
    for threshold in thresholds:
        low_max, high_min = float(threshold["low_max"]), float(threshold["high_min"])
        if high_min < low_max:
            raise ValueError(f"survival threshold high_min {high_min} is below low_max {low_max}")
        low, high = hti_groups(cohort, low_max, high_min)
        row = {"comparison": "hti", "traits": "+".join(traits), "low_max": low_max, "high_min": high_min}
        rows.append(row | logrank(low, high))
    return pd.DataFrame(rows, columns=LOGRANK_COLUMNS)


def expression_logrank(cohort: pd.DataFrame, trait: str) -> dict:
    """Log-rank of bulk high (label 1) vs low (label 0) expression of one trait (Figure 5a)."""
    low, high = cohort[cohort["label"] == 0], cohort[cohort["label"] == 1]
    row = {"comparison": "expression_label", "traits": trait, "low_max": np.nan, "high_min": np.nan}
    return row | logrank(low, high)


def expression_cohort(labels: pd.DataFrame, clinical: pd.DataFrame, trait: str) -> pd.DataFrame:
    """Patients with a 0/1 bulk label for one trait and overall survival."""
    rows = labels[labels["trait"] == trait][["patient_id", "label"]]
    rows = rows.assign(label=pd.to_numeric(rows["label"], errors="coerce")).dropna(subset=["label"])
    cohort = rows.merge(clinical, on="patient_id", how="inner")
    cohort["os_months"] = pd.to_numeric(cohort["os_months"], errors="coerce")
    cohort["os_event"] = pd.to_numeric(cohort["os_event"], errors="coerce")
    return cohort.dropna(subset=["os_months", "os_event"]).reset_index(drop=True)


def stage_number(value: object) -> float:
    """Numeric stage (I=1 ... IV=4) from values like 'Stage IIA', 'III' or 2; NaN when unknown."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return float("nan")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    match = re.match(r"^(?:stage\s*)?(IV|III|II|I|[1-4])(?:[A-C]\d?)?$", str(value).strip(), re.IGNORECASE)
    if not match:
        return float("nan")
    token = match.group(1).upper()
    return float({"I": 1, "II": 2, "III": 3, "IV": 4}.get(token) or token)


def cox_models(cohort: pd.DataFrame) -> pd.DataFrame:
    """Cox PH of HTI alone and adjusted for age and stage where those are present (NaN rows with a note if not)."""
    data = cohort.assign(
        age=pd.to_numeric(cohort.get("age", pd.Series(np.nan, index=cohort.index)), errors="coerce"),
        stage=cohort.get("stage", pd.Series(np.nan, index=cohort.index)).map(stage_number),
    )
    rows = _cox_rows("hti", data, ["hti"])
    adjusters = [name for name in ("age", "stage") if data[name].notna().any() and data[name].nunique() > 1]
    if adjusters:
        rows += _cox_rows("hti+" + "+".join(adjusters), data, ["hti", *adjusters])
    else:
        rows.append(_failed_row("hti+age+stage", "hti", 0, 0, "age and stage unavailable"))
    return pd.DataFrame(rows, columns=COX_COLUMNS)


def _cox_rows(model: str, data: pd.DataFrame, covariates: list[str]) -> list[dict]:
    """Fit one Cox model; degenerate data gives NaN rows naming the reason."""
    from lifelines import CoxPHFitter

    frame = data[["os_months", "os_event", *covariates]].dropna()
    n, events = len(frame), int(frame["os_event"].sum())
    reason = ""
    if n < len(covariates) + 2:
        reason = f"only {n} patients"
    elif events == 0:
        reason = "no events"
    elif (frame[covariates].nunique() < 2).any():
        reason = "a covariate is constant"
    if reason:
        return [_failed_row(model, covariate, n, events, reason) for covariate in covariates]
    fitter = CoxPHFitter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter.fit(frame, duration_col="os_months", event_col="os_event")
    except Exception as error:  # lifelines raises ConvergenceError and numpy errors on separable data
        reason = f"fit failed: {error}".splitlines()[0]
        return [_failed_row(model, covariate, n, events, reason) for covariate in covariates]
    summary = fitter.summary
    return [
        {
            "model": model, "covariate": covariate,
            "coef": float(summary.loc[covariate, "coef"]), "hr": float(summary.loc[covariate, "exp(coef)"]),
            "hr_ci_low": float(summary.loc[covariate, "exp(coef) lower 95%"]),
            "hr_ci_high": float(summary.loc[covariate, "exp(coef) upper 95%"]),
            "p": float(summary.loc[covariate, "p"]), "n": n, "events": events, "note": "",
        }
        for covariate in covariates
    ]


def _failed_row(model: str, covariate: str, n: int, events: int, reason: str) -> dict:
    """A Cox row that could not be estimated."""
    nan = float("nan")
    return {"model": model, "covariate": covariate, "coef": nan, "hr": nan, "hr_ci_low": nan, "hr_ci_high": nan,
            "p": nan, "n": n, "events": events, "note": reason}


def category_groups(cohort: pd.DataFrame, column: str) -> dict[str, np.ndarray]:
    """Non-missing HTI values per category of a clinical or label column (empty when the column is absent)."""
    if column not in cohort.columns:
        return {}
    data = cohort.dropna(subset=["hti", column])
    data = data[data[column].astype(str).str.strip() != ""]
    groups = data.groupby(data[column].astype(str), sort=True)
    return {str(name): group["hti"].to_numpy(float) for name, group in groups}




def expression_panels(cohort: pd.DataFrame, labels: pd.DataFrame, traits: list[str]) -> list[tuple[str, dict]]:
    """Figure 5b panels: HTI of the cohort split by each trait's bulk expression above or below the median."""
    chosen = labels[labels["trait"].isin(traits)][["patient_id", "trait", "median_label"]]
    labelled = cohort.merge(chosen, on="patient_id")
    panels = []
    for trait in traits:
        rows = labelled[labelled["trait"] == trait].assign(
            expression=lambda frame: frame["median_label"].map({0: "below median", 1: "above median"}))
        panels.append((f"HTI by {trait} expression", category_groups(rows, "expression")))
    return panels


def clinical_panels(cohort: pd.DataFrame) -> list[tuple[str, dict]]:
    """Figure 6 panels: HTI by ER status and by PAM50 subtype."""
    return [("HTI by ER status", category_groups(cohort, "er_status")),
            ("HTI by PAM50 subtype", category_groups(cohort, "subtype"))]
