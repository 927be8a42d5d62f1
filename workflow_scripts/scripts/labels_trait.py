"""Snakemake script: percentile labels of one trait for the cohort's patients (labels/{trait}.tsv)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.learning.labels import make_trait_labels_file

make_trait_labels_file(
    snakemake.input.matrix,
    snakemake.input.slides,
    dict(snakemake.params.trait),
    dict(snakemake.params.labels),
    snakemake.output.labels,
    log,
)
