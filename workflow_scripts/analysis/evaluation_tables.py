"""Readers of the evaluation tables that `analysis.evaluate.write_evaluation` writes, for every later consumer.

Contract (all in the one TSV form of common.tables, under results/{cohort}/evaluation/):
- ``table1.tsv``: one row per trait (the paper's Table 1): ``trait``, ``n_test``, ``test_auc_mean``/``min``/``max``
  (the split models on the test slides), ``test_auc_ensemble``, ``n_ood_near``, ``ood_near_auc_ensemble``,
  ``n_ood_all``, ``ood_all_auc_ensemble``, ``{set}_auc_ensemble_ci_low``/``high`` and ``n_{set}_patients`` for
  set in test, ood_near, ood_all; an AUC is NaN when its set holds one class.
- ``slide_scores.tsv``: one row per slide, trait, model (``split_<k>`` or ``ensemble``) and set (the evaluation
  sets, plus ``in_sample`` for Spearman): SLIDE_SCORE_COLUMNS, ``score`` = fraction of positive tiles
  (learning.slide_score), ``label`` = reference label.
- ``spearman.tsv``: one row per trait and set in SPEARMAN_SETS: ``trait``, ``set``, ``n``, ``rho``, ``p_value``,
  ``q_value``, ``note``.  ``q_value`` is Benjamini-Hochberg over the held-out rows (sets test, ood_near,
  ood_all of every trait) only; ``in_sample`` rows (training and validation slides included) have NaN.
"""

from __future__ import annotations

import os

import pandas as pd

from workflow_scripts.analysis.evaluate import EVALUATION_SETS, SLIDE_SCORE_COLUMNS
from workflow_scripts.common.tables import read_table

TABLE1_COLUMNS = ["trait", "n_test", "test_auc_mean", "test_auc_min", "test_auc_max", "test_auc_ensemble"] + [
    f"{name}_auc_ensemble_ci_{side}" for name in EVALUATION_SETS for side in ("low", "high")
]
SPEARMAN_COLUMNS = ["trait", "set", "n", "rho", "p_value", "q_value", "note"]


def read_table1(path: str | os.PathLike) -> pd.DataFrame:
    """Table 1 with its columns checked, so trait choice and reports fail naming the file when it is stale."""
    return read_table(path, TABLE1_COLUMNS)


def read_slide_scores(path: str | os.PathLike) -> pd.DataFrame:
    """Per-slide scores of every model and set, with their columns checked."""
    return read_table(path, SLIDE_SCORE_COLUMNS, text=("model", "set"))


def read_spearman(path: str | os.PathLike) -> pd.DataFrame:
    """The Spearman table with its columns checked."""
    return read_table(path, SPEARMAN_COLUMNS, text=("set", "note"))
