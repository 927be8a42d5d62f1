"""Snakemake script: survival by heterogeneity (KM, log-rank, Cox, group tests) and the paper's Figures 5a, 5b, 6."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.survival import SurvivalSettings
from workflow_scripts.analysis.survival_outputs import SurvivalOutputs, write_survival

output = snakemake.output
write_survival(
    snakemake.input.traits,
    snakemake.input.hti,
    snakemake.input.clinical,
    snakemake.input.labels,
    snakemake.input.splits,
    SurvivalSettings.from_config(dict(snakemake.params.survival)),
    SurvivalOutputs(output.logrank, output.cox, output.cohort, output.figures, output.group_tests),
    log,
)
