"""Snakemake script: write the cohort's GDC slide manifest (user manifest or GDC query, minus exclusions)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.inputs.gdc_manifest import write_manifest
from workflow_scripts.inputs.gdc_query import build_manifest
from workflow_scripts.inputs.gdc_session import configured_client

settings = dict(snakemake.params.gdc)
# Runtime settings (token, retries, page size) are read from snakemake.config, not params, so editing them reruns
# nothing (rules/common.smk CONFIG_KEYS); a bare test namespace without `config` gets the defaults.
runtime = (getattr(snakemake, "config", {}).get("slides") or {}).get("gdc") or {}
client = configured_client(settings.get("api"), runtime.get("token_file"), runtime.get("retries"), log)
files = build_manifest(
    client,
    project=settings.get("project"),
    manifest=settings.get("manifest"),
    exclude=settings.get("exclude") or [],
    page_size=int(runtime.get("page_size") or 500),
)
if not files:
    raise SystemExit("the GDC manifest has no slides left; check slides.gdc.project, manifest and exclude")
write_manifest(files, snakemake.output.manifest)
log.info("wrote %d slides to %s", len(files), snakemake.output.manifest)
