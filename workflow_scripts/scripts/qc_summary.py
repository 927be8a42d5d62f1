"""Snakemake script: concatenate the per-slide QC rows into qc/slides.tsv, adding the slides the slide table left out
(slides_excluded.tsv) as failed, and list every slide not analysed, and why, in qc/failures.tsv."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.inputs.slidetable import read_excluded_slides
from workflow_scripts.slides.qc_table import summarise_qc

inputs = snakemake.input
excluded_path = inputs.get("excluded") if hasattr(inputs, "get") else getattr(inputs, "excluded", None)
table = summarise_qc(
    list(inputs.rows),
    snakemake.params.exclude or [],
    snakemake.output.table,
    excluded=read_excluded_slides(excluded_path) if excluded_path else None,
    failures_path=snakemake.output.failures,
)
failed = table[table["status"] == "fail"]
log.info("%d slides: %d pass, %d fail", len(table), len(table) - len(failed), len(failed))
for _, row in failed.iterrows():
    log.warning("%s not analysed: %s", row["slide_id"], row["reason"])
