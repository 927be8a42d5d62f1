"""Snakemake script: write the cohort's GDC slide manifest (user manifest or GDC query) and its rejected rows.

Exclusions (slides.exclude, slides.sample_types) are the slide table's: excluded slides stay in the manifest so the
QC table can list them as failed."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.inputs.gdc_manifest import write_manifest, write_rejected
from workflow_scripts.inputs.gdc_query import build_manifest
from workflow_scripts.inputs.gdc_session import configured_client

settings = dict(snakemake.params.gdc)
# Runtime settings (token, retries, page size) are read from snakemake.config, not params, so editing them reruns
# nothing (rules/common.smk CONFIG_KEYS); a bare test namespace without `config` gets the defaults.
runtime = (getattr(snakemake, "config", {}).get("slides") or {}).get("gdc") or {}
client = configured_client(settings.get("api"), runtime.get("token_file"), runtime.get("retries"), log)
rejected = []
files = build_manifest(
    client,
    project=settings.get("project"),
    manifest=settings.get("manifest"),
    page_size=int(runtime.get("page_size") or 500),
    rejected=rejected,
)
if not files:
    raise SystemExit("the GDC manifest has no slides; check slides.gdc.project and slides.gdc.manifest")
write_rejected(rejected, snakemake.output.rejected)
write_manifest(files, snakemake.output.manifest)
log.info("wrote %d slides to %s", len(files), snakemake.output.manifest)
if rejected:
    log.warning("%d row(s) rejected, listed in %s:", len(rejected), snakemake.output.rejected)
    for row in rejected:
        log.warning("  %s", row.describe())
