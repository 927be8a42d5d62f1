"""The one slide score and slide AUC: hand-computed values, scikit-learn cross-check, threshold shared."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from workflow_scripts.learning.slide_score import grouped_slide_scores, slide_auc, slide_score


def test_slide_score_is_the_fraction_strictly_above_the_threshold():
    probabilities = [0.2, 0.5, 0.51, 0.9]
    assert slide_score(probabilities, 0.5) == 0.5  # 0.5 itself is not above 0.5
    assert slide_score(probabilities, 0.3) == 0.75
    assert math.isnan(slide_score([], 0.5))


def test_grouped_scores_follow_slide_order_and_check_counts():
    scores = grouped_slide_scores([0.9, 0.1, 0.8, 0.7, 0.6], [2, 0, 3], 0.65)
    assert scores[0] == 0.5 and math.isnan(scores[1]) and scores[2] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="5 tile probabilities for 4 tiles"):
        grouped_slide_scores([0.1] * 5, [2, 2], 0.5)


def test_auc_by_hand_with_a_tie():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4 half) (0.4>0.1) -> 3.5 / 4
    assert slide_auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == 0.875
    assert math.isnan(slide_auc([1, 1], [0.2, 0.3]))
    assert slide_auc([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.8, 0.9]) == pytest.approx(5 / 6)  # 5 of 6 pairs ordered


def test_auc_equals_scikit_learn_on_random_tied_scores():
    rng = np.random.default_rng(7)
    for _ in range(50):
        labels = rng.integers(0, 2, 25)
        if labels.min() == labels.max():
            continue
        scores = rng.integers(0, 6, 25) / 5  # fractions of 5 tiles: many ties, as with small slides
        assert slide_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
