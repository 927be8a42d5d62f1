"""Snakemake script: write the cohort's GDC slide manifest (user manifest or GDC query, minus exclusions)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821 - injected by Snakemake

from workflow_scripts.inputs.gdc import DEFAULT_API, RetryPolicy, build_manifest, open_session, read_token, write_manifest  # noqa: E402

settings = dict(snakemake.params.gdc)  # noqa: F821
session = open_session(read_token(settings.get("token_file")))
policy = RetryPolicy(retries=int(settings.get("retries", RetryPolicy.retries)))
files = build_manifest(
    api=settings.get("api") or DEFAULT_API,
    project=settings.get("project"),
    manifest=settings.get("manifest"),
    exclude=settings.get("exclude") or [],
    page_size=int(settings.get("page_size") or 500),
    session=session,
    policy=policy,
    log=log,
)
if not files:
    raise SystemExit("the GDC manifest has no slides left; check slides.gdc.project, manifest and exclude")
write_manifest(files, snakemake.output.manifest)  # noqa: F821
log.info("wrote %d slides to %s", len(files), snakemake.output.manifest)  # noqa: F821
