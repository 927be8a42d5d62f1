"""Snakemake script: provide an input file from a local path (symlinked), by GDC file id or by URL (downloaded).

A GDC file id is verified against the md5 and size the GDC API reports for it; a pinned md5 must agree. A URL
(optionally a member of a .tar.gz it serves) is fetched without the GDC token (inputs/url_source.py)."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.inputs.gdc_download import fetch_source
from workflow_scripts.inputs.gdc_session import configured_client

params = snakemake.params
# Runtime settings (token, retries, page size) are read from snakemake.config, not params, so editing them reruns
# nothing (rules/common.smk CONFIG_KEYS); a bare test namespace without `config` gets the defaults.
runtime = (getattr(snakemake, "config", {}).get("slides") or {}).get("gdc") or {}
client = configured_client(getattr(params, "api", None), runtime.get("token_file"), runtime.get("retries"), log)
fetch_source(client, params.source, snakemake.output[0])
