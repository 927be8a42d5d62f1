"""Ensemble of the best split models per trait: top-k by validation slide AUC, majority vote per tile.

Tiles are always matched by their level-0 (x, y) coordinates, never by their position in a file, because
different writers (prediction jobs, tile stores) may store the same tiles in different orders.

Contract of evaluation/ensemble_members.tsv (written by `write_members`, read by `read_members`): columns
MEMBER_COLUMNS, one row per trait and split model: `best_val_slide_auc` (NaN when undefined), `rank` (1 = best;
ties broken by split number) and `chosen` (True for the top_k members of the vote).
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
from workflow_scripts.learning.run_outputs import read_metrics_file
from workflow_scripts.learning.slide_score import binarise, positive_fraction

MEMBER_COLUMNS = ["trait", "split", "best_val_slide_auc", "rank", "chosen"]


def read_metrics(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Collect trait, split and best validation slide AUC from models/{trait}/split_{k}/metrics.json files."""
    rows = []
    for path in paths:
        path = Path(path)
        metrics = read_metrics_file(path)
        split = metrics.get("split", _split_from_path(path))
        trait = metrics.get("trait", path.parent.parent.name)
        auc = metrics.get("best_val_slide_auc")
        rows.append({"trait": str(trait), "split": int(split), "best_val_slide_auc": _float_or_nan(auc)})
    return pd.DataFrame(rows, columns=["trait", "split", "best_val_slide_auc"])


def _split_from_path(path: Path) -> int:
    """Split index from a models/{trait}/split_{k}/metrics.json path, for metrics files lacking the field."""
    name = path.parent.name
    if not name.startswith("split_"):
        raise ValueError(f"{path}: no 'split' field and parent folder is not split_<k>")
    return int(name.removeprefix("split_"))


def _float_or_nan(value: object) -> float:
    """AUCs may be missing or null when validation had one class; treat those as NaN."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return number if math.isfinite(number) else float("nan")


def choose_members(metrics: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """Rank split models per trait by validation AUC (ties: lower split first; undefined AUC last); mark top k."""
    if top_k < 1:
        raise ValueError(f"ensemble top_k must be >= 1, got {top_k}")
    ranked = []
    for trait, group in metrics.groupby("trait", sort=True):
        order = group.assign(_undefined=group["best_val_slide_auc"].isna(), _auc=group["best_val_slide_auc"].fillna(0))
        order = order.sort_values(["_undefined", "_auc", "split"], ascending=[True, False, True], kind="mergesort")
        order = order.drop(columns=["_undefined", "_auc"]).reset_index(drop=True)
        order["rank"] = np.arange(1, len(order) + 1)
        order["chosen"] = order["rank"] <= top_k
        ranked.append(order)
    if not ranked:
        return pd.DataFrame(columns=MEMBER_COLUMNS)
    return pd.concat(ranked, ignore_index=True)[MEMBER_COLUMNS]


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
    members["best_val_slide_auc"] = pd.to_numeric(members["best_val_slide_auc"], errors="coerce")
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
