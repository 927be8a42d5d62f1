"""Ensemble of the best split models per trait: top-k by validation slide AUC, majority vote per tile.

Tiles are always matched by their level-0 (x, y) coordinates, never by their position in a file, because
different writers (prediction jobs, tile stores) may store the same tiles in different orders.

Member choice (`choose_members`), per trait: the split models are ranked by RANKING_CRITERIA in order:
1. ``val_slide_auc``: the best validation slide AUC (metrics.json ``best_val_slide_auc``), higher first; an
   undefined (NaN) AUC ranks after every defined one;
2. ``val_loss``: the validation loss at that same (best) evaluation (history.tsv ``val_loss`` of the row whose
   ``eval_step`` is metrics.json ``best_eval_step``), lower first; NaN after every defined loss;
3. ``split``: the split number, lower first (always decides, split numbers are unique).
Two values tie when they are equal or both NaN (no rounding: an AUC tie is exact on one validation set).

Contract of evaluation/ensemble_members.tsv (written by `write_members`, read by `read_members`): columns
MEMBER_COLUMNS, one row per trait and split model, best first: ``best_val_slide_auc`` and ``val_loss_at_best``
(NaN when undefined), ``rank`` (1 = best), ``decided_by`` and ``chosen`` (True for the top_k members of the
vote).  ``decided_by`` names the first criterion on which the model differs from the next-ranked model of its
trait, i.e. what put it ahead of rank + 1 (the last-ranked model: from the one ranked just above it, i.e. what
put it behind); ``only_model`` when the trait has a single split model.  So the ``decided_by`` of rank top_k
says why the last member beat the first model left out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.common.tables import read_text_table, write_tsv
from workflow_scripts.learning.predictions import SlidePredictions
from workflow_scripts.learning.run_outputs import read_history, read_metrics_file
from workflow_scripts.learning.slide_score import binarise, positive_fraction

MEMBER_COLUMNS = ["trait", "split", "best_val_slide_auc", "val_loss_at_best", "rank", "decided_by", "chosen"]
RANKING_CRITERIA = (("val_slide_auc", "best_val_slide_auc"), ("val_loss", "val_loss_at_best"), ("split", "split"))
DECIDED_BY = tuple(name for name, _ in RANKING_CRITERIA) + ("only_model",)
METRIC_COLUMNS = ["trait", "split", "best_val_slide_auc", "val_loss_at_best"]


def read_metrics(
    paths: Iterable[str | os.PathLike], history_paths: Iterable[str | os.PathLike]
) -> pd.DataFrame:
    """Trait, split, best validation slide AUC and the validation loss at that evaluation of every split model.

    Each models/{trait}/split_{k}/metrics.json is paired with the history.tsv of the same folder.
    """
    histories = {Path(path).parent: Path(path) for path in history_paths}
    rows = []
    for path in paths:
        path = Path(path)
        if path.parent not in histories:
            raise ValueError(f"{path}: no history.tsv of the same run among the inputs (needed for val_loss_at_best)")
        metrics = read_metrics_file(path)
        split = metrics.get("split", _split_from_path(path))
        trait = metrics.get("trait", path.parent.parent.name)
        auc = metrics.get("best_val_slide_auc")
        loss = val_loss_at_best(read_history(histories[path.parent]), metrics, path, histories[path.parent])
        rows.append({"trait": str(trait), "split": int(split), "best_val_slide_auc": _float_or_nan(auc),
                     "val_loss_at_best": loss})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def val_loss_at_best(history: pd.DataFrame, metrics: dict, metrics_path: Path, history_path: Path) -> float:
    """history.tsv val_loss at metrics.json best_eval_step (the kept weights), NaN when undefined there."""
    step = metrics.get("best_eval_step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"{metrics_path}: best_eval_step must be an integer, got {step!r}")
    rows = history.loc[history["eval_step"] == step, "val_loss"]
    if len(rows) != 1:
        raise ValueError(f"{history_path}: expected one row with eval_step {step} (best_eval_step of "
                         f"{metrics_path}), found {len(rows)}")
    return _float_or_nan(rows.iloc[0])


def _split_from_path(path: Path) -> int:
    """Split index from a models/{trait}/split_{k}/metrics.json path, for metrics files lacking the field."""
    name = path.parent.name
    if not name.startswith("split_"):
        raise ValueError(f"{path}: no 'split' field and parent folder is not split_<k>")
    return int(name.removeprefix("split_"))


def _float_or_nan(value: object) -> float:
    """AUCs and losses may be missing or null when undefined (one class, no validation); treat those as NaN."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return number if math.isfinite(number) else float("nan")


def choose_members(metrics: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """Rank split models per trait by RANKING_CRITERIA (see the module docstring) and mark the top k as chosen.

    A frame without a ``val_loss_at_best`` column ranks as if every loss were undefined.
    """
    if top_k < 1:
        raise ValueError(f"ensemble top_k must be >= 1, got {top_k}")
    if "val_loss_at_best" not in metrics.columns:
        metrics = metrics.assign(val_loss_at_best=float("nan"))
    ranked = []
    for _, group in metrics.groupby("trait", sort=True):
        auc, loss = group["best_val_slide_auc"].astype(float), group["val_loss_at_best"].astype(float)
        order = group.assign(_auc_nan=auc.isna(), _auc=-auc.fillna(0), _loss_nan=loss.isna(), _loss=loss.fillna(0))
        order = order.sort_values(["_auc_nan", "_auc", "_loss_nan", "_loss", "split"], kind="mergesort")
        order = order[METRIC_COLUMNS].reset_index(drop=True)
        order["rank"] = np.arange(1, len(order) + 1)
        order["decided_by"] = decided_by(order)
        order["chosen"] = order["rank"] <= top_k
        ranked.append(order)
    if not ranked:
        return pd.DataFrame(columns=MEMBER_COLUMNS)
    return pd.concat(ranked, ignore_index=True)[MEMBER_COLUMNS]


def decided_by(ranked: pd.DataFrame) -> list[str]:
    """Per row of one trait's ranked models: the first criterion separating it from the next (the last: previous)."""
    if len(ranked) == 1:
        return ["only_model"]
    records = ranked.to_dict("records")
    pairs = [(records[index], records[index + 1]) for index in range(len(records) - 1)]
    pairs.append((records[-1], records[-2]))
    return [next(name for name, column in RANKING_CRITERIA if not _same(a[column], b[column])) for a, b in pairs]


def _same(a: float, b: float) -> bool:
    """Two criterion values tie when equal or both undefined (NaN)."""
    return bool(a == b or (pd.isna(a) and pd.isna(b)))


def write_members(members: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write evaluation/ensemble_members.tsv (MEMBER_COLUMNS: every split model's rank and whether it was chosen)."""
    write_tsv(members[MEMBER_COLUMNS], path)


def read_members(path: str | os.PathLike) -> pd.DataFrame:
    """Read ensemble_members.tsv with `chosen` as bool and `split`, `rank` as int, naming the file on bad values."""
    members = read_text_table(path, MEMBER_COLUMNS)
    bad = sorted(set(members["chosen"]) - {"True", "False"})
    if bad:
        raise ValueError(f"{path}: column chosen has value(s) {bad}; expected True or False")
    members["chosen"] = members["chosen"] == "True"
    members["split"] = members["split"].astype(int)
    members["rank"] = members["rank"].astype(int)
    bad = sorted(set(members["decided_by"]) - set(DECIDED_BY))
    if bad:
        raise ValueError(f"{path}: column decided_by has value(s) {bad}; expected one of {list(DECIDED_BY)}")
    for column in ("best_val_slide_auc", "val_loss_at_best"):
        members[column] = pd.to_numeric(members[column], errors="coerce")
    return members[MEMBER_COLUMNS]


def chosen_splits(members: pd.DataFrame, trait: str) -> list[int]:
    """Chosen split models of one trait, best first."""
    rows = members[(members["trait"] == trait) & members["chosen"].astype(bool)].sort_values("rank")
    if rows.empty:
        raise KeyError(f"no ensemble members chosen for trait {trait}")
    return [int(split) for split in rows["split"]]


def align_by_coords(
    reference: np.ndarray, coords: np.ndarray, values: np.ndarray, slide_id: str, what: str = "predictions"
) -> np.ndarray:
    """Reorder `values` (rows follow `coords`) into the order of `reference` coordinates; error if the sets differ."""
    reference = np.asarray(reference, dtype=np.int64).reshape(-1, 2)
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    if len(values) != len(coords):
        raise ValueError(f"slide {slide_id}: {what} have {len(values)} rows for {len(coords)} coordinates")
    for name, array in (("reference", reference), (what, coords)):
        if len(np.unique(array, axis=0)) != len(array):
            raise ValueError(f"slide {slide_id}: duplicate tile coordinates in {name}")
    if len(reference) != len(coords):
        raise ValueError(f"slide {slide_id}: {what} have {len(coords)} tiles, expected {len(reference)}")
    reference_order = np.lexsort((reference[:, 1], reference[:, 0]))
    coords_order = np.lexsort((coords[:, 1], coords[:, 0]))
    if not np.array_equal(reference[reference_order], coords[coords_order]):
        raise ValueError(f"slide {slide_id}: tile coordinates of {what} differ from the reference tiles")
    aligned = np.empty_like(np.asarray(values))
    aligned[reference_order] = np.asarray(values)[coords_order]
    return aligned


def majority_vote(votes: np.ndarray) -> np.ndarray:
    """Positive when more than half of the models (columns) vote positive; a tie is negative."""
    votes = np.asarray(votes, dtype=bool)
    if votes.ndim != 2 or votes.shape[1] == 0:
        raise ValueError(f"majority vote needs a (tiles, models) array with >= 1 model, got {votes.shape}")
    return 2 * votes.sum(axis=1) > votes.shape[1]


def ensemble_positive(predictions: SlidePredictions, splits: list[int], threshold: float) -> np.ndarray:
    """Ensemble's binary call per tile of one slide, in the file's tile order."""
    return majority_vote(binarise(predictions.columns(splits), threshold))


def slide_scores(predictions: SlidePredictions, splits: list[int], threshold: float) -> pd.DataFrame:
    """Slide score (fraction of positive tiles) and mean tile score of every split model and of the ensemble."""
    rows = []
    n_tiles = predictions.coords.shape[0]
    for split in predictions.splits:
        column = predictions.columns([split])[:, 0]
        rows.append(_score_row(f"split_{split}", binarise(column, threshold), column, n_tiles))
    members = predictions.columns(splits)
    ensemble = majority_vote(binarise(members, threshold))
    rows.append(_score_row("ensemble", ensemble, members.mean(axis=1) if n_tiles else members[:, 0], n_tiles))
    frame = pd.DataFrame(rows)
    frame.insert(0, "slide_id", predictions.slide_id)
    frame.insert(1, "trait", predictions.trait)
    return frame


def _score_row(model: str, positive: np.ndarray, tile_scores: np.ndarray, n_tiles: int) -> dict:
    """One model's slide-level numbers; a slide without tiles has undefined (NaN) scores."""
    if n_tiles == 0:
        return {"model": model, "score": float("nan"), "mean_tile_score": float("nan"), "n_tiles": 0}
    return {
        "model": model,
        "score": positive_fraction(positive),
        "mean_tile_score": float(np.mean(tile_scores, dtype=np.float64)),
        "n_tiles": n_tiles,
    }
