"""GDC download faults from cluster life: redirects carrying the token, killed jobs, transient vs permanent errors,
and inputs fetched by file id verified against the GDC's own md5 — all against real servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from gdc_server import GdcServer, ServedFile
from test_gdc import FAST, client_for, payload, slide_name
from workflow_scripts.common.hashing import md5_file
from workflow_scripts.common.logs import get_logger
from workflow_scripts.inputs.gdc_download import DownloadTarget, download_file, fetch_source, partial_path
from workflow_scripts.inputs.gdc_manifest import GdcError, GdcNotFound
from workflow_scripts.inputs.gdc_session import GdcClient, RetryPolicy, open_session

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "SECRET-TOKEN-77c1e0"

# Runs the Snakemake download script in its own process, as a cluster job does, so the test can kill it.
JOB = """
import json, runpy, sys
from types import SimpleNamespace as NS
a = json.loads(sys.argv[1])
runpy.run_path(a["script"], init_globals={"snakemake": NS(
    log=[a["log"]], output=NS(slide=a["slide"]),
    params=NS(file_id=a["file_id"], md5=a["md5"], size=a["size"], api=a["api"]),
    config={"slides": {"gdc": {"token_file": a["token_file"], "retries": 2}}})})
"""


@pytest.fixture
def log():
    return logging.getLogger("test_gdc_faults")


def header(request, name: str) -> str | None:
    """A recorded request's header, case-insensitively."""
    return {k.lower(): v for k, v in request.headers.items()}.get(name.lower())


def test_token_goes_to_the_api_only_never_to_a_redirect_target(tmp_path):
    content = payload(30_000, 11)
    job_log = get_logger("test_gdc_faults.redirect", tmp_path / "job.log")
    with GdcServer([ServedFile("r1", slide_name(11), content)]) as elsewhere, \
            GdcServer([ServedFile("r1", slide_name(11), content, redirect_to=elsewhere.url)]) as api:
        client = client_for(api.url, job_log, session=open_session(TOKEN))
        download_file(client, DownloadTarget("r1", tmp_path / slide_name(11), md5=hashlib.md5(content).hexdigest()))
        [to_api] = api.data_requests("r1")
        [to_elsewhere] = elsewhere.data_requests("r1")
    assert header(to_api, "X-Auth-Token") == TOKEN
    assert header(to_elsewhere, "X-Auth-Token") is None
    assert TOKEN not in json.dumps(to_elsewhere.headers)
    assert (tmp_path / slide_name(11)).read_bytes() == content
    assert TOKEN not in (tmp_path / "job.log").read_text()


def test_token_is_bound_to_scheme_host_and_port():
    session = open_session(TOKEN, "https://api.gdc.cancer.gov")
    sent = {url: session.prepare_request(requests.Request("GET", url)).headers.get("X-Auth-Token")
            for url in ("https://api.gdc.cancer.gov:443/data/x", "http://api.gdc.cancer.gov/data/x",
                        "https://api.gdc.cancer.gov:8443/data/x", "https://evil.example/data/x")}
    assert list(sent.values()) == [TOKEN, None, None, None]
    assert "X-Auth-Token" not in session.headers and TOKEN not in repr(session)


def _start_job(tmp_path: Path, api: str, served: ServedFile, token_file: Path) -> tuple[subprocess.Popen, dict]:
    args = {"script": str(ROOT / "workflow_scripts" / "scripts" / "gdc_download.py"), "log": str(tmp_path / "job.log"),
            "slide": str(tmp_path / "slides" / served.file_name), "file_id": served.file_id, "md5": served.md5,
            "size": str(served.size), "api": api, "token_file": str(token_file)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", JOB, json.dumps(args)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return process, args


def _wait_for_bytes(part: Path, at_least: int, process: subprocess.Popen, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while not (part.exists() and part.stat().st_size >= at_least):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"download job ended or stalled before {at_least} bytes: {process.stderr.read()}")
        time.sleep(0.02)


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_download_keeps_its_part_and_resumes_with_range(tmp_path, kill):
    content = payload(700_000, 12)  # cut inside the first MiB: the resume must not start again from 0
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    slow = ServedFile("k1", slide_name(12), content, send_chunk=8192, send_delay_s=0.02)
    with GdcServer([slow], token=TOKEN) as api:
        process, args = _start_job(tmp_path, api.url, slow, token_file)
        part = partial_path(args["slide"])
        _wait_for_bytes(part, 40_000, process)
        process.send_signal(kill)
        returncode = process.wait(timeout=20)
        kept = part.stat().st_size
        assert 0 < kept < len(content)
        assert part.read_bytes() == content[:kept]
        slow.send_chunk = None
        rerun = subprocess.run([sys.executable, "-c", JOB, json.dumps(args)], cwd=ROOT, capture_output=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
        assert rerun.returncode == 0, rerun.stderr.decode()
        first, resumed = api.data_requests("k1")
    assert returncode == (143 if kill == signal.SIGTERM else -signal.SIGKILL)
    assert header(first, "Range") is None
    assert header(resumed, "Range") == f"bytes={kept}-"  # nothing before the cut is fetched twice
    assert md5_file(args["slide"]) == slow.md5 and not part.exists()
    text = Path(args["log"]).read_text()
    assert f"resuming from byte {kept}" in text and TOKEN not in text
    if kill == signal.SIGTERM:
        assert "stopped by SIGTERM" in text


def test_part_left_by_an_earlier_run_restarts_cleanly_when_range_is_ignored(tmp_path, log):
    content = payload(40_000, 13)
    served = ServedFile("k2", slide_name(13), content, ignore_range=True)
    destination = tmp_path / slide_name(13)
    partial_path(destination).write_bytes(content[:10_000])
    with GdcServer([served]) as api:
        download_file(client_for(api.url, log), DownloadTarget("k2", destination, md5=served.md5, size=40_000))
        [request] = api.data_requests("k2")
    assert header(request, "Range") == "bytes=10000-"
    assert destination.read_bytes() == content and not partial_path(destination).exists()


@pytest.mark.parametrize("status", [400, 410, 501, 505])
def test_permanent_status_fails_at_once_naming_file_and_status(tmp_path, log, status):
    with GdcServer([ServedFile("p1", slide_name(14), b"abc", fail_first=5, fail_status=status)]) as api:
        with pytest.raises(GdcError, match=rf"GDC file p1\).*HTTP {status}"):
            download_file(client_for(api.url, log), DownloadTarget("p1", tmp_path / slide_name(14)))
        assert len(api.data_requests("p1")) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_status_is_retried(tmp_path, log, status, caplog):
    with GdcServer([ServedFile("t1", slide_name(15), b"abc", fail_first=2, fail_status=status)]) as api:
        with caplog.at_level(logging.WARNING, logger=log.name):
            download_file(client_for(api.url, log), DownloadTarget("t1", tmp_path / slide_name(15)))
        assert len(api.data_requests("t1")) == 3
    assert f"HTTP {status}; retry 2/3" in caplog.text


def test_retry_after_is_honoured_and_bounded(tmp_path, log):
    policy = RetryPolicy(retries=2, backoff_s=0.01, max_backoff_s=0.6, timeout_s=5)
    with GdcServer([ServedFile("t2", slide_name(16), b"abc", fail_first=1, retry_after="1"),
                    ServedFile("t3", slide_name(17), b"abc", fail_first=1, retry_after="3600")]) as api:
        client = GdcClient(api=api.url, policy=policy, log=log)
        started = time.monotonic()
        download_file(client, DownloadTarget("t2", tmp_path / slide_name(16)))
        download_file(client, DownloadTarget("t3", tmp_path / slide_name(17)))
        elapsed = time.monotonic() - started
    assert 1.1 <= elapsed < 5  # both waits capped at max_backoff_s (0.6 s), not 1 s + an hour


def test_unreachable_api_gives_up_after_bounded_retries(tmp_path, log, caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger=log.name), pytest.raises(GdcError, match="giving up after 3"):
        download_file(client_for(f"http://127.0.0.1:{port}", log), DownloadTarget("u1", tmp_path / slide_name(18)))
    assert "retry 3/3" in caplog.text and list(tmp_path.iterdir()) == []


def test_fetch_by_id_is_verified_against_the_gdc_record(tmp_path, log):
    table = b"bcr_patient_barcode\tage\nTCGA-A1-A0SB\t70\n"
    md5 = hashlib.md5(table).hexdigest()
    with GdcServer([ServedFile("c1", "clinical.tsv", table, data_type="Clinical Supplement"),
                    ServedFile("c2", "lying.tsv", table, md5="0" * 32)]) as api:
        client = client_for(api.url, log)
        fetched = fetch_source(client, {"gdc_file_id": "c1"}, tmp_path / "clinical.tsv")
        assert fetched.read_bytes() == table
        assert any(r.path.startswith("/files/c1?") and "md5sum" in r.path for r in api.requests)
        fetch_source(client, {"gdc_file_id": "c1", "md5": md5.upper(), "size": len(table)}, tmp_path / "pinned.tsv")
        with pytest.raises(GdcError, match=rf"pins md5 {'f' * 32} but the GDC reports md5 {md5}"):
            fetch_source(client, {"gdc_file_id": "c1", "md5": "f" * 32}, tmp_path / "bad.tsv")
        with pytest.raises(GdcError, match="pins size 5"):
            fetch_source(client, {"gdc_file_id": "c1", "size": 5}, tmp_path / "bad.tsv")
        with pytest.raises(GdcError, match="failed md5 verification"):
            fetch_source(client, {"gdc_file_id": "c2"}, tmp_path / "lying.tsv")
        with pytest.raises(GdcNotFound, match="file nope"):
            fetch_source(client, {"gdc_file_id": "nope"}, tmp_path / "nope.tsv")
        assert len(api.data_requests("c1")) == 2 and FAST.retries + 1 == len(api.data_requests("c2"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clinical.tsv", "pinned.tsv"]
