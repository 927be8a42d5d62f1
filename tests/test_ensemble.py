"""Ensemble member choice, majority vote, coordinate matching and slide scores, with hand-computed answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.analysis.ensemble import (
    align_by_coords,
    choose_members,
    chosen_splits,
    majority_vote,
    read_metrics,
    slide_scores,
)
from workflow_scripts.learning.predictions import SlidePredictions, read_predictions, write_predictions


def test_majority_vote_by_hand():
    votes = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]], dtype=bool)
    assert majority_vote(votes).tolist() == [True, False, False, True]
    # with an even number of models a tie is negative
    assert majority_vote(np.array([[1, 0], [1, 1]], dtype=bool)).tolist() == [False, True]


def test_top_k_choice_ties_and_undefined_auc():
    metrics = pd.DataFrame(
        {
            "trait": ["A"] * 5,
            "split": [0, 1, 2, 3, 4],
            "best_val_slide_auc": [0.7, np.nan, 0.9, 0.7, 0.6],
        }
    )
    members = choose_members(metrics, top_k=3)
    assert members["split"].tolist() == [2, 0, 3, 4, 1]
    assert members["rank"].tolist() == [1, 2, 3, 4, 5]
    assert members["chosen"].tolist() == [True, True, True, False, False]
    assert chosen_splits(members, "A") == [2, 0, 3]


def test_read_metrics_from_json(tmp_path):
    paths = []
    for split, value in [(0, 0.8), (1, None)]:
        path = tmp_path / "models" / "MKI67" / f"split_{split}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"best_val_slide_auc": value, "split": split, "trait": "MKI67"}))
        paths.append(path)
    frame = read_metrics(paths)
    assert frame["split"].tolist() == [0, 1]
    assert frame["best_val_slide_auc"].iloc[0] == 0.8 and np.isnan(frame["best_val_slide_auc"].iloc[1])


def test_align_by_coords_reorders_and_names_slide():
    reference = np.array([[0, 0], [512, 0], [0, 512]])
    shuffled = np.array([[0, 512], [0, 0], [512, 0]])
    values = np.array([30, 10, 20])
    assert align_by_coords(reference, shuffled, values, "S1").tolist() == [10, 20, 30]
    with pytest.raises(ValueError, match="slide S1"):
        align_by_coords(reference, np.array([[0, 512], [0, 0], [999, 0]]), values, "S1")
    with pytest.raises(ValueError, match="slide S1"):
        align_by_coords(reference, shuffled[:2], values[:2], "S1")


def test_slide_scores_fraction_positive_and_mean(tmp_path):
    scores = np.array([[0.9, 0.8, 0.1], [0.6, 0.2, 0.7], [0.1, 0.3, 0.2], [0.5, 0.9, 0.9]], dtype=np.float32)
    path = tmp_path / "S1.h5"
    write_predictions(path, SlidePredictions("S1", "A", np.array([[0, 0], [1, 0], [2, 0], [3, 0]]), scores, (0, 1, 2)))
    predictions = read_predictions(path)
    frame = slide_scores(predictions, [0, 2], threshold=0.5).set_index("model")
    # split_0 positive tiles: 0.9, 0.6 (0.5 is not above 0.5) -> 2/4
    assert frame.loc["split_0", "score"] == pytest.approx(0.5)
    assert frame.loc["split_1", "score"] == pytest.approx(0.5)
    assert frame.loc["split_0", "mean_tile_score"] == pytest.approx(np.mean(scores[:, 0]))
    # ensemble of splits 0 and 2 (two members: both must agree): tiles 0? no (0.1), 1 yes, 2 no, 3 no (0.5)
    assert frame.loc["ensemble", "score"] == pytest.approx(0.25)
    assert frame.loc["ensemble", "mean_tile_score"] == pytest.approx(np.mean(scores[:, [0, 2]]))


def test_slide_without_tiles_has_nan_scores():
    empty = SlidePredictions("S0", "A", np.zeros((0, 2), np.int64), np.zeros((0, 3), np.float32), (0, 1, 2))
    frame = slide_scores(empty, [0, 1, 2], 0.5)
    assert frame["score"].isna().all() and (frame["n_tiles"] == 0).all()
