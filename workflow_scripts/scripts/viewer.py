"""Snakemake script: the cohort's zoomable slide viewer, one self-contained viewer/index.html (Bokeh, no server)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.analysis.viewer import ViewerSettings
from workflow_scripts.analysis.viewer_page import write_viewer

views = write_viewer(
    snakemake.input.hti,
    snakemake.input.traits,
    {
        "stores": snakemake.input.stores,
        "cartography": snakemake.input.cartography,
        "predictions": snakemake.input.predictions,
        "members": snakemake.input.members,
    },
    ViewerSettings.from_config(dict(snakemake.params.viewer), {"alpha": snakemake.params.map_alpha}),
    snakemake.output.viewer,
    f"Slide viewer: cohort {snakemake.params.cohort}",
    log,
)
log.info("viewer of %d slides written", len(views))
