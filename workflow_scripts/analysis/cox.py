"""Cox proportional-hazards models of overall survival on the heterogeneity index (the primary survival test).

Models (rows of survival/cox.tsv, one per model and covariate, COX_COLUMNS):
- `hti` (role primary): HTI as a continuous covariate, alone. HTI is multiplied by 10 before fitting, so `coef`,
  `hr` and its 95% CI are per 0.1 HTI (`unit`); exp(coef_per_unit / 10) of an unscaled fit is the same number.
- `hti+age+stage` (role adjusted; named after the adjusters actually available): HTI adjusted for age (per year)
  and AJCC stage as a categorical covariate, sub-stages collapsed (Stage IIB -> II), the lowest stage present is
  the reference (`stage_II` = stage II vs that reference). A stage with fewer than MIN_STAGE_PATIENTS patients
  is pooled with its neighbour towards stage II-III (`stage_III-IV`; `exclusions` says which). Patients with an
  unknown stage (empty, Stage X) or age are excluded from this model only: `excluded` counts them and `exclusions`
  says why.
Every estimated row has n, events, the model's concordance index and the proportional-hazards test of its
covariate (lifelines.statistics.proportional_hazard_test, rank time transform: a small `ph_p` questions the model).
Degenerate data (too few patients, no event, a constant covariate, a failed fit) gives NaN rows with a `note`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

HTI_SCALE = 10  # HTI per 0.1: coefficients and hazard ratios are reported per 0.1 HTI
STAGES = ("I", "II", "III", "IV")
# a stage with fewer patients is pooled with its neighbour: a level of one patient cannot be fitted
MIN_STAGE_PATIENTS = 5
COX_COLUMNS = [
    "model", "role", "covariate", "unit", "coef", "hr", "hr_ci_low", "hr_ci_high", "p", "n", "events", "excluded",
    "exclusions", "concordance", "ph_statistic", "ph_p", "note",
]
_STAGE_PATTERN = re.compile(r"^(?:stage\s*)?(IV|III|II|I|[1-4])(?:[A-C]\d?)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Design:
    """One Cox model to fit: complete-case data (os_months, os_event, covariates) and who was left out."""

    name: str
    role: str
    frame: pd.DataFrame
    units: dict[str, str]
    excluded: int = 0
    exclusions: str = ""


def stage_category(value: object) -> str:
    """AJCC stage collapsed to I, II, III or IV ('Stage IIB' -> 'II', 3 -> 'III'); '' when unknown (e.g. Stage X)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = str(int(value)) if float(value).is_integer() else str(value)
    match = _STAGE_PATTERN.match(str(value).strip())
    if not match:
        return ""
    token = match.group(1).upper()
    return STAGES[int(token) - 1] if token.isdigit() else token


def pooled_stages(stage: pd.Series, minimum: int) -> tuple[pd.Series, list[str]]:
    """Stages with fewer than `minimum` patients merged into the neighbour towards the middle, and what was merged."""
    groups = [[level] for level in STAGES if (stage == level).any()]
    notes = []
    while len(groups) > 1:
        sizes = [int(stage.isin(group).sum()) for group in groups]
        sparse = [index for index, size in enumerate(sizes) if size < minimum]
        if not sparse:
            break
        index = sparse[0]
        if index == 0:
            neighbour = 1
        elif index == len(groups) - 1:
            neighbour = index - 1
        else:
            neighbour = index - 1 if sizes[index - 1] <= sizes[index + 1] else index + 1
        notes.append(f"stage {'-'.join(groups[index])} ({sizes[index]} patients) pooled with "
                     f"{'-'.join(groups[neighbour])}")
        low, high = sorted((index, neighbour))
        groups[low:high + 1] = [groups[low] + groups[high]]
    names = {level: "-".join(group) for group in groups for level in group}
    return stage.map(lambda value: names.get(value, value)), notes


def _stage_order(values: pd.Series) -> pd.Series:
    """Sort key of (pooled) stage names by their first stage."""
    return values.map(lambda value: STAGES.index(value.split("-")[0]) if value else -1)


def hti_design(cohort: pd.DataFrame) -> Design:
    """The primary model: continuous HTI (per 0.1) alone, on every cohort patient with an HTI."""
    frame = _survival_columns(cohort).assign(hti=pd.to_numeric(cohort["hti"], errors="coerce") * HTI_SCALE)
    kept = frame.dropna()
    missing = len(frame) - len(kept)
    return Design("hti", "primary", kept.reset_index(drop=True), {"hti": "per 0.1 HTI"}, missing,
                  f"HTI unknown: {missing}" if missing else "")


def adjusted_design(cohort: pd.DataFrame) -> Design | None:
    """HTI adjusted for age and categorical stage where the cohort has them; None when neither varies."""
    age = pd.to_numeric(cohort.get("age", pd.Series(np.nan, index=cohort.index)), errors="coerce")
    stage = cohort.get("stage", pd.Series("", index=cohort.index)).map(stage_category)
    frame = _survival_columns(cohort).assign(hti=pd.to_numeric(cohort["hti"], errors="coerce") * HTI_SCALE)
    units, reasons, known = {"hti": "per 0.1 HTI"}, [], frame["hti"].notna()
    if age.notna().any() and age.nunique() > 1:
        frame, units["age"] = frame.assign(age=age), "per year"
        reasons.append(("age unknown", age.isna() & known))
    stage, pooled = pooled_stages(stage[known], MIN_STAGE_PATIENTS)
    stage = stage.reindex(cohort.index, fill_value="")
    levels = list(dict.fromkeys(stage[known & (stage != "")].sort_values(key=_stage_order)))
    if len(levels) > 1:
        reasons.append(("stage unknown", (stage == "") & known))
        for level in levels[1:]:
            frame[f"stage_{level}"] = np.where(stage == "", np.nan, (stage == level).astype(float))
            units[f"stage_{level}"] = f"stage {level} vs {levels[0]}"
    if len(units) == 1:
        return None
    adjusters = [name for name in ("age", "stage") if any(key.startswith(name) for key in units)]
    kept = frame.dropna()
    exclusions = "; ".join([f"{reason}: {int(mask.sum())}" for reason, mask in reasons if mask.any()] + pooled)
    return Design("hti+" + "+".join(adjusters), "adjusted", kept.reset_index(drop=True), units,
                  int(known.sum()) - len(kept), exclusions)


def cox_models(cohort: pd.DataFrame) -> pd.DataFrame:
    """Cox PH of HTI alone (primary) and adjusted for age and stage (NaN rows with a note when not estimable)."""
    rows = fit_design(hti_design(cohort))
    adjusted = adjusted_design(cohort)
    if adjusted is None:
        rows.append(_failed_row(Design("hti+age+stage", "adjusted", pd.DataFrame(), {"hti": "per 0.1 HTI"}), "hti",
                                "age and stage unavailable"))
    else:
        rows += fit_design(adjusted)
    return pd.DataFrame(rows, columns=COX_COLUMNS)


def fit_design(design: Design) -> list[dict]:
    """Fit one Cox model with its PH test; degenerate data gives NaN rows naming the reason."""
    from lifelines import CoxPHFitter

    frame, covariates = design.frame, list(design.units)
    reason = _degenerate(frame, covariates)
    if reason:
        return [_failed_row(design, covariate, reason) for covariate in covariates]
    fitter = CoxPHFitter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter.fit(frame, duration_col="os_months", event_col="os_event")
    except Exception as error:  # lifelines raises ConvergenceError and numpy errors on separable data
        reason = f"fit failed: {error}".splitlines()[0]
        return [_failed_row(design, covariate, reason) for covariate in covariates]
    ph, ph_note = _ph_test(fitter, frame)
    summary = fitter.summary
    return [
        _base_row(design, covariate) | {
            "coef": float(summary.loc[covariate, "coef"]), "hr": float(summary.loc[covariate, "exp(coef)"]),
            "hr_ci_low": float(summary.loc[covariate, "exp(coef) lower 95%"]),
            "hr_ci_high": float(summary.loc[covariate, "exp(coef) upper 95%"]),
            "p": float(summary.loc[covariate, "p"]), "concordance": float(fitter.concordance_index_),
            "ph_statistic": float(ph.loc[covariate, "test_statistic"]) if ph is not None else np.nan,
            "ph_p": float(ph.loc[covariate, "p"]) if ph is not None else np.nan, "note": ph_note,
        }
        for covariate in covariates
    ]


def _survival_columns(cohort: pd.DataFrame) -> pd.DataFrame:
    """Survival time and event as numbers, the two columns every model starts from."""
    return pd.DataFrame({"os_months": pd.to_numeric(cohort["os_months"], errors="coerce"),
                         "os_event": pd.to_numeric(cohort["os_event"], errors="coerce")}, index=cohort.index)


def _degenerate(frame: pd.DataFrame, covariates: list[str]) -> str:
    """Why a model cannot be fitted on these data, or '' when it can."""
    n = len(frame)
    if n < len(covariates) + 2:
        return f"only {n} patients"
    if int(frame["os_event"].sum()) == 0:
        return "no events"
    if (frame[covariates].nunique() < 2).any():
        return "a covariate is constant"
    return ""


def _ph_test(fitter: object, frame: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """Schoenfeld-residual test of proportional hazards per covariate (rank transform), or None and why not."""
    from lifelines.statistics import proportional_hazard_test

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return proportional_hazard_test(fitter, frame, time_transform="rank").summary, ""
    except Exception as error:  # the residuals can be singular on tiny cohorts
        return None, f"PH test failed: {error}".splitlines()[0]


def _base_row(design: Design, covariate: str) -> dict:
    """The identifying and count columns of a row, estimates NaN."""
    nan = float("nan")
    frame = design.frame
    return {
        "model": design.name, "role": design.role, "covariate": covariate, "unit": design.units.get(covariate, ""),
        "coef": nan, "hr": nan, "hr_ci_low": nan, "hr_ci_high": nan, "p": nan, "n": len(frame),
        "events": int(frame["os_event"].sum()) if "os_event" in frame else 0, "excluded": design.excluded,
        "exclusions": design.exclusions, "concordance": nan, "ph_statistic": nan, "ph_p": nan, "note": "",
    }


def _failed_row(design: Design, covariate: str, reason: str) -> dict:
    """A Cox row that could not be estimated, with its counts and the reason."""
    return _base_row(design, covariate) | {"note": reason}
