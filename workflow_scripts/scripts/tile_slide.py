"""Snakemake script: tile one slide into its tile store, QC row and QC thumbnail (a failed slide writes all three).

A GDC slide comes with its download status: when the download failed for good, the slide is not opened and the
three outputs say why (a fail QC row with the download's reason, an empty tile store, a blank thumbnail)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from pathlib import Path

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.inputs.download_status import read_download_status
from workflow_scripts.slides.qc_table import download_failure_row, write_qc_row
from workflow_scripts.slides.qc_thumbnail import qc_image
from workflow_scripts.slides.tiling import TilingConfig, tile_slide, unopened_slide

inputs = snakemake.input
status_path = inputs.get("download") if hasattr(inputs, "get") else getattr(inputs, "download", None)
status = read_download_status(status_path) if status_path else None
slide_id, patient_id = snakemake.wildcards.slide_id, str(snakemake.params.patient_id)
# the slide's own tiling.mpp_overrides entry is its default_mpp (used only without resolution metadata)
config = TilingConfig.from_params(dict(snakemake.params.tiling, default_mpp=snakemake.params.default_mpp))
if status is not None and not status.ok:
    log.error("%s: not tiled, the download failed (%s): %s", slide_id, status_path, status.reason)
    row = download_failure_row(slide_id, patient_id, status.reason)
    qc = unopened_slide(snakemake.output.store, slide_id, patient_id, row["reason"], config, status.path)
else:
    slide_path = status.path if status is not None else inputs.slide
    if status is not None and not Path(slide_path).is_file():
        raise FileNotFoundError(
            f"{slide_id}: download status {status_path} says ok but {slide_path} is missing; rerun its download "
            f"with --forcerun {status_path} (or delete that status file)"
        )
    qc = tile_slide(slide_path=slide_path, store_path=snakemake.output.store, slide_id=slide_id,
                    patient_id=patient_id, config=config, threads=snakemake.threads, log=log)
    row = qc.row()
write_qc_row(snakemake.output.qc, row)
with atomic_path(snakemake.output.thumbnail) as temporary:
    qc_image(qc).save(temporary, format="PNG")
