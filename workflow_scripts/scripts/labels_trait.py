"""Snakemake script: percentile labels of one trait for the cohort's patients (labels/{trait}.tsv)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.learning.labels import make_trait_labels_file  # noqa: E402

make_trait_labels_file(
    snakemake.input.matrix,  # noqa: F821
    snakemake.input.slides,  # noqa: F821
    dict(snakemake.params.trait),  # noqa: F821
    dict(snakemake.params.labels),  # noqa: F821
    snakemake.output.labels,  # noqa: F821
    log,
)
