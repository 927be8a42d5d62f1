"""Snakemake script: patient-level test and train/val splits from the QC slide table (splits/splits.tsv)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.learning.splits import make_splits_file

make_splits_file(
    snakemake.input.qc,
    dict(snakemake.params.splits),
    int(snakemake.params.seed),
    snakemake.output.splits,
    log,
)
