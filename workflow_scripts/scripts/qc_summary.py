"""Snakemake script: concatenate the per-slide QC rows into qc/slides.tsv, failing slides excluded by config."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.slides.qc_table import summarise_qc

table = summarise_qc(snakemake.input.rows, snakemake.params.exclude or [], snakemake.output.table)
log.info(
    "%d slides: %d pass, %d fail",
    len(table),
    int((table["status"] == "pass").sum()),
    int((table["status"] == "fail").sum()),
)
