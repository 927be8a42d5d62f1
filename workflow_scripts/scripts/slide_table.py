"""Snakemake script: write resources/{cohort}/slides.tsv from a GDC manifest, a slide folder or a local table."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821 - injected by Snakemake

from workflow_scripts.inputs.slidetable import build_slide_table, write_slide_table  # noqa: E402

inputs = snakemake.input  # noqa: F821
manifest = inputs.get("manifest") if hasattr(inputs, "get") else getattr(inputs, "manifest", None)
records = build_slide_table(
    slides=dict(snakemake.params.slides),  # noqa: F821
    cohort=snakemake.params.cohort,  # noqa: F821
    manifest=manifest,
    log=log,
)
write_slide_table(records, snakemake.output.table)  # noqa: F821
log.info("wrote %d slides to %s", len(records), snakemake.output.table)  # noqa: F821
