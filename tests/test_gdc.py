"""GDC discovery and downloads against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from gdc_server import GdcServer, ServedFile
from workflow_scripts.common.hashing import md5_file
from workflow_scripts.inputs.download_status import DownloadStatus, read_download_status, write_download_status
from workflow_scripts.inputs.gdc_download import (
    DownloadFailed,
    DownloadTarget,
    download_file,
    download_keyed,
    download_with_status,
    fetch_source,
    partial_path,
)
from workflow_scripts.inputs.gdc_manifest import (
    GdcError,
    GdcFile,
    read_manifest,
    validate_file_name,
    write_manifest,
    write_rejected,
)
from workflow_scripts.inputs.gdc_query import build_manifest, discover_slides, gdc_file_from_hit, slide_filters
from workflow_scripts.inputs.gdc_session import (
    DEFAULT_API,
    GdcClient,
    RetryPolicy,
    configured_client,
    open_session,
    read_token,
)

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow_scripts" / "scripts"
FAST = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05, timeout_s=5)
UUIDS = ["%08X-1E73-40D4-834A-46E3471D84A3" % n for n in range(100)]


def slide_name(n: int) -> str:
    """A valid TCGA slide file name for patient number n."""
    return f"TCGA-AC-{n:04d}-01Z-00-DX1.{UUIDS[n]}.svs"


def payload(n_bytes: int, seed: int) -> bytes:
    """Deterministic pseudo-random content (incompressible, like a slide)."""
    return random.Random(seed).randbytes(n_bytes)


@pytest.fixture
def gdc():
    """A fresh fixture GDC server per test."""
    with GdcServer() as server:
        yield server


@pytest.fixture
def log():
    return logging.getLogger("test_gdc")


def client_for(url: str, log: logging.Logger, **kwargs) -> GdcClient:
    """A client of the fixture server with fast retries."""
    return GdcClient(api=url, policy=FAST, log=log, **kwargs)


def test_retry_delays_double_up_to_the_cap():
    policy = RetryPolicy(retries=6, backoff_s=1.5, max_backoff_s=10)
    assert [policy.delay(k) for k in range(1, 6)] == [1.5, 3.0, 6.0, 10, 10]


def test_configured_client_and_target_from_config_text(log):
    default = configured_client(None, None, None, log)
    assert (default.api, default.policy.retries, default.log) == (DEFAULT_API, RetryPolicy.retries, log)
    assert "X-Auth-Token" not in default.session.headers
    assert configured_client("http://x/", "", 0, log).policy.retries == 0  # retries: 0 means no retry
    assert configured_client("http://x/", "", "2", log).url("/data/abc") == "http://x/data/abc"
    assert DownloadTarget.from_text("id", "d/a.svs", "", "") == DownloadTarget("id", Path("d/a.svs"), None, None)
    assert DownloadTarget.from_text("id", "d/a.svs", "ab" * 16, "12").size == 12


def test_slide_filters_use_gdc_field_names():
    filters = slide_filters("TCGA-LUAD")
    fields = {c["content"]["field"]: c["content"]["value"] for c in filters["content"]}
    assert filters["op"] == "and"
    assert fields == {
        "cases.project.project_id": ["TCGA-LUAD"],
        "files.data_type": ["Slide Image"],
        "files.experimental_strategy": ["Diagnostic Slide"],
        "files.data_format": ["SVS"],
    }


def test_paged_query_is_assembled_fully(gdc, tmp_path, log):
    for n in reversed(range(23)):
        gdc.add(ServedFile(f"id-{n:02d}", slide_name(n), payload(10, n), submitter_id=f"TCGA-AC-{n:04d}"))
    gdc.add(ServedFile("other-project", slide_name(50), b"x", project="TCGA-LUAD"))
    gdc.add(ServedFile("tissue-slide", slide_name(51), b"x", experimental_strategy="Tissue Slide"))
    gdc.add(ServedFile("maf", "a.maf.gz", b"x", data_type="Masked Somatic Mutation", data_format="MAF"))

    files = discover_slides(client_for(gdc.url, log), "TCGA-BRCA", page_size=5)

    assert [f.file_name for f in files] == [slide_name(n) for n in range(23)]
    assert files[7] == GdcFile("id-07", slide_name(7), hashlib.md5(payload(10, 7)).hexdigest(), 10, "released",
                               "TCGA-AC-0007")
    assert [r.body["from"] for r in gdc.files_requests()] == [0, 5, 10, 15, 20]
    assert {r.body["size"] for r in gdc.files_requests()} == {5}
    manifest = tmp_path / "manifest.txt"
    write_manifest(reversed(files), manifest)
    lines = manifest.read_text().splitlines()
    assert lines[0] == "id\tfilename\tmd5\tsize\tstate"
    assert lines[1].split("\t") == ["id-00", slide_name(0), hashlib.md5(payload(10, 0)).hexdigest(), "10", "released"]
    assert [(f.file_id, f.file_name, f.md5, f.size) for f in read_manifest(manifest)] == [
        (f.file_id, f.file_name, f.md5, f.size) for f in files
    ]


def test_real_gdc_response_shape_parses(shared_data):
    response = json.loads((shared_data / "tcga" / "gdc_files_endpoint_example.json").read_text())
    files = [gdc_file_from_hit(hit) for hit in response["data"]["hits"]]
    assert len(files) == response["data"]["pagination"]["count"] == 10
    first = files[0]
    assert first.file_id == "d570eccc-3c1c-4c4f-ae04-96be71fbe016"
    assert first.file_name == "TCGA-AN-A0FL-01Z-00-DX1.20A041C6-A306-4599-A7D1-65032A252AA9.svs"
    assert first.size == 1055798681
    assert first.submitter_id == "TCGA-AN-A0FL"


def test_user_manifest_replaces_query_and_exclusions_apply(gdc, shared_data, caplog, log):
    manifest = shared_data / "tcga" / "gdc_manifest_luad_469.txt"
    first_two = [f.file_name for f in read_manifest(manifest)[:2]]
    exclude = [first_two[0], first_two[1].rsplit(".", 1)[0], "not-a-slide.svs"]
    with caplog.at_level(logging.WARNING, logger="test_gdc"):
        files = build_manifest(client_for(gdc.url, log), "TCGA-LUAD", manifest=manifest, exclude=exclude)
    assert len(files) == 467
    assert not set(first_two) & {f.file_name for f in files}
    assert gdc.requests == []
    assert "'not-a-slide.svs' matches no slide" in caplog.text


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "a/b.svs", ".hidden.svs", "a\x00b.svs", "a\\b.svs", ".."])
def test_hostile_file_name_is_refused_naming_the_file_id(gdc, hostile, log):
    gdc.add(ServedFile("good", slide_name(1), b"abc"))
    gdc.add(ServedFile("evil-id", hostile, b"root:x:0:0"))
    with pytest.raises(GdcError, match="GDC file evil-id: refusing file name"):
        discover_slides(client_for(gdc.url, log), "TCGA-BRCA", page_size=10)


def test_hostile_name_in_user_manifest_is_refused(tmp_path):
    manifest = tmp_path / "m.txt"
    manifest.write_text("id\tfilename\tmd5\tsize\tstate\nbad-id\t../x.svs\t\t\treleased\n")
    with pytest.raises(GdcError, match="bad-id"):
        read_manifest(manifest)
    assert validate_file_name(slide_name(3), "ok") == slide_name(3)


def test_download_resumes_after_cut_and_503(gdc, tmp_path, log):
    content = payload(300_000, 1)
    served = gdc.add(ServedFile("f1", slide_name(1), content, fail_first=1, cut_after=100_000))
    destination = tmp_path / "slides" / slide_name(1)

    download_file(client_for(gdc.url, log), DownloadTarget("f1", destination, md5=served.md5, size=len(content)),
                  chunk_bytes=4096)

    assert destination.read_bytes() == content
    requests_seen = gdc.data_requests("f1")
    assert len(requests_seen) == 3  # 503, cut, resumed
    assert "Range" not in requests_seen[1].headers
    resumed_from = int(requests_seen[2].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_from <= 100_000
    assert sorted(p.name for p in destination.parent.iterdir()) == [slide_name(1)]


def test_download_restarts_when_server_ignores_range(gdc, tmp_path, log):
    content = payload(50_000, 2)
    served = gdc.add(ServedFile("f2", slide_name(2), content, cut_after=20_000, ignore_range=True))
    destination = tmp_path / slide_name(2)
    download_file(client_for(gdc.url, log), DownloadTarget("f2", destination, md5=served.md5), chunk_bytes=1024)
    assert md5_file(destination) == served.md5
    assert "Range" in gdc.data_requests("f2")[1].headers


def test_wrong_md5_fails_and_leaves_nothing(gdc, tmp_path, log):
    content = payload(20_000, 3)
    claimed = hashlib.md5(b"something else").hexdigest()
    gdc.add(ServedFile("f3", slide_name(3), content, md5=claimed))
    destination = tmp_path / slide_name(3)
    with pytest.raises(GdcError) as error:
        download_file(client_for(gdc.url, log), DownloadTarget("f3", destination, md5=claimed))
    message = str(error.value)
    assert slide_name(3) in message and claimed in message and hashlib.md5(content).hexdigest() in message
    assert len(gdc.data_requests("f3")) == FAST.retries + 1
    assert list(tmp_path.iterdir()) == []


def test_persistent_503_gives_up_after_bounded_retries(gdc, tmp_path, log):
    gdc.add(ServedFile("f4", slide_name(4), b"abc", fail_first=100))
    with pytest.raises(GdcError, match="giving up after 3 retries"):
        download_file(client_for(gdc.url, log), DownloadTarget("f4", tmp_path / slide_name(4)))
    assert len(gdc.data_requests("f4")) == 4
    assert list(tmp_path.iterdir()) == []


def test_token_sent_in_header_and_never_logged(tmp_path):
    token = "SECRET-TOKEN-3f9a"
    token_file = tmp_path / "token.txt"
    token_file.write_text(token + "\n")
    log_file = tmp_path / "job.log"
    from workflow_scripts.common.logs import get_logger

    job_log = get_logger("test_gdc.token", log_file)
    content = payload(5000, 5)
    with GdcServer([ServedFile("f5", slide_name(5), content, fail_first=1)], token=token) as server:
        with pytest.raises(GdcError, match="token_file"):
            download_file(client_for(server.url, job_log), DownloadTarget("f5", tmp_path / "a" / slide_name(5)))
        session = open_session(read_token(token_file))
        download_file(client_for(server.url, job_log, session=session),
                      DownloadTarget("f5", tmp_path / slide_name(5), md5=hashlib.md5(content).hexdigest()),
                      progress_interval_s=0)
        assert server.data_requests("f5")[-1].headers["X-Auth-Token"] == token
    assert (tmp_path / slide_name(5)).read_bytes() == content
    text = log_file.read_text()
    assert "downloaded" in text and "retry 1/3" in text
    assert token not in text


def test_empty_or_missing_token_file_is_an_error(tmp_path):
    assert read_token(None) is None
    with pytest.raises(GdcError, match="does not exist"):
        read_token(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(GdcError, match="is empty"):
        read_token(tmp_path / "empty")


def test_present_file_with_right_md5_is_not_downloaded(gdc, tmp_path, log):
    content = payload(4000, 6)
    served = gdc.add(ServedFile("f6", slide_name(6), content))
    destination = tmp_path / slide_name(6)
    destination.write_bytes(content)
    download_file(client_for(gdc.url, log), DownloadTarget("f6", destination, md5=served.md5))
    assert gdc.data_requests("f6") == []
    destination.write_bytes(b"truncated")
    download_file(client_for(gdc.url, log), DownloadTarget("f6", destination, md5=served.md5))
    assert destination.read_bytes() == content
    assert len(gdc.data_requests("f6")) == 1


def test_stale_file_id_is_resolved_by_name_and_md5(gdc, tmp_path, log):
    content = payload(3000, 7)
    served = gdc.add(ServedFile("new-id", slide_name(7), content))
    gdc.add(ServedFile("same-name-other-md5", slide_name(7), b"other"))
    destination = tmp_path / slide_name(7)
    download_keyed(client_for(gdc.url, log), DownloadTarget("retired-id", destination, md5=served.md5))
    assert destination.read_bytes() == content
    assert len(gdc.data_requests("new-id")) == 1


def test_fetch_source_gdc_id_without_md5_and_local_symlink(gdc, tmp_path, log):
    matrix = b"gene_id\tTCGA-A1-A0SB-01A-11R-A144-07\nMKI67|4288\t12.5\n"
    name = "EBPlusPlusAdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv"
    gdc.add(ServedFile("3586c0da-64d0-4b74-a449-5ff4d9136611", name, matrix,
                       data_type="Gene Expression Quantification", data_format="TSV"))
    client = client_for(gdc.url, log)
    fetched = fetch_source(client, {"gdc_file_id": "3586c0da-64d0-4b74-a449-5ff4d9136611"}, tmp_path / "mrna.tsv")
    assert fetched.read_bytes() == matrix
    linked = fetch_source(client, str(fetched), tmp_path / "link" / "mrna.tsv")
    assert linked.is_symlink() and os.readlink(linked) == str(fetched.resolve())
    with pytest.raises(GdcError, match="missing.tsv"):
        fetch_source(client, str(tmp_path / "missing.tsv"), tmp_path / "x.tsv")


def _run_script(name: str, **namespace) -> None:
    """Run a thin Snakemake script with the `snakemake` object it expects."""
    runpy.run_path(str(SCRIPTS / name), init_globals={"snakemake": SimpleNamespace(**namespace)})


def test_scripts_manifest_and_download(gdc, tmp_path):
    content = payload(8000, 8)
    served = gdc.add(ServedFile("s1", slide_name(8), content))
    gdc.add(ServedFile("evil", "../x.svs", b"hostile"))
    log_path = tmp_path / "logs" / "job.log"
    manifest = tmp_path / "resources" / "manifest.txt"
    rejected = tmp_path / "resources" / "manifest_rejected.tsv"
    _run_script(
        "gdc_manifest.py", log=[str(log_path)], output=SimpleNamespace(manifest=str(manifest), rejected=str(rejected)),
        params=SimpleNamespace(gdc={"api": gdc.url, "project": "TCGA-BRCA", "manifest": None, "token_file": None,
                                    "page_size": 1, "retries": 2}),
    )
    [row] = read_manifest(manifest)
    assert (row.file_id, row.md5, row.size) == ("s1", served.md5, 8000)
    [bad] = list(csv.DictReader(open(rejected), delimiter="\t"))
    assert (bad["source"], bad["line"], bad["file_id"], bad["file_name"]) == ("GDC query TCGA-BRCA", "hit 1", "evil",
                                                                            "../x.svs")
    slide = tmp_path / "resources" / "slides" / row.file_name
    status = tmp_path / "resources" / "downloads" / f"{row.file_name}.tsv"
    _run_script(
        "gdc_download.py", log=[str(log_path)], output=SimpleNamespace(status=str(status)),
        params=SimpleNamespace(slide=str(slide), file_id=row.file_id, md5=row.md5, size=str(row.size), api=gdc.url,
                               token_file=None, retries=2),
    )
    assert slide.read_bytes() == content
    assert read_download_status(status) == DownloadStatus(row.file_name, "ok", "", str(slide), served.md5, "s1")
    assert "downloaded" in log_path.read_text()


def _status_after(gdc, tmp_path, served: ServedFile, md5: str | None = None) -> tuple[Path, Path]:
    """Run download_with_status for one served file; the slide path and status path."""
    slide = tmp_path / "slides" / served.file_name
    status = tmp_path / "downloads" / f"{served.file_name}.tsv"
    target = DownloadTarget.from_text(served.file_id, slide, md5 or served.md5, served.size)
    download_with_status(GdcClient(api=gdc.url, policy=FAST), target, status)
    return slide, status


def test_md5_mismatch_after_retries_is_a_fail_status_without_a_slide(gdc, tmp_path):
    served = gdc.add(ServedFile("m1", slide_name(11), payload(3000, 11)))
    slide, status = _status_after(gdc, tmp_path, served, md5="0" * 32)
    recorded = read_download_status(status)
    assert (recorded.status, recorded.md5, recorded.file_id) == ("fail", "0" * 32, "m1")
    assert "failed md5 verification 4 times" in recorded.reason and served.md5 in recorded.reason
    assert not slide.exists() and not partial_path(slide).exists()
    assert len(gdc.data_requests("m1")) == 4


def test_not_found_by_id_nor_by_name_is_a_fail_status(gdc, tmp_path):
    gone = ServedFile("gone-id", slide_name(12), payload(100, 12))  # never added: 404 by id, no hit by name
    slide, status = _status_after(gdc, tmp_path, gone)
    recorded = read_download_status(status)
    assert recorded.status == "fail" and "gone-id not found, nor by name" in recorded.reason
    assert not slide.exists()


@pytest.mark.parametrize("code", [501, 400, 410])
def test_permanent_http_status_is_a_fail_status(gdc, tmp_path, code):
    served = gdc.add(ServedFile("p1", slide_name(13), payload(100, 13), fail_first=100, fail_status=code))
    _, status = _status_after(gdc, tmp_path, served)
    recorded = read_download_status(status)
    assert recorded.status == "fail" and f"HTTP {code}" in recorded.reason
    assert len(gdc.data_requests("p1")) == 1


@pytest.mark.parametrize("code", [503, 403])
def test_transient_or_access_failure_fails_the_job_and_writes_no_status(gdc, tmp_path, code):
    served = gdc.add(ServedFile("t1", slide_name(14), payload(100, 14), fail_first=100, fail_status=code))
    with pytest.raises(GdcError, match=f"HTTP {code}") as raised:
        _status_after(gdc, tmp_path, served)
    assert not isinstance(raised.value, DownloadFailed)
    assert not (tmp_path / "downloads" / f"{served.file_name}.tsv").exists()


def test_download_status_file_is_checked_when_read(tmp_path):
    path = tmp_path / "s.tsv"
    write_download_status(DownloadStatus("a.svs", "fail", "md5 mismatch", "slides/a.svs"), path)
    assert read_download_status(path).reason == "md5 mismatch"
    with pytest.raises(ValueError, match="must give its reason"):
        write_download_status(DownloadStatus("a.svs", "fail"), path)
    path.write_text("file_name\tstatus\treason\tpath\tmd5\tfile_id\na.svs\tmaybe\t\t\t\t\n")
    with pytest.raises(ValueError, match=r"s.tsv: download status 'maybe'"):
        read_download_status(path)


def test_invalid_manifest_rows_are_skipped_naming_row_and_problem(tmp_path, caplog, log):
    good = "0123456789abcdef0123456789abcdef"
    manifest = tmp_path / "m.txt"
    manifest.write_text(
        "id\tfilename\tmd5\tsize\tstate\n"
        f"ok-1\t{slide_name(1)}\t{good}\t10\treleased\n"
        f"evil\t../../etc/passwd\t{good}\t10\treleased\n"
        f"no-md5\t{slide_name(2)}\t\t10\treleased\n"
        f"bad-state\t{slide_name(3)}\t{good}\t10\tredacted\n"
        f"ok-2\t{slide_name(4)}\t{good.upper()}\t\tvalidated\n"
    )
    rejected = []
    with caplog.at_level(logging.WARNING, logger="test_gdc"):
        files = read_manifest(manifest, rejected, log)
    assert [f.file_id for f in files] == ["ok-1", "ok-2"] and files[1].md5 == good
    assert [(r.line, r.file_id) for r in rejected] == [("3", "evil"), ("4", "no-md5"), ("5", "bad-state")]
    assert "path separator" in rejected[0].problem and "no md5" in rejected[1].problem
    assert "state 'redacted'" in rejected[2].problem
    assert f"{manifest} line 3 (GDC file evil" in caplog.text
    written = tmp_path / "rejected.tsv"
    write_rejected(rejected, written)
    assert written.read_text().splitlines()[0] == "source\tline\tfile_id\tfile_name\tproblem"
    assert len(written.read_text().splitlines()) == 4


def test_manifest_without_any_valid_row_is_an_error(tmp_path, log):
    manifest = tmp_path / "m.txt"
    manifest.write_text("id\tfilename\tmd5\tsize\tstate\nbad-id\t../x.svs\t\t\treleased\n")
    with pytest.raises(GdcError, match="none of its 1 rows is valid.*bad-id"):
        read_manifest(manifest, [], log)


def test_query_skips_a_hostile_hit_and_keeps_the_rest(gdc, log):
    gdc.add(ServedFile("good", slide_name(1), b"abc"))
    gdc.add(ServedFile("evil-id", "../../etc/passwd", b"root:x:0:0"))
    rejected = []
    files = build_manifest(client_for(gdc.url, log), "TCGA-BRCA", page_size=10, rejected=rejected)
    assert [f.file_id for f in files] == ["good"]
    assert [(r.file_id, r.source) for r in rejected] == [("evil-id", "GDC query TCGA-BRCA")]


def test_standalone_server_serves_a_folder(tmp_path):
    (tmp_path / slide_name(10)).write_bytes(b"slide bytes")
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("gdc_server.py")), "--port", "0", "--root", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        [found] = discover_slides(GdcClient(api=url, policy=FAST), "TCGA-BRCA")
        assert found.file_name == slide_name(10)
        assert requests.get(f"{url}/data/{found.file_id}", timeout=5).content == b"slide bytes"
    finally:
        process.terminate()
        process.wait(timeout=5)
