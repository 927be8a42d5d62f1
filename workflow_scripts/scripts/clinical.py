"""Snakemake script: survival and clinical covariates per patient (survival/clinical.tsv)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.inputs.clinical import make_clinical_file

make_clinical_file(
    snakemake.input.clinical,
    str(snakemake.params.format),
    snakemake.output.clinical,
    log,
    exclude_redacted=bool(getattr(snakemake.params, "exclude_redacted", True)),
)
