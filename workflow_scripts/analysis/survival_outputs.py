"""The survival job's outputs: cohort, log-rank and Cox tables and the figures folder, and the chosen traits."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from workflow_scripts.analysis.evaluation_tables import read_table1
from workflow_scripts.analysis.survival import (
    choose_traits,
    cox_models,
    expression_cohort,
    expression_logrank,
    logrank_table,
    survival_cohort,
    survival_patients,
)
from workflow_scripts.analysis.survival_figures import (
    write_distribution_figures,
    write_expression_figures,
    write_km_figures,
)
from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.tables import read_table, write_tsv
from workflow_scripts.learning.labels import read_labels
from workflow_scripts.learning.splits import held_out_patients, read_splits


@dataclass(frozen=True)
class SurvivalOutputs:
    """Where the survival job writes: logrank.tsv, cox.tsv, cohort.tsv and the figures/ folder."""

    logrank: str | os.PathLike
    cox: str | os.PathLike
    cohort: str | os.PathLike
    figures: str | os.PathLike


def read_traits(path: str | os.PathLike) -> list[str]:
    """The chosen traits of heterogeneity/traits.tsv, in their order."""
    return read_table(path, ["trait"])["trait"].astype(str).tolist()


def write_survival(
    traits_path: str | os.PathLike,
    hti_path: str | os.PathLike,
    clinical_path: str | os.PathLike,
    label_paths: str | os.PathLike | Sequence[str | os.PathLike],
    splits_path: str | os.PathLike,
    thresholds: list[dict],
    outputs: SurvivalOutputs,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Write the survival tables and Figures 5a, 5b, 6 and the KM curves; returns the written log-rank table."""
    log = log or logging.getLogger(__name__)
    traits = read_traits(traits_path)
    hti_table = read_table(hti_path, ["slide_id", "patient_id", "hti"])
    clinical = read_table(clinical_path, ["patient_id", "os_months", "os_event"])
    labels = read_labels(label_paths)
    held_out = held_out_patients(read_splits(splits_path))
    patients = survival_patients(labels, held_out, traits)
    cohort = survival_cohort(hti_table, clinical, patients)
    log.info("survival cohort: %d patients (%d events) of %d selected", len(cohort), int(cohort["os_event"].sum()),
             len(patients))
    logrank = logrank_table(cohort, traits, thresholds)
    expressions = {trait: expression_cohort(labels, clinical, trait) for trait in traits}
    expression_rows = [expression_logrank(expressions[trait], trait) for trait in traits]
    with atomic_path(outputs.figures) as figures:
        figures.mkdir()
        write_km_figures(cohort, logrank, traits, thresholds, figures)
        write_expression_figures(expressions, expression_rows, figures)
        write_distribution_figures(cohort, labels, traits, figures)
    table = pd.concat([logrank, pd.DataFrame(expression_rows)], ignore_index=True)
    write_tsv(table, outputs.logrank)
    write_tsv(cox_models(cohort), outputs.cox)
    write_tsv(cohort, outputs.cohort)
    log.info("survival written:\n%s", logrank.to_string(index=False))
    return table


def write_chosen_traits(
    table1_path: str | os.PathLike, configured: list[str] | None, n: int, path: str | os.PathLike
) -> list[str]:
    """Write heterogeneity/traits.tsv: the configured traits, else the n best by ensemble test AUC."""
    table1 = read_table1(table1_path)
    traits = choose_traits(table1, list(configured) if configured else None, n)
    write_tsv(pd.DataFrame({"trait": traits}), path)
    return traits
