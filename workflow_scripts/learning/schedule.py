"""The paper's training schedule (Levy-Jurgenson et al. 2020): what is monitored, lr decay, stopping, best weights.

Adam (lr 0.001) on binary cross-entropy; every 1/evals_per_epoch of an epoch the validation slides are scored with
`learning.slide_score` (a tile is positive when its probability is above ensemble.threshold, 0.5 in the paper; a
slide's score is its fraction of positive tiles) and the slide-level ROC AUC computed. The learning rate is
multiplied by lr_factor after lr_patience evaluations without improvement (like ReduceLROnPlateau); training stops
after stop_patience evaluations without improvement or at max_evals. The weights with the best validation slide AUC
are kept; an equal AUC with a lower validation tile loss also counts as an improvement (small validation sets
saturate the AUC early).

When the validation slides hold only one class the AUC is undefined (history shows NaN); the schedule then monitors
minus the validation tile loss (binary cross-entropy of tile probabilities against their slide labels) instead, and
metrics.json says so in `selection_metric`. When a split has no labelled validation slide for the trait (small
cohorts: every validation patient out of distribution), every evaluation counts as the best, so training runs to
max_evals and keeps the last weights (`selection_metric` = last_weights); the ensemble ranks such a model last
because its AUC is undefined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from workflow_scripts.learning.settings import TrainingSettings


@dataclass
class ScheduleState:
    """What the plateau schedule remembers between evaluations."""

    lr: float
    best_score: float = -math.inf
    best_loss: float = math.inf  # validation tile loss at the best score: breaks ties between equal scores
    best_eval: int = 0
    since_best: int = 0
    since_lr_change: int = 0
    stop_reason: str | None = None


def monitored_score(auc: float, val_loss: float, eval_step: int, has_validation: bool) -> float:
    """The number the schedule maximises: the slide AUC, else minus the tile loss, else (no validation) the step."""
    if not has_validation:
        return float(eval_step)  # every evaluation counts as the best: the last weights win
    return auc if not math.isnan(auc) else (-val_loss if not math.isnan(val_loss) else 0.0)


def update_schedule(
    state: ScheduleState, score: float, eval_step: int, settings: TrainingSettings, loss: float = math.inf
) -> tuple[ScheduleState, bool]:
    """Advance the plateau schedule by one evaluation; return the new state and whether the score improved.

    An equal score with a lower validation `loss` counts as an improvement: with a handful of validation slides
    the slide AUC saturates at 1.0 early, and the loss then tells a converging model from a lucky early one.
    """
    loss = math.inf if math.isnan(loss) else loss
    improved = score > state.best_score or (score == state.best_score and loss < state.best_loss)
    if improved:
        state = replace(state, best_score=score, best_loss=loss, best_eval=eval_step, since_best=0, since_lr_change=0)
    else:
        state = replace(state, since_best=state.since_best + 1, since_lr_change=state.since_lr_change + 1)
        if state.since_lr_change >= settings.lr_patience:
            state = replace(state, lr=state.lr * settings.lr_factor, since_lr_change=0)
    if state.since_best >= settings.stop_patience:
        state = replace(state, stop_reason="no_improvement")
    elif eval_step >= settings.max_evals:
        state = replace(state, stop_reason="max_evals")
    return state, improved


def tile_loss(tile_probabilities: np.ndarray, tile_labels: np.ndarray) -> float:
    """Mean binary cross-entropy of tile probabilities against the labels of their slides."""
    p = np.clip(np.asarray(tile_probabilities, np.float64).reshape(-1), 1e-7, 1 - 1e-7)
    y = np.asarray(tile_labels, np.float64).reshape(-1)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
