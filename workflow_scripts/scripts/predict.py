"""Snakemake script: score every QC-passed slide's tiles with all split models of one trait, for either model family.

The family follows the rule's inputs: with `features` (feature stores; qc is then features/qc.tsv) the models are
heads scored on the features, else Inception v3 models scored on the tile `stores`. Like scripts/train.py it sets
the Keras backend and the visible devices before anything imports keras.
"""

import os
from pathlib import Path

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.learning.backend_setup import prepare_backend
from workflow_scripts.learning.settings import TrainingSettings

# Batch size, decoding workers, backend and device only change how the job runs (the models are backend-neutral
# .keras files): read from snakemake.config, not tracked as params (rules/common.smk CONFIG_KEYS), so editing them
# reruns nothing.
runtime = snakemake.config["training"]
keys = ("predict_batch_size", "workers", "backend", "device", "deterministic")
settings = TrainingSettings.from_config({key: runtime[key] for key in keys})
log.info("job sees CUDA_VISIBLE_DEVICES=%s", os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
log.info(
    "training.backend %s, device %s: set %s before importing keras",
    settings.backend, settings.device, prepare_backend(settings.backend, settings.device, settings.deterministic),
)

from workflow_scripts.learning.model import limit_cpu_threads

limit_cpu_threads(int(snakemake.threads))  # before the backend runs anything

from workflow_scripts.features.featurestore import feature_files
from workflow_scripts.learning.heads import HEAD_SCORING_BATCH
from workflow_scripts.learning.predict import predict_trait, predict_trait_features
from workflow_scripts.slides.qc_table import read_passed_slides

passed = set(read_passed_slides(snakemake.input.qc)["slide_id"])
models = list(snakemake.input.models)
splits = [int(split) for split in snakemake.params.splits]
trait = str(snakemake.params.trait)
if "features" in snakemake.input.keys():
    features = feature_files(snakemake.input.features, passed)  # the encoder's group folders hold several
    written = predict_trait_features(
        models, splits, features, snakemake.output.predictions, trait,
        batch_size=max(settings.predict_batch_size, HEAD_SCORING_BATCH), device=settings.device, log=log.info,
    )
else:
    stores = [Path(path) for path in snakemake.input.stores if Path(path).stem in passed]
    written = predict_trait(
        models, splits, stores, snakemake.output.predictions, trait, batch_size=settings.predict_batch_size,
        workers=settings.workers, device=settings.device, log=log.info,
    )
log.info("predictions of %d slides written", len(written))
