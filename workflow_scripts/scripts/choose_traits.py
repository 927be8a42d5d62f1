"""Snakemake script: the traits whose cartographies feed the heterogeneity analysis (configured or top n by AUC)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.survival_outputs import write_chosen_traits

configured = snakemake.params.traits
choose_by = str(snakemake.params.choose_by)
traits = write_chosen_traits(snakemake.input.table1, snakemake.input.members, configured, int(snakemake.params.n),
                             choose_by, snakemake.output.traits)
log.info("heterogeneity traits: %s (%s)", traits, "configured" if configured else f"best {choose_by}")
