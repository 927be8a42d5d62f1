"""Snakemake script: survival by heterogeneity (KM, log-rank, Cox) and the paper's Figures 5a, 5b and 6."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.survival_outputs import SurvivalOutputs, write_survival

write_survival(
    snakemake.input.traits,
    snakemake.input.hti,
    snakemake.input.clinical,
    snakemake.input.labels,
    snakemake.input.splits,
    list(snakemake.params.survival["thresholds"]),
    SurvivalOutputs(snakemake.output.logrank, snakemake.output.cox, snakemake.output.cohort, snakemake.output.figures),
    log,
)
