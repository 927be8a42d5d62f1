"""Snakemake script: one cartography tensor (H x W x K ensemble calls, 255 = background) per QC-passed slide."""

from pathlib import Path

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.common.atomic import atomic_path  # noqa: E402
from workflow_scripts.analysis.cartography import read_store_layout, slide_cartography, write_cartography  # noqa: E402
from workflow_scripts.analysis.ensemble import chosen_splits, read_members  # noqa: E402
from workflow_scripts.learning.predictions import prediction_path, read_predictions  # noqa: E402
from workflow_scripts.slides.qc_table import read_passed_slides  # noqa: E402

traits = list(snakemake.params.traits)  # noqa: F821
threshold = float(snakemake.params.ensemble["threshold"])  # noqa: F821
prediction_dirs = {Path(path).name: Path(path) for path in snakemake.input.predictions}  # noqa: F821
members_table = read_members(snakemake.input.members)  # noqa: F821
members = [chosen_splits(members_table, trait) for trait in traits]
stores = {Path(path).stem: path for path in snakemake.input.stores}  # noqa: F821
slides = read_passed_slides(snakemake.input.qc)  # noqa: F821

with atomic_path(snakemake.output.cartography) as directory:  # noqa: F821
    directory.mkdir()
    for slide_id in slides["slide_id"]:
        if slide_id not in stores:
            raise FileNotFoundError(f"no tile store given for QC-passed slide {slide_id}")
        layout = read_store_layout(stores[slide_id])
        predictions = []
        for trait in traits:
            path = prediction_path(prediction_dirs[trait], slide_id)
            if not path.exists():
                raise FileNotFoundError(f"slide {slide_id}: no predictions of trait {trait} at {path}")
            predictions.append(read_predictions(path, trait))
        tensor = slide_cartography(layout, predictions, members, threshold)
        write_cartography(directory / f"{slide_id}.h5", tensor, traits, slide_id)
        log.info("%s: cartography %s, %d tiles", slide_id, tensor.shape, len(layout.coords))
log.info("cartographies of %d slides written", len(slides))
