"""Snakemake script: features/summary.tsv from the per-slide feature rows, and features/qc.tsv, the QC table the
stages after `embed` read (slides without usable features marked failed, with the reason)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from pathlib import Path

from workflow_scripts.features.summary import write_feature_tables
from workflow_scripts.slides.qc_table import read_qc_table

# the encoder's group folders hold their slides' rows
paths = map(Path, snakemake.input.rows)
rows = [row for path in paths for row in (sorted(path.glob("*.tsv")) if path.is_dir() else [path])]
qc = read_qc_table(snakemake.input.qc)
features, table = write_feature_tables(rows, qc, snakemake.output.summary, snakemake.output.qc)
failed = features[features["status"] == "fail"]
log.info(
    "%d slides with features (%d tiles, %d store tiles unmatched), %d without",
    len(features) - len(failed), int(features["n_features"].sum()), int(features["n_unmatched"].sum()), len(failed),
)
for _, row in failed.iterrows():
    log.warning("%s has no usable features: %s", row["slide_id"], row["reason"])
