"""Snakemake script: download one slide from the GDC, resumable and md5-verified (by id, else by name and md5).

A killed job (SIGTERM exits 143, SIGKILL) leaves `.{name}.part` beside the output; the rerun resumes it by Range."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.inputs.gdc_download import DownloadTarget, download_keyed
from workflow_scripts.inputs.gdc_session import configured_client

params = snakemake.params
# Runtime settings (token, retries, page size) are read from snakemake.config, not params, so editing them reruns
# nothing (rules/common.smk CONFIG_KEYS); a bare test namespace without `config` gets the defaults.
runtime = (getattr(snakemake, "config", {}).get("slides") or {}).get("gdc") or {}
client = configured_client(getattr(params, "api", None), runtime.get("token_file"), runtime.get("retries"), log)
target = DownloadTarget.from_text(
    params.file_id, snakemake.output.slide, getattr(params, "md5", None), getattr(params, "size", None)
)
download_keyed(client, target)
