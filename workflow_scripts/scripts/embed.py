"""Snakemake script: stage `embed` of the features family, one feature store and feature row per slide.

Source import (one slide a job): the slide's TRIDENT/CLAM/STAMP file matched to its tile store's tiles; a slide
whose file is missing, of another resolution or covering too few tiles gets an empty store and a fail row with the
reason (features/qc.tsv then leaves it out), never a failed job. Source encoder (one group of slides a job): every
tile through the encoder, loaded once; like scripts/train.py it sets the Keras backend and the visible devices
before anything imports keras.
"""

from pathlib import Path

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.features.featurestore import read_features, write_features
from workflow_scripts.features.summary import feature_row, write_feature_row

settings = dict(snakemake.params.features)
source = settings.pop("source")

if source == "import":
    from workflow_scripts.features.importing import ImportSettings, import_slide

    if settings.get("planted"):  # the demo's generated folder, an input of this job
        settings["folder"] = str(snakemake.input.imported)
    result = import_slide(snakemake.input.store, ImportSettings.from_config(settings))
    write_features(snakemake.output.features, result.features)
    write_feature_row(snakemake.output.row, feature_row(result.features, result.status, result.reason))
    slide = result.features
    if result.status == "pass":
        log.info(
            "%s: %d of %d store tiles matched to %s (%d imported patches; %.1f um, the store's %.1f um), D = %d",
            slide.slide_id, slide.n_tiles, slide.attrs.n_store_tiles, slide.attrs.source_file, result.n_imported,
            result.found_um, result.expected_um, slide.dim,
        )
    else:
        log.warning("%s: no usable features, recorded as a failure: %s", slide.slide_id, result.reason)
else:
    from workflow_scripts.common.atomic import atomic_path
    from workflow_scripts.learning.backend_setup import prepare_backend
    from workflow_scripts.learning.settings import TrainingSettings

    training = snakemake.config["training"]
    runtime = TrainingSettings.from_config(
        {key: training[key] for key in ("device", "backend", "mixed_precision", "workers", "deterministic")}
    )
    log.info(
        "training.backend %s, device %s: set %s before importing keras",
        runtime.backend, runtime.device, prepare_backend(runtime.backend, runtime.device, runtime.deterministic),
    )
    from workflow_scripts.learning.model import limit_cpu_threads

    limit_cpu_threads(int(snakemake.threads))

    from workflow_scripts.features.embed import embed_slides
    from workflow_scripts.features.encoder import EncoderSettings

    settings.pop("slides_per_job", None)  # the grouping, decided by the rule
    settings["batch_size"] = snakemake.config["features"]["encoder"]["batch_size"]  # runtime: not a param
    encoder = EncoderSettings.from_config(settings)
    stores = [Path(path) for path in snakemake.input.stores]
    with atomic_path(snakemake.output.group) as folder:
        folder.mkdir()
        written = embed_slides(
            stores, [folder / f"{store.stem}.h5" for store in stores], encoder, runtime,
            int(snakemake.params.seed), log.info,
        )
        for path in written:
            write_feature_row(path.with_suffix(".tsv"), feature_row(read_features(path)))
    log.info("%d slides embedded into %s", len(written), snakemake.output.group)
