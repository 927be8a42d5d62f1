"""Snakemake script: download one slide from the GDC, resumable and md5-verified (by id, else by name and md5)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])  # noqa: F821 - injected by Snakemake

from workflow_scripts.inputs.gdc import DEFAULT_API, RetryPolicy, download_keyed, open_session, read_token  # noqa: E402

params = snakemake.params  # noqa: F821
size = getattr(params, "size", None)
download_keyed(
    api=getattr(params, "api", None) or DEFAULT_API,
    file_id=params.file_id,
    destination=snakemake.output.slide,  # noqa: F821
    md5=getattr(params, "md5", None) or None,
    size=int(size) if size not in (None, "") else None,
    session=open_session(read_token(getattr(params, "token_file", None))),
    policy=RetryPolicy(retries=int(getattr(params, "retries", None) or RetryPolicy.retries)),
    log=log,
)
