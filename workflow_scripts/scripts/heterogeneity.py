"""Snakemake script: HTI, HTA (with permutation p-values) and heterogeneity maps per slide."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.maps import overlay_alpha
from workflow_scripts.analysis.slide_heterogeneity import HeterogeneityOutputs, HtaSettings, write_heterogeneity

table = write_heterogeneity(
    snakemake.input.traits,
    snakemake.input.qc,
    snakemake.input.cartography,
    snakemake.input.stores,
    HtaSettings(int(snakemake.params.hta_region), int(snakemake.params.permutations), int(snakemake.params.seed),
                str(snakemake.params.hta_log_base), overlay_alpha({"alpha": snakemake.params.map_alpha})),
    HeterogeneityOutputs(snakemake.output.hti, snakemake.output.maps, snakemake.output.gallery),
    log,
)
log.info("heterogeneity of %d slides written", len(table))
