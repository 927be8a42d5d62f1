"""Snakemake script: train one trait's Inception v3 on one train/validation split (resumes from its checkpoint).

Import order matters: Keras reads KERAS_BACKEND at its first import and the frameworks read CUDA_VISIBLE_DEVICES and
XLA_FLAGS when they start, so the settings (which import no framework) come first, then `prepare_backend`, then
everything that imports keras.
"""

import os
from pathlib import Path

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.learning.backend_setup import prepare_backend
from workflow_scripts.learning.settings import RunSpec, TrainingOutputs, TrainingSettings

log.info("job sees CUDA_VISIBLE_DEVICES=%s", os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
# params.training holds the keys that change the model; decoding workers, the scoring batch and the device only change
# how the job runs, so they come from snakemake.config (not tracked: editing them retrains nothing; see CONFIG_KEYS in
# rules/common.smk).
runtime = {key: snakemake.config["training"][key] for key in ("workers", "predict_batch_size", "device")}
threshold = {"threshold": float(snakemake.params.threshold)}
settings = TrainingSettings.from_config(dict(snakemake.params.training) | runtime | threshold)
log.info(
    "training.backend %s, device %s: set %s before importing keras",
    settings.backend, settings.device, prepare_backend(settings.backend, settings.device, settings.deterministic),
)

from workflow_scripts.learning.model import limit_cpu_threads

limit_cpu_threads(int(snakemake.threads))  # before the backend runs anything

from workflow_scripts.learning.train import train_from_tables

outputs = TrainingOutputs.beside(snakemake.output.model, snakemake.output.history, snakemake.output.metrics)
metrics = train_from_tables(
    labels_path=snakemake.input.labels,
    splits_path=snakemake.input.splits,
    qc_path=snakemake.input.qc,
    store_paths=[Path(path) for path in snakemake.input.stores],
    settings=settings,
    run=RunSpec(
        trait=str(snakemake.params.trait),
        split=int(snakemake.params.split),
        seed=int(snakemake.params.seed),
    ),
    outputs=outputs,
    log=log.info,
)
log.info(
    "done: best val slide AUC %s at eval %s (%s), %.0f s, %.1f training tiles/s",
    metrics["best_val_slide_auc"], metrics["best_eval_step"], metrics["stop_reason"], metrics["seconds"],
    metrics["tiles_per_second"],
)
