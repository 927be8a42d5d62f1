"""Snakemake script: one cartography tensor (H x W x K ensemble calls, 255 = background) per QC-passed slide."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.cartography import write_cartographies

count = write_cartographies(
    snakemake.input.predictions,
    snakemake.input.members,
    snakemake.input.qc,
    snakemake.input.stores,
    list(snakemake.params.traits),
    float(snakemake.params.ensemble["threshold"]),
    snakemake.output.cartography,
    log,
)
log.info("cartographies of %d slides written", count)
