"""Snakemake script: download one slide from the GDC, resumable and md5-verified (by id, else by name and md5),
and write its download status: `ok`, or `fail` with the reason when the download can never succeed.

A killed job (SIGTERM exits 143, SIGKILL) leaves `.{name}.part` beside the slide; the rerun resumes it by Range.
Transient failures write no status, so the job fails and Snakemake's retries apply."""

from workflow_scripts.common.logs import get_logger

log = get_logger(__name__, snakemake.log[0])

from workflow_scripts.inputs.gdc_download import DownloadTarget, download_keyed, download_with_status
from workflow_scripts.inputs.gdc_session import configured_client

params = snakemake.params
# Runtime settings (token, retries, page size) are read from snakemake.config, not params, so editing them reruns
# nothing (rules/common.smk CONFIG_KEYS); a bare test namespace without `config` gets the defaults.
runtime = (getattr(snakemake, "config", {}).get("slides") or {}).get("gdc") or {}
client = configured_client(getattr(params, "api", None), runtime.get("token_file"), runtime.get("retries"), log)
output = snakemake.output
# The rule declares the status file (params.slide is where the slide goes); a bare harness may pass output.slide.
slide = getattr(params, "slide", None) or output.slide
target = DownloadTarget.from_text(params.file_id, slide, getattr(params, "md5", None), getattr(params, "size", None))
if getattr(output, "status", None):
    download_with_status(client, target, output.status)
else:
    download_keyed(client, target)
