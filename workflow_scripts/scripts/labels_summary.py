"""Snakemake script: concatenate the per-trait labels and count patients and slides per trait, set and label."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.learning.labels import make_labels_summary_files

make_labels_summary_files(
    list(snakemake.input.labels),
    snakemake.input.slides,
    snakemake.output.labels,
    snakemake.output.summary,
    log,
)
