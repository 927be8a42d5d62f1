"""Snakemake script: survival and clinical covariates per patient (survival/clinical.tsv)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.inputs.covariates import CovariateSource, make_clinical_file

covariate_files = getattr(snakemake.input, "covariates", [])
covariate_files = [covariate_files] if isinstance(covariate_files, str) else list(covariate_files)
entries = list(getattr(snakemake.params, "covariates", None) or [])
if len(covariate_files) != len(entries):
    raise ValueError(f"{len(covariate_files)} covariate files for {len(entries)} clinical.covariates entries")
make_clinical_file(
    snakemake.input.clinical,
    str(snakemake.params.format),
    snakemake.output.clinical,
    [CovariateSource.from_config(path, entry) for path, entry in zip(covariate_files, entries)],
    log,
    exclude_redacted=bool(getattr(snakemake.params, "exclude_redacted", True)),
)
