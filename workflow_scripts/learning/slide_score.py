"""The one slide-level score and AUC, shared by training's model selection and by evaluation (Table 1).

A tile is positive when its probability is strictly above the threshold (config ``ensemble.threshold``,
0.5 in the paper). A slide's score is its fraction of positive tiles (undefined, NaN, without tiles). The
slide-level ROC AUC is the Mann-Whitney rank-sum identity with ties counted half, which equals
scikit-learn's ``roc_auc_score`` and gives the same float for the same ranks every time; it is NaN when the
slides hold a single class. Training validates and evaluation reports with these same functions and the same
configured threshold, so changing the threshold changes model selection and Table 1 together.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def binarise(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Tile calls: positive when the score is strictly above the threshold."""
    return np.asarray(scores) > threshold


def positive_fraction(calls: np.ndarray) -> float:
    """Fraction of positive tile calls of one slide; NaN for a slide without tiles."""
    calls = np.asarray(calls, dtype=bool).reshape(-1)
    return float(calls.mean()) if calls.size else float("nan")


def slide_score(tile_probabilities: np.ndarray, threshold: float) -> float:
    """One slide's score: the fraction of its tiles called positive at the threshold."""
    return positive_fraction(binarise(np.asarray(tile_probabilities).reshape(-1), threshold))


def grouped_slide_scores(tile_probabilities: np.ndarray, tiles_per_slide: np.ndarray, threshold: float) -> np.ndarray:
    """`slide_score` of consecutive groups of tiles (tiles ordered slide by slide, as a validation index holds them)."""
    probabilities = np.asarray(tile_probabilities).reshape(-1)
    boundaries = np.concatenate([[0], np.cumsum(np.asarray(tiles_per_slide, dtype=np.int64))])
    if boundaries[-1] != len(probabilities):
        raise ValueError(f"{len(probabilities)} tile probabilities for {boundaries[-1]} tiles")
    return np.array([slide_score(probabilities[a:b], threshold) for a, b in zip(boundaries[:-1], boundaries[1:])])


def slide_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of slide scores by the rank-sum identity, ties counted half; NaN when only one class is present."""
    labels = np.asarray(labels, dtype=bool).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels for {scores.size} scores")
    n_positive = int(labels.sum())
    n_negative = labels.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))
