"""Snakemake script: train one trait's head on tile features for one train/validation split (resumes if killed).

Import order matters, as in scripts/train.py: Keras reads KERAS_BACKEND at its first import and the frameworks read
CUDA_VISIBLE_DEVICES and XLA_FLAGS when they start, so the settings (which import no framework) come first, then
`prepare_backend`, then everything that imports keras.
"""

import os

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.learning.backend_setup import prepare_backend
from workflow_scripts.learning.heads import HeadSettings, head_training_settings
from workflow_scripts.learning.settings import RunSpec, TrainingOutputs

log.info("job sees CUDA_VISIBLE_DEVICES=%s", os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
# params.head (features.head) and params.training (the schedule keys) change the model; decoding workers, the scoring
# batch and the device only change how the job runs, so they come from snakemake.config (see scripts/train.py).
head = HeadSettings.from_config(dict(snakemake.params.head))
runtime = {key: snakemake.config["training"][key] for key in ("workers", "predict_batch_size", "device")}
threshold = {"threshold": float(snakemake.params.threshold)}
settings = head_training_settings(dict(snakemake.params.training) | runtime | threshold, head)
log.info(
    "training.backend %s, device %s: set %s before importing keras",
    settings.backend, settings.device, prepare_backend(settings.backend, settings.device, settings.deterministic),
)

from workflow_scripts.learning.model import limit_cpu_threads

limit_cpu_threads(int(snakemake.threads))  # before the backend runs anything

from workflow_scripts.features.featurestore import feature_files
from workflow_scripts.learning.train import train_head_from_tables

metrics = train_head_from_tables(
    labels_path=snakemake.input.labels,
    splits_path=snakemake.input.splits,
    qc_path=snakemake.input.qc,
    feature_paths=feature_files(snakemake.input.features),  # the encoder's group folders hold several
    settings=settings,
    head=head,
    run=RunSpec(
        trait=str(snakemake.params.trait),
        split=int(snakemake.params.split),
        seed=int(snakemake.params.seed),
    ),
    outputs=TrainingOutputs.beside(snakemake.output.model, snakemake.output.history, snakemake.output.metrics),
    log=log.info,
)
log.info(
    "done: %s head, best val slide AUC %s at eval %s (%s), %.0f s, %.1f training tiles/s",
    metrics["head_kind"], metrics["best_val_slide_auc"], metrics["best_eval_step"], metrics["stop_reason"],
    metrics["seconds"], metrics["tiles_per_second"],
)
