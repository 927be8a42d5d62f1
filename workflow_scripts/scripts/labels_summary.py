"""Snakemake script: concatenate the per-trait labels and count patients and slides per trait, set and label."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.learning.labels import make_labels_summary_files  # noqa: E402

make_labels_summary_files(
    list(snakemake.input.labels),  # noqa: F821
    snakemake.input.slides,  # noqa: F821
    snakemake.output.labels,  # noqa: F821
    snakemake.output.summary,  # noqa: F821
    log,
)
