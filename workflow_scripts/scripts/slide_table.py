"""Snakemake script: write resources/{cohort}/slides.tsv from a GDC manifest, a slide folder or a local table."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.inputs.barcodes import PRIMARY_SAMPLE_TYPES
from workflow_scripts.inputs.slidetable import build_slide_table, write_excluded_slides, write_slide_table

inputs = snakemake.input
manifest = inputs.get("manifest") if hasattr(inputs, "get") else getattr(inputs, "manifest", None)
slides = dict(snakemake.params.slides)
excluded = []
records = build_slide_table(
    slides=slides,
    cohort=snakemake.params.cohort,
    manifest=manifest,
    log=log,
    sample_types=PRIMARY_SAMPLE_TYPES if slides.get("sample_types") is None else slides["sample_types"],
    dropped=excluded,
)
write_excluded_slides(excluded, snakemake.output.excluded)
write_slide_table(records, snakemake.output.table)
log.info("wrote %d slides to %s (%d excluded, in %s)", len(records), snakemake.output.table, len(excluded),
         snakemake.output.excluded)
