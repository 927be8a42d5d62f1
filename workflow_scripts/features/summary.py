"""The feature tables: the one owner of features/slides/{slide_id}.tsv, features/summary.tsv and features/qc.tsv.

Contract of features/slides/{slide_id}.tsv (one row, written by `embed` beside the slide's feature store) and of
features/summary.tsv (those rows for every QC-passed slide, sorted by slide_id), columns FEATURE_COLUMNS:
- ``slide_id``; ``status``: ``pass`` or ``fail``; ``reason``: why the slide has no usable features ('' on pass);
- ``source`` (encoder or import), ``encoder`` (name), ``weights_sha256`` ('' when unknown), ``dim`` (D);
- ``n_store_tiles`` (tiles in the slide's tile store), ``n_features`` (tiles embedded or matched),
  ``n_unmatched`` (store tiles an import did not cover: n_store_tiles - n_features), ``unmatched_fraction``
  (n_unmatched / n_store_tiles, NaN without tiles), ``source_file`` (the imported file, '' for an encoder).
features/qc.tsv is the QC table (slides/qc_table.py owns its format) every stage after `embed` reads in the
features model family: a slide that failed QC stays failed, a slide whose features failed becomes ``fail`` with
the reason ``features: <reason>``, and a passing slide's ``n_tiles`` becomes its ``n_features``, so "passed QC"
keeps one meaning (`qc_table.passed_slides`) and a bad slide is a recorded failure that never stops the cohort.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from workflow_scripts.common.tables import read_text_table, write_tsv
from workflow_scripts.features.featurestore import SlideFeatures
from workflow_scripts.slides.qc_table import STATUSES, write_qc_table

FEATURE_COLUMNS = ("slide_id", "status", "reason", "source", "encoder", "weights_sha256", "dim", "n_store_tiles",
                   "n_features", "n_unmatched", "unmatched_fraction", "source_file")  # fmt: skip
COUNT_COLUMNS = ("dim", "n_store_tiles", "n_features", "n_unmatched")
FEATURES_FAILED = "features: "


def feature_row(slide: SlideFeatures, status: str = "pass", reason: str = "") -> dict[str, object]:
    """The summary row of one slide's feature store (a failed slide's store holds no tiles)."""
    if status not in STATUSES:
        raise ValueError(f"slide {slide.slide_id}: feature status must be one of {list(STATUSES)}, got {status!r}")
    n_store = slide.attrs.n_store_tiles
    n_unmatched = n_store - slide.n_tiles
    return {
        "slide_id": slide.slide_id, "status": status, "reason": reason, "source": slide.attrs.source,
        "encoder": slide.attrs.encoder, "weights_sha256": slide.attrs.weights_sha256, "dim": slide.dim,
        "n_store_tiles": n_store, "n_features": slide.n_tiles, "n_unmatched": n_unmatched,
        "unmatched_fraction": n_unmatched / n_store if n_store else math.nan, "source_file": slide.attrs.source_file,
    }


def write_feature_row(path: str | os.PathLike, row: dict[str, object]) -> Path:
    """Write one slide's features/slides/{slide_id}.tsv atomically."""
    write_tsv(pd.DataFrame([row], columns=list(FEATURE_COLUMNS)), path)
    return Path(path)


def read_feature_rows(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Per-slide rows (or summary files) as one typed table sorted by slide_id; errors name the file."""
    frames = [_parse(read_text_table(path, FEATURE_COLUMNS)[list(FEATURE_COLUMNS)], path) for path in paths]
    if not frames:
        return _parse(pd.DataFrame(columns=list(FEATURE_COLUMNS)), "no feature rows")
    table = pd.concat(frames, ignore_index=True).sort_values("slide_id", kind="stable").reset_index(drop=True)
    duplicated = sorted(set(table["slide_id"][table["slide_id"].duplicated()]))
    if duplicated:
        raise ValueError(f"feature rows name slide(s) more than once: {duplicated}")
    return table


def _parse(table: pd.DataFrame, path: str | os.PathLike) -> pd.DataFrame:
    """Counts as int, the fraction as float, statuses checked."""
    unknown = sorted(set(table["status"]) - set(STATUSES))
    if unknown:
        raise ValueError(f"{path}: unknown feature status value(s) {unknown}; expected pass or fail")
    table = table.copy()
    for column in COUNT_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="raise").astype(int)
    table["unmatched_fraction"] = pd.to_numeric(table["unmatched_fraction"].replace({"": None}), errors="raise")
    return table.astype({"unmatched_fraction": float})


def analysis_qc(qc: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """The QC table of the stages after `embed`: feature failures marked failed, n_tiles = embedded tiles.

    A slide that passed QC but has no feature row is a programming error of the caller (embed runs for every
    QC-passed slide), so it is refused naming the slides.
    """
    table = qc.copy()
    by_slide = features.set_index("slide_id")
    passed = table["status"] == "pass"
    missing = sorted(set(table.loc[passed, "slide_id"]) - set(by_slide.index))
    if missing:
        raise ValueError(f"QC-passed slide(s) without a feature row: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    rows = by_slide.reindex(table["slide_id"])
    failed = passed & (rows["status"].to_numpy() == "fail")
    table.loc[failed, "status"] = "fail"
    table.loc[failed, "reason"] = [FEATURES_FAILED + reason for reason in rows.loc[failed.to_numpy(), "reason"]]
    still = table["status"] == "pass"
    table.loc[still, "n_tiles"] = rows.loc[still.to_numpy(), "n_features"].to_numpy()
    table.loc[~still, "n_tiles"] = 0
    return table


def write_feature_tables(
    rows: Sequence[str | os.PathLike], qc: pd.DataFrame, summary_path: str | os.PathLike, qc_path: str | os.PathLike
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write features/summary.tsv from the per-slide rows and features/qc.tsv from the QC table; return both."""
    features = read_feature_rows(rows)
    table = analysis_qc(qc, features)
    write_tsv(features[list(FEATURE_COLUMNS)], summary_path)
    write_qc_table(table, qc_path)
    return features, table
