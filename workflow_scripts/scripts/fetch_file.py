"""Snakemake script: provide an input file from a local path (symlinked) or by GDC file id (downloaded)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821 - injected by Snakemake

from workflow_scripts.inputs.gdc import DEFAULT_API, RetryPolicy, fetch_source, open_session, read_token  # noqa: E402

params = snakemake.params  # noqa: F821
fetch_source(
    source=params.source,
    destination=snakemake.output[0],  # noqa: F821
    api=getattr(params, "api", None) or DEFAULT_API,
    session=open_session(read_token(getattr(params, "token_file", None))),
    policy=RetryPolicy(retries=int(getattr(params, "retries", None) or RetryPolicy.retries)),
    log=log,
)
