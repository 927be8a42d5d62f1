"""Snakemake script: score every QC-passed slide's tiles with all split models of one trait."""

from pathlib import Path

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821

from workflow_scripts.learning.model import limit_cpu_threads  # noqa: E402

limit_cpu_threads(int(snakemake.threads))  # noqa: F821  (before the backend runs anything)

from workflow_scripts.learning.predict import predict_trait  # noqa: E402
from workflow_scripts.learning.settings import TrainingSettings  # noqa: E402
from workflow_scripts.slides.qc_table import read_passed_slides  # noqa: E402

# Batch size and decoding workers only change how the job runs: read from snakemake.config, not tracked as params
# (rules/common.smk CONFIG_KEYS), so editing them reruns nothing.
runtime = snakemake.config["training"]  # noqa: F821
settings = TrainingSettings.from_config({key: runtime[key] for key in ("predict_batch_size", "workers")})
passed = set(read_passed_slides(snakemake.input.qc)["slide_id"])  # noqa: F821
stores = [Path(path) for path in snakemake.input.stores if Path(path).stem in passed]  # noqa: F821
written = predict_trait(
    model_paths=list(snakemake.input.models),  # noqa: F821
    splits=[int(split) for split in snakemake.params.splits],  # noqa: F821
    store_paths=stores,
    output_folder=snakemake.output.predictions,  # noqa: F821
    trait=str(snakemake.params.trait),  # noqa: F821
    batch_size=settings.predict_batch_size,
    workers=settings.workers,
    log=log.info,
)
log.info("predictions of %d slides written", len(written))
