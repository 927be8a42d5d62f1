"""Snakemake script: JPEG copies of the heterogeneity maps and QC thumbnails at a capped size, for the report."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.report_images import REPORT_MAX_PX, write_report_images

maps, thumbnails = write_report_images(
    snakemake.input.maps, list(snakemake.input.thumbnails), snakemake.output.maps, snakemake.output.thumbnails
)
log.info("report copies (long side <= %d px): %d maps, %d thumbnails", REPORT_MAX_PX, maps, thumbnails)
