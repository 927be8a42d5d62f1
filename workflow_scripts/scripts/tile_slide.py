"""Snakemake script: tile one slide into its tile store, QC row and QC thumbnail (a failed slide writes all three)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821 (injected by Snakemake)

from workflow_scripts.common.atomic import atomic_path  # noqa: E402
from workflow_scripts.slides.qc_table import write_qc_row  # noqa: E402
from workflow_scripts.slides.qc_thumbnail import qc_image  # noqa: E402
from workflow_scripts.slides.tiling import TilingConfig, tile_slide  # noqa: E402

qc = tile_slide(
    slide_path=snakemake.input.slide,  # noqa: F821
    store_path=snakemake.output.store,  # noqa: F821
    slide_id=snakemake.wildcards.slide_id,  # noqa: F821
    patient_id=str(snakemake.params.patient_id),  # noqa: F821
    # the slide's own tiling.mpp_overrides entry is its default_mpp (used only without resolution metadata)
    config=TilingConfig.from_params(dict(snakemake.params.tiling, default_mpp=snakemake.params.default_mpp)),  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    log=log,
)
write_qc_row(snakemake.output.qc, qc.row())  # noqa: F821
with atomic_path(snakemake.output.thumbnail) as temporary:  # noqa: F821
    qc_image(qc).save(temporary, format="PNG")
