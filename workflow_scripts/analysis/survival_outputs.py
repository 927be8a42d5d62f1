"""The survival job's outputs and the chosen traits; this module writes and documents these tables.

- heterogeneity/traits.tsv: columns trait, choose_by, score; the traits whose cartographies define HTI, in order.
  choose_by is `configured` (heterogeneity.traits; score NaN), `test_auc` (table1's ensemble test AUC, the paper:
  the traits are then chosen on the very test patients the survival cohort contains) or `validation_auc` (mean
  best validation slide AUC of the trait's chosen ensemble members, no test patient involved).
- survival/logrank.tsv (analysis.survival.LOGRANK_COLUMNS): one row per HTI threshold pair (comparison hti, role
  secondary) and per chosen trait's bulk expression (comparison expression_median, role reference, Figure 5a);
  `cohort` names the patients each row used (hti_survival for all: Figure 5a is on the HTI cohort), counts as
  n_low / n_high and events_low / events_high, `expression_median` the cut of the expression rows.
- survival/cox.tsv (analysis.cox.COX_COLUMNS): Cox models, role primary (continuous HTI per 0.1) and adjusted.
- survival/group_tests.tsv (analysis.group_tests.GROUP_TEST_COLUMNS): Figures 5b and 6, groups, n, rank tests.
- survival/cohort.tsv: one row per patient of the HTI survival cohort: slide_id, patient_id, hti, the clinical
  columns (os_months and os_event after max_months censoring when set) and expression_<trait>,
  median_label_<trait> per chosen trait.
- survival/figures/: km_hti_<low>_<high>.png, figure5a_<trait>.png, figure5b.png, figure6.png.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from workflow_scripts.analysis.cox import cox_models
from workflow_scripts.analysis.ensemble import read_members
from workflow_scripts.analysis.evaluation_tables import read_table1
from workflow_scripts.analysis.group_tests import distribution_panels, group_test_table
from workflow_scripts.analysis.survival import (
    CHOOSE_BY,
    SurvivalSettings,
    analysis_cohort,
    choose_by_score,
    expression_columns,
    expression_logrank,
    logrank_table,
    survival_cohort,
    survival_patients,
    table1_test_aucs,
    validation_scores,
)
from workflow_scripts.analysis.survival_figures import (
    write_distribution_figures,
    write_expression_figures,
    write_km_figures,
)
from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.tables import read_table, write_tsv
from workflow_scripts.inputs.clinical import read_clinical_table
from workflow_scripts.learning.labels import read_labels
from workflow_scripts.learning.splits import held_out_patients, read_splits


@dataclass(frozen=True)
class SurvivalOutputs:
    """Where the survival job writes: logrank.tsv, cox.tsv, cohort.tsv, group_tests.tsv and the figures/ folder."""

    logrank: str | os.PathLike
    cox: str | os.PathLike
    cohort: str | os.PathLike
    figures: str | os.PathLike
    group_tests: str | os.PathLike


def read_traits(path: str | os.PathLike) -> list[str]:
    """The chosen traits of heterogeneity/traits.tsv, in their order."""
    return read_table(path, ["trait"])["trait"].astype(str).tolist()


def write_survival(
    traits_path: str | os.PathLike,
    hti_path: str | os.PathLike,
    clinical_path: str | os.PathLike,
    label_paths: str | os.PathLike | Sequence[str | os.PathLike],
    splits_path: str | os.PathLike,
    settings: SurvivalSettings,
    outputs: SurvivalOutputs,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Write the survival tables and Figures 5a, 5b, 6 and the KM curves; returns the written log-rank table."""
    log = log or logging.getLogger(__name__)
    traits = read_traits(traits_path)
    hti_table = read_table(hti_path, ["slide_id", "patient_id", "hti"])
    clinical = read_clinical_table(clinical_path)
    labels = read_labels(label_paths)
    patients = survival_patients(labels, held_out_patients(read_splits(splits_path)), traits)
    cohort = analysis_cohort(survival_cohort(hti_table, clinical, patients), settings, log)
    log.info("survival cohort: %d patients (%d events) of %d selected", len(cohort), int(cohort["os_event"].sum()),
             len(patients))
    table = pd.concat([logrank_table(cohort, traits, list(settings.thresholds)),
                       pd.DataFrame([expression_logrank(cohort, labels, trait) for trait in traits])],
                      ignore_index=True)
    panels = distribution_panels(cohort, labels, traits)
    with atomic_path(outputs.figures) as figures:
        figures.mkdir()
        write_km_figures(cohort, table, traits, figures)
        write_expression_figures(cohort, labels, table, figures)
        write_distribution_figures(panels, figures)
    write_tsv(table, outputs.logrank)
    cox = cox_models(cohort)
    write_tsv(cox, outputs.cox)
    write_tsv(group_test_table(panels), outputs.group_tests)
    write_tsv(expression_columns(cohort, labels, traits), outputs.cohort)
    log.info("survival written:\n%s\n%s", table.to_string(index=False), cox.to_string(index=False))
    return table


def write_chosen_traits(
    table1_path: str | os.PathLike,
    members_path: str | os.PathLike,
    configured: list[str] | None,
    n: int,
    choose_by: str,
    path: str | os.PathLike,
) -> list[str]:
    """Write heterogeneity/traits.tsv: the configured traits, else the n best by test or validation AUC."""
    if choose_by not in CHOOSE_BY:
        raise ValueError(f"heterogeneity.choose_by {choose_by!r} is not one of {CHOOSE_BY}")
    if choose_by == "test_auc":
        scores = table1_test_aucs(read_table1(table1_path))
    else:
        scores = validation_scores(read_members(members_path))
    traits = choose_by_score(scores, list(configured) if configured else None, n)
    write_tsv(pd.DataFrame({"trait": traits, "choose_by": "configured" if configured else choose_by,
                            "score": [float("nan") if configured else scores[trait] for trait in traits]}), path)
    return traits
