"""Snakemake script: survival and clinical covariates per patient (survival/clinical.tsv)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.inputs.clinical import make_clinical_file  # noqa: E402

make_clinical_file(
    snakemake.input.clinical,  # noqa: F821
    str(snakemake.params.format),  # noqa: F821
    snakemake.output.clinical,  # noqa: F821
    log,
)
