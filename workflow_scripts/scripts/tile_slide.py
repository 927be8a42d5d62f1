"""Snakemake script: tile one slide into its tile store, QC row and QC thumbnail (a failed slide writes all three)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.slides.qc_table import write_qc_row
from workflow_scripts.slides.qc_thumbnail import qc_image
from workflow_scripts.slides.tiling import TilingConfig, tile_slide

qc = tile_slide(
    slide_path=snakemake.input.slide,
    store_path=snakemake.output.store,
    slide_id=snakemake.wildcards.slide_id,
    patient_id=str(snakemake.params.patient_id),
    # the slide's own tiling.mpp_overrides entry is its default_mpp (used only without resolution metadata)
    config=TilingConfig.from_params(dict(snakemake.params.tiling, default_mpp=snakemake.params.default_mpp)),
    threads=snakemake.threads,
    log=log,
)
write_qc_row(snakemake.output.qc, qc.row())
with atomic_path(snakemake.output.thumbnail) as temporary:
    qc_image(qc).save(temporary, format="PNG")
