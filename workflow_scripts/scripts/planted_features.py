"""Snakemake script: the synthetic cohort's planted tile features as TRIDENT feature files (demo/planted_features.py),
the folder the features family imports in config/demo_features.yaml."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.demo.planted_features import PlantedFeatures, write_planted_folder
from workflow_scripts.inputs.slidetable import read_slide_table

slides = read_slide_table(snakemake.input.slides)
planted = PlantedFeatures.from_config(snakemake.params.planted)
count = write_planted_folder(
    snakemake.input.truth,
    dict(zip(slides["slide_id"], slides["path"].astype(str))),
    snakemake.output.features,
    planted,
    int(snakemake.params.tile_px),
    int(snakemake.params.seed),
)
log.info("planted features (%s) of %d slides written to %s", planted, count, snakemake.output.features)
