"""Inputs fetched by URL, against a real HTTP server on 127.0.0.1: a member of a .tar.gz study archive (as
cBioPortal's datahub ships them), md5 pinning, a missing member, 503 bursts, and no GDC token on the wire."""

from __future__ import annotations

import hashlib
import logging

import pytest

from gdc_server import GdcServer, ServedFile, tar_archive
from workflow_scripts.inputs.gdc_download import DownloadFailed, fetch_source, partial_path
from workflow_scripts.inputs.gdc_manifest import GdcError
from workflow_scripts.inputs.gdc_session import GdcClient, RetryPolicy, open_session
from workflow_scripts.inputs.url_source import ARCHIVE_FOLDER, extract_member, normalise_member

FAST = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05, timeout_s=5.0)
TOKEN = "secret-gdc-token"
PATIENT = b"#Patient Identifier\tSubtype\n#x\tx\n#STRING\tSTRING\n#1\t1\nPATIENT_ID\tSUBTYPE\nTCGA-AA-0001\tBRCA_LumA\n"
SAMPLE = b"#a\tb\tc\nPATIENT_ID\tSAMPLE_ID\tER_STATUS_BY_IHC\nTCGA-AA-0001\tTCGA-AA-0001-01\tPositive\n"
STUDY = "brca_tcga_pan_can_atlas_2018"
MEMBERS = {
    f"{STUDY}/meta_study.txt": b"cancer_study_identifier: brca_tcga_pan_can_atlas_2018\n",
    f"{STUDY}/data_clinical_patient.txt": PATIENT,
    f"{STUDY}/data_clinical_sample.txt": SAMPLE,
}


@pytest.fixture
def log() -> logging.Logger:
    return logging.getLogger("test_url_source")


def token_client(server: GdcServer, log: logging.Logger) -> GdcClient:
    """A client bound to the server's API with a GDC token, as fetch_file.py builds it."""
    return GdcClient(api=server.url, session=open_session(TOKEN, server.url), policy=FAST, log=log)


def test_archive_member_is_extracted_without_the_token(tmp_path, log, caplog):
    archive = tar_archive(MEMBERS)
    with GdcServer(token=TOKEN) as server:
        url = server.add_url(f"/{STUDY}.tar.gz", ServedFile("archive", f"{STUDY}.tar.gz", archive))
        client = token_client(server, log)
        source = {"url": url, "member": f"{STUDY}/data_clinical_patient.txt", "file_name": "patient.txt"}
        with caplog.at_level(logging.INFO, logger=log.name):
            fetched = fetch_source(client, source, tmp_path / "clinical" / "patient.txt")
        assert fetched.read_bytes() == PATIENT
        # a second member of the same archive is read from the kept archive, without another request
        sample = fetch_source(client, {**source, "member": f"{STUDY}/data_clinical_sample.txt"},
                              tmp_path / "clinical" / "sample.txt")
        assert sample.read_bytes() == SAMPLE
        requests = server.url_requests(f"/{STUDY}.tar.gz")
    assert len(requests) == 1
    assert all("X-Auth-Token" not in request.headers for request in server.requests)
    kept = tmp_path / "clinical" / ARCHIVE_FOLDER / f"{STUDY}.tar.gz"
    assert kept.read_bytes() == archive
    # only the two configured names (and the kept archive with its lock file) were written
    assert sorted(p.name for p in (tmp_path / "clinical").iterdir()) == [ARCHIVE_FOLDER, "patient.txt", "sample.txt"]
    assert f"received md5 {hashlib.md5(archive).hexdigest()}" in caplog.text
    assert f"sha256 {hashlib.sha256(archive).hexdigest()}" in caplog.text


def test_plain_url_with_pinned_md5_and_503_burst(tmp_path, log, caplog):
    table = b"patient_id\ter\nP1\tPositive\n"
    with GdcServer() as server:
        url = server.add_url("/files/own.tsv", ServedFile("own", "own.tsv", table, fail_first=2, fail_status=503))
        source = {"url": url, "md5": hashlib.md5(table).hexdigest().upper(), "file_name": "own.tsv"}
        with caplog.at_level(logging.WARNING, logger=log.name):
            fetched = fetch_source(token_client(server, log), source, tmp_path / "own.tsv")
        assert len(server.url_requests("/files/own.tsv")) == 3  # two 503s retried, then the file
    assert fetched.read_bytes() == table and not partial_path(fetched).exists()
    assert "HTTP 503; retry 1/3" in caplog.text and "HTTP 503; retry 2/3" in caplog.text


def test_md5_mismatch_is_refused_naming_the_url(tmp_path, log):
    archive = tar_archive(MEMBERS)
    with GdcServer() as server:
        url = server.add_url("/study.tar.gz", ServedFile("s", "study.tar.gz", archive))
        source = {"url": url, "md5": "0" * 32, "member": f"{STUDY}/data_clinical_patient.txt", "file_name": "p.txt"}
        with pytest.raises(DownloadFailed, match="failed md5 verification") as error:
            fetch_source(token_client(server, log), source, tmp_path / "p.txt")
        assert len(server.url_requests("/study.tar.gz")) == FAST.retries + 1
    assert url in str(error.value) and "expected md5 " + "0" * 32 in str(error.value)
    assert not (tmp_path / "p.txt").exists() and not (tmp_path / ARCHIVE_FOLDER / "study.tar.gz").exists()


def test_missing_member_is_refused_naming_member_and_archive(tmp_path, log):
    with GdcServer() as server:
        url = server.add_url("/study.tar.gz", ServedFile("s", "study.tar.gz", tar_archive(MEMBERS)))
        source = {"url": url, "member": f"{STUDY}/data_clinical_patients.txt", "file_name": "p.txt"}
        with pytest.raises(DownloadFailed) as error:
            fetch_source(token_client(server, log), source, tmp_path / "p.txt")
    message = str(error.value)
    assert f"no member '{STUDY}/data_clinical_patients.txt'" in message and "study.tar.gz" in message
    assert f"{STUDY}/data_clinical_patient.txt" in message  # the close match is offered
    assert not (tmp_path / "p.txt").exists()


def test_http_404_is_a_permanent_failure(tmp_path, log):
    with GdcServer() as server:
        with pytest.raises(GdcError, match="HTTP 404"):
            fetch_source(token_client(server, log), {"url": f"{server.url}/nothing.tsv", "file_name": "n.tsv"},
                         tmp_path / "n.tsv")
    assert list(tmp_path.iterdir()) == []


def test_member_paths_cannot_leave_the_archive(tmp_path):
    assert normalise_member("./study/data.txt") == "study/data.txt"
    for bad in ("../etc/passwd", "/etc/passwd", "study/../../x", ""):
        with pytest.raises(GdcError, match="relative path"):
            normalise_member(bad)
    # a symlink member is refused; nothing is written where the link points or under the link's name
    import io
    import tarfile

    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as archive:
        link = tarfile.TarInfo("study/data.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
        archive.addfile(tarfile.TarInfo("study/empty.txt"), io.BytesIO(b""))
    with pytest.raises(DownloadFailed, match="not a regular file"):
        extract_member(path, "study/data.txt", tmp_path / "out.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links.tar"]
    with pytest.raises(DownloadFailed, match="not a readable tar archive"):
        extract_member(tmp_path / "links.tar.missing", "study/data.txt", tmp_path / "out.txt")
