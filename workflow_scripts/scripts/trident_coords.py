"""Snakemake script: every QC-passed slide's tile coordinates as a TRIDENT patch file, so TRIDENT's feature
extraction (pointed at this folder) embeds exactly the tiles of the tile stores."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from pathlib import Path

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.features.trident_export import export_trident_coords
from workflow_scripts.slides.qc_table import read_passed_slides

passed = set(read_passed_slides(snakemake.input.qc)["slide_id"])
stores = [Path(path) for path in snakemake.input.stores if Path(path).stem in passed]
with atomic_path(snakemake.output.patches) as folder:
    folder.mkdir()
    for store in stores:
        written = export_trident_coords(store, folder)
        log.info("%s: %s", store.stem, written.name)
log.info("TRIDENT patch files of %d slides written to %s", len(stores), snakemake.output.patches)
