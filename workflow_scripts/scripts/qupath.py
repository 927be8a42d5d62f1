"""Snakemake script: one QuPath GeoJSON (tiles classed by trait combination, with vote measurements) per slide."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.qupath import QupathInputs, write_qupath_exports

inputs = QupathInputs(
    traits=snakemake.input.traits,
    qc=snakemake.input.qc,
    cartography=snakemake.input.cartography,
    predictions=list(snakemake.input.predictions),
    members=snakemake.input.members,
    stores=list(snakemake.input.stores),
)
count = write_qupath_exports(inputs, float(snakemake.params.threshold), snakemake.output.qupath, log)
log.info("QuPath exports of %d slides written", count)
