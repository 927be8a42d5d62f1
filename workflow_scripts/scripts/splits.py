"""Snakemake script: patient-level test and train/val splits from the QC slide table (splits/splits.tsv)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.learning.splits import make_splits_file  # noqa: E402

make_splits_file(
    snakemake.input.qc,  # noqa: F821
    dict(snakemake.params.splits),  # noqa: F821
    int(snakemake.params.seed),  # noqa: F821
    snakemake.output.splits,  # noqa: F821
    log,
)
