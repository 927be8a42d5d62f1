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
    read_members,
    read_metrics,
    slide_scores,
    write_members,
)
from workflow_scripts.learning.predictions import SlidePredictions, read_predictions, write_predictions
from workflow_scripts.learning.run_outputs import write_history, write_metrics_file


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
    # 2 beats 0 on AUC; 0 and 3 tie on AUC with no loss known -> split; 3 beats 4, 4 beats the undefined 1 on AUC
    assert members["decided_by"].tolist() == ["val_slide_auc", "split", "val_slide_auc", "val_slide_auc",
                                              "val_slide_auc"]


def _run(folder, split: int, auc, best_step: int, val_losses: list[float], trait: str = "A"):
    """metrics.json and history.tsv of one split model, written by their owner (learning.run_outputs)."""
    run = folder / "models" / trait / f"split_{split}"
    run.mkdir(parents=True)
    rows = [{"eval_step": step, "epoch_fraction": 0.5 * step, "train_loss": 0.7, "val_slide_auc": 0.5, "lr": 1e-3,
             "val_loss": loss} for step, loss in enumerate(val_losses, start=1)]
    write_history(rows, run / "history.tsv")
    write_metrics_file({"trait": trait, "split": split, "best_val_slide_auc": auc, "best_eval_step": best_step},
                       run / "metrics.json")
    return run / "metrics.json", run / "history.tsv"


def test_auc_tie_broken_by_val_loss_at_best_then_split(tmp_path):
    runs = [
        _run(tmp_path, 0, 0.8, 2, [0.6, 0.40, 0.30]),  # loss at its best step 2 is 0.40 (not the later 0.30)
        _run(tmp_path, 1, 0.8, 1, [0.35, 0.5]),
        _run(tmp_path, 2, 0.9, 1, [0.9]),
        _run(tmp_path, 3, 0.8, 3, [0.7, 0.6, 0.35]),  # ties split 1 on AUC and on loss
        _run(tmp_path, 4, None, 1, [0.1]),  # undefined AUC ranks last whatever its loss
        _run(tmp_path, 0, 0.5, 1, [0.2], trait="B"),
    ]
    metrics = read_metrics([m for m, _ in runs], [h for _, h in reversed(runs)])  # paired by folder, not order
    assert metrics.loc[metrics["trait"] == "A", "val_loss_at_best"].tolist() == pytest.approx([0.4, 0.35, 0.9,
                                                                                              0.35, 0.1])
    members = choose_members(metrics, top_k=2)
    a = members[members["trait"] == "A"]
    assert a["split"].tolist() == [2, 1, 3, 0, 4]
    # 2 over 1: AUC 0.9 > 0.8; 1 over 3: same AUC and loss -> split; 3 over 0: loss 0.35 < 0.40;
    # 0 over 4: defined AUC over NaN; 4 (last) behind 0: AUC
    assert a["decided_by"].tolist() == ["val_slide_auc", "split", "val_loss", "val_slide_auc", "val_slide_auc"]
    assert a["chosen"].tolist() == [True, True, False, False, False]
    b = members[members["trait"] == "B"]
    assert b["decided_by"].tolist() == ["only_model"] and b["rank"].tolist() == [1]
    write_members(members, tmp_path / "members.tsv")
    back = read_members(tmp_path / "members.tsv")
    pd.testing.assert_frame_equal(back, members, check_dtype=False)
    assert chosen_splits(back, "A") == [2, 1]


def test_val_loss_breaks_a_tie_of_undefined_aucs():
    metrics = pd.DataFrame({"trait": "A", "split": [0, 1, 2], "best_val_slide_auc": [np.nan, np.nan, 0.6],
                            "val_loss_at_best": [0.5, 0.4, np.nan]})
    members = choose_members(metrics, top_k=1)
    assert members["split"].tolist() == [2, 1, 0]
    assert members["decided_by"].tolist() == ["val_slide_auc", "val_loss", "val_loss"]


def test_read_metrics_names_the_file_on_missing_history_or_step(tmp_path):
    metrics, history = _run(tmp_path, 0, 0.8, 5, [0.3, 0.2])
    with pytest.raises(ValueError, match="no history.tsv"):
        read_metrics([metrics], [])
    with pytest.raises(ValueError, match="eval_step 5"):
        read_metrics([metrics], [history])
    metrics.write_text(json.dumps({"best_val_slide_auc": 0.8, "split": 0, "trait": "A"}))
    with pytest.raises(ValueError, match="best_eval_step"):
        read_metrics([metrics], [history])


def test_read_metrics_from_json(tmp_path):
    paths, histories = [], []
    for split, value in [(0, 0.8), (1, None)]:
        path = tmp_path / "models" / "MKI67" / f"split_{split}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"best_val_slide_auc": value, "split": split, "trait": "MKI67",
                                    "best_eval_step": 1}))
        write_history([{"eval_step": 1, "epoch_fraction": 1.0, "train_loss": 0.6, "val_slide_auc": value,
                        "lr": 0.01, "val_loss": None}], path.with_name("history.tsv"))
        paths.append(path)
        histories.append(path.with_name("history.tsv"))
    frame = read_metrics(paths, histories)
    assert frame["split"].tolist() == [0, 1]
    assert frame["best_val_slide_auc"].iloc[0] == 0.8 and np.isnan(frame["best_val_slide_auc"].iloc[1])
    assert frame["val_loss_at_best"].isna().all()


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
