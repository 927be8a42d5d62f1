"""Resumable, retried, md5-verified GDC downloads, so TCGA inputs arrive complete or not at all.

A download writes to a fixed partial file next to its destination (`.{name}.part`). Whatever stopped the last
attempt (a dropped connection, a 5xx, SIGTERM from scancel or a Slurm time limit, SIGKILL, preemption), the next
one hashes the bytes already there into the running md5 and asks only for the rest with an HTTP Range request;
a server that ignores Range (200) restarts it from byte 0. SIGTERM raises DownloadTerminated, which closes
(flushes) the partial file and keeps it. The partial file is renamed onto the destination only when the size and
md5 the manifest (or, for `fetch_source`, the GDC API) promises check out; a stale id is found again by name.

Failures are transient or permanent. Transient (a transfer that still fails after every retry, HTTP 429/5xx, a
refused token, SIGTERM) raise: the job fails, Snakemake may retry it and a rerun resumes the partial file.
Permanent (md5 mismatch after every retry, no file by id nor by name, a size the server contradicts, any other
HTTP 4xx/5xx) raise DownloadFailed, which `download_with_status` records as a `fail` download status
(download_status.py) so the cohort goes on without the slide.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import requests
import urllib3

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.hashing import file_digest, md5_file, new_md5
from workflow_scripts.inputs.download_status import DownloadStatus, write_download_status
from workflow_scripts.inputs.gdc_manifest import MD5_PATTERN, GdcError, GdcNotFound, validate_file_name
from workflow_scripts.inputs.gdc_query import file_record, resolve_by_name
from workflow_scripts.inputs.gdc_session import TRANSIENT_STATUS, GdcClient, Retryable, raise_for_status, with_retries

if TYPE_CHECKING:
    import hashlib

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_READ_ERRORS = (urllib3.exceptions.HTTPError, requests.RequestException, OSError)


class DownloadFailed(GdcError):
    """A download that no retry and no rerun can make succeed (the message is the reason the slide fails)."""


class DownloadTerminated(SystemExit):
    """SIGTERM arrived during a download: the partial file is closed and kept; the exit status is 128 + 15."""


def partial_path(destination: str | os.PathLike) -> Path:
    """The fixed partial file of a download, next to its destination, so any later run finds and resumes it."""
    destination = Path(destination)
    return destination.with_name(f".{destination.name}.part")


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While downloading in the main thread, turn SIGTERM into DownloadTerminated (clean unwinding, no loss)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise DownloadTerminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class DownloadTarget:
    """One file to fetch: its GDC id, where it goes, and the md5 and size the manifest promises (None: unknown)."""

    file_id: str
    destination: Path
    md5: str | None = None
    size: int | None = None

    @classmethod
    def from_text(
        cls, file_id: str, destination: str | os.PathLike, md5: str | None = None, size: int | str | None = None
    ) -> DownloadTarget:
        """A target from config or slide-table text, where an unknown md5 or size is None or ''."""
        return cls(str(file_id), Path(destination), md5 or None, int(size) if size not in (None, "") else None)

    @property
    def label(self) -> str:
        """How log lines and errors name the file."""
        return f"{self.destination.name} (GDC file {self.file_id})"


def _human_bytes(count: float) -> str:
    """Bytes as a short human-readable string for progress lines."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} GiB"


class _Progress:
    """Log bytes received and rate at most every `interval_s` seconds."""

    def __init__(self, label: str, total: int | None, log: logging.Logger, interval_s: float):
        self.label, self.total, self.log, self.interval_s = label, total, log, interval_s
        self.started = self.last = time.monotonic()
        self.received_this_run = 0

    def update(self, have: int, new_bytes: int, force: bool = False) -> None:
        """Record new bytes; log a progress line when the interval has passed or when forced."""
        self.received_this_run += new_bytes
        now = time.monotonic()
        if not force and now - self.last < self.interval_s:
            return
        self.last = now
        rate = self.received_this_run / max(now - self.started, 1e-6)
        of_total = f" of {_human_bytes(self.total)} ({100 * have / self.total:.0f}%)" if self.total else ""
        self.log.info("%s: %s%s at %s/s", self.label, _human_bytes(have), of_total, _human_bytes(rate))


@dataclass
class _Transfer:
    """A download in progress across attempts: the part file, the running md5 of its bytes, and progress."""

    target: DownloadTarget
    url: str
    part: Path
    progress: _Progress
    chunk_bytes: int
    digest: hashlib._Hash = field(default_factory=new_md5)
    bad_md5: str | None = None


def _body_start(response: requests.Response, have: int, transfer: _Transfer) -> tuple[int, str, int | None]:
    """Where the response body goes in the part file: (bytes kept, file mode, total size the server reports)."""
    if have and response.status_code == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != have:
            transfer.part.unlink(missing_ok=True)
            raise Retryable(
                f"server answered Range bytes={have}- with Content-Range "
                f"{response.headers.get('Content-Range')!r}; restarting from byte 0"
            )
        return have, "ab", None if match.group(3) == "*" else int(match.group(3))
    if have:
        log = transfer.progress.log
        log.info("%s: server ignored the Range request; restarting from byte 0", transfer.target.label)
    transfer.digest = new_md5()
    length = response.headers.get("Content-Length")
    return 0, "wb", int(length) if length and length.isdigit() else None


def _copy_body(response: requests.Response, transfer: _Transfer, have: int, mode: str) -> int:
    """Append the body to the part file as it arrives (partial reads included), hashing it; the new size.

    A read that fails (connection cut, read timeout) is Retryable; the bytes before it stay in the part file."""
    with open(transfer.part, mode) as handle:
        while True:
            try:
                chunk = response.raw.read1(transfer.chunk_bytes)
            except _READ_ERRORS as error:
                raise Retryable(f"connection dropped at byte {have}: {type(error).__name__}") from None
            if not chunk:
                return have
            handle.write(chunk)
            transfer.digest.update(chunk)
            have += len(chunk)
            transfer.progress.update(have, len(chunk))


def _receive(client: GdcClient, transfer: _Transfer) -> None:
    """One HTTP attempt: continue the part file with a Range request when it has bytes, hashing what arrives."""
    part, size, label = transfer.part, transfer.target.size, transfer.target.label
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    what = f"download of {label}"
    with client.request("GET", transfer.url, what, headers=headers, stream=True) as response:
        if response.status_code == 416 and have:
            part.unlink(missing_ok=True)
            raise Retryable(f"server refused Range bytes={have}- (HTTP 416); restarting from byte 0")
        _raise_for_download_status(response, what, client)
        have, mode, expected_total = _body_start(response, have, transfer)
        if size is not None and expected_total is not None and expected_total != size:
            raise DownloadFailed(f"download of {label}: server reports {expected_total} bytes, manifest says {size}")
        have = _copy_body(response, transfer, have, mode)
    expected = size if size is not None else expected_total
    if expected is not None and have < expected:
        raise Retryable(f"connection ended at byte {have} of {expected}")
    if expected is not None and have > expected:
        part.unlink(missing_ok=True)
        raise Retryable(f"received {have} bytes, more than the expected {expected}; restarting")


def _raise_for_download_status(response: requests.Response, what: str, client: GdcClient) -> None:
    """raise_for_status, with the statuses no rerun changes (not 404, 401/403 or transient) as DownloadFailed."""
    status = response.status_code
    try:
        raise_for_status(response, what, client.policy.retries)
    except GdcNotFound:
        raise
    except GdcError as error:
        if status in TRANSIENT_STATUS or status in (401, 403):
            raise
        raise DownloadFailed(str(error)) from None


def _attempt(client: GdcClient, transfer: _Transfer) -> None:
    """One try: receive the rest of the file, then check its md5 (a mismatch deletes the part file and retries)."""
    transfer.bad_md5 = None
    if not transfer.part.exists():
        transfer.digest = new_md5()
    _receive(client, transfer)
    found, expected = transfer.digest.hexdigest(), transfer.target.md5
    if expected is not None and found != expected:
        transfer.part.unlink(missing_ok=True)
        transfer.bad_md5 = found
        raise Retryable(f"md5 mismatch: expected {expected}, got {found}")


def _resume_digest(transfer: _Transfer) -> hashlib._Hash:
    """The running md5 of a partial file an earlier run left (empty when none, or when it is already too long)."""
    part, target, log = transfer.part, transfer.target, transfer.progress.log
    if not part.is_file():
        return new_md5()
    have = part.stat().st_size
    if target.size is not None and have > target.size:
        log.warning("%s: partial file %s has %d bytes, more than %d; restarting", target.label, part, have,
                    target.size)
        part.unlink()
        return new_md5()
    log.info("%s: resuming from byte %d of partial file %s", target.label, have, part.name)
    return file_digest(part)


def _run_transfer(client: GdcClient, transfer: _Transfer) -> None:
    """All attempts of one download, with SIGTERM turned into a clean stop that keeps the partial file."""
    target, part = transfer.target, transfer.part
    try:
        with _sigterm_raises():
            with_retries(lambda: _attempt(client, transfer), f"download of {target.label}", client)
    except DownloadTerminated:
        kept = part.stat().st_size if part.exists() else 0
        client.log.warning("download of %s stopped by SIGTERM; %d bytes kept in %s, the next run resumes there",
                           target.label, kept, part)
        raise
    except GdcError:
        if transfer.bad_md5 is not None:
            raise DownloadFailed(
                f"download of {target.label} failed md5 verification {client.policy.retries + 1} times: "
                f"expected md5 {target.md5}, received md5 {transfer.bad_md5}; the partial file was deleted "
                f"and nothing was written to {target.destination}"
            ) from None
        raise


def _checked(target: DownloadTarget) -> DownloadTarget:
    """The target with a safe file name and a lower-case md5, or an error naming the file."""
    destination = Path(target.destination)
    try:
        validate_file_name(destination.name, target.file_id)
    except GdcError as error:
        raise DownloadFailed(str(error)) from None
    md5 = target.md5.strip().lower() if target.md5 else None
    checked = replace(target, destination=destination, md5=md5)
    if md5 is not None and not MD5_PATTERN.match(md5):
        raise DownloadFailed(f"{checked.label}: expected md5 {md5!r} is not an md5 checksum")
    return checked


def download_file(
    client: GdcClient, target: DownloadTarget, chunk_bytes: int = 1 << 20, progress_interval_s: float = 10.0
) -> Path:
    """Download `{api}/data/{file_id}` to the destination: resumable, retried, md5-verified, renamed when complete."""
    target = _checked(target)
    destination, label, log = target.destination, target.label, client.log
    if destination.is_file() and target.md5 is not None:
        found = md5_file(destination)
        if found == target.md5:
            log.info("%s already present with md5 %s; not downloading", label, target.md5)
            return destination
        log.warning("%s exists with md5 %s, expected %s; downloading again", label, found, target.md5)
    return transfer_to(client, target, client.url(f"data/{target.file_id}"), chunk_bytes, progress_interval_s)


def transfer_to(
    client: GdcClient, target: DownloadTarget, url: str, chunk_bytes: int = 1 << 20, progress_interval_s: float = 10.0
) -> Path:
    """Fetch `url` into the target's partial file (resumed, retried, md5-checked when known), then rename it."""
    destination, label, log = target.destination, target.label, client.log
    log.info("downloading %s from %s", label, url)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(destination)
    transfer = _Transfer(target, url, part, _Progress(label, target.size, log, progress_interval_s), chunk_bytes)
    transfer.digest = _resume_digest(transfer)
    _run_transfer(client, transfer)
    received = part.stat().st_size
    transfer.progress.update(received, 0, force=True)
    os.replace(part, destination)
    log.info("downloaded %s: %d bytes, md5 %s", label, received, transfer.digest.hexdigest())
    return destination


def download_keyed(client: GdcClient, target: DownloadTarget, progress_interval_s: float = 10.0) -> Path:
    """Download by id; when the id no longer resolves, look the file up by name and md5 and use its new id."""
    return _download_keyed(client, target, progress_interval_s)[0]


def _download_keyed(client: GdcClient, target: DownloadTarget, progress_interval_s: float) -> tuple[Path, str]:
    """download_keyed, also returning the file id the file came from; not found by name either is DownloadFailed."""
    try:
        return download_file(client, target, progress_interval_s=progress_interval_s), target.file_id
    except GdcNotFound:
        name = Path(target.destination).name
        client.log.warning("GDC file id %s not found; looking up %s by name and md5", target.file_id, name)
    try:
        current = resolve_by_name(client, name, target.md5)
        client.log.info("%s is now GDC file %s", name, current.file_id)
        current_target = replace(target, file_id=current.file_id)
        return download_file(client, current_target, progress_interval_s=progress_interval_s), current.file_id
    except GdcNotFound as error:
        raise DownloadFailed(f"GDC file id {target.file_id} not found, nor by name: {error}") from None


def download_with_status(
    client: GdcClient, target: DownloadTarget, status_path: str | os.PathLike, progress_interval_s: float = 10.0
) -> DownloadStatus:
    """Download keyed (see download_keyed) and write its download status: `ok`, or `fail` with the reason of a
    permanent failure (DownloadFailed). Any other error is raised and writes no status (the job fails)."""
    try:
        path, file_id = _download_keyed(client, target, progress_interval_s)
        md5 = (target.md5 or "").strip().lower() or md5_file(path)
        status = DownloadStatus(path.name, "ok", "", str(path), md5, file_id)
    except DownloadFailed as error:
        client.log.error("%s: download failed for good, recorded in %s: %s", target.label, status_path, error)
        destination = Path(target.destination)
        status = DownloadStatus(destination.name, "fail", str(error), str(destination), target.md5 or "",
                                target.file_id)
    write_download_status(status, status_path)
    return status


def fetch_source(client: GdcClient, source: str | os.PathLike | dict, destination: str | os.PathLike) -> Path:
    """Provide an input file: a local path is symlinked (absolute target, no copy of multi-GB matrices);
    `{gdc_file_id, md5?, size?}` is downloaded with the slide download code and verified against the md5 and
    size the GDC API reports for that id; `{url, md5?, member?, file_name}` is fetched by url_source.fetch_url,
    without the GDC token."""
    destination = Path(destination)
    if isinstance(source, (str, os.PathLike)):
        local = Path(source)
        if not local.is_file():
            raise GdcError(f"input file {local} for {destination} does not exist")
        with atomic_path(destination) as temporary:
            os.symlink(local.resolve(), temporary)
        client.log.info("linked %s -> %s", destination, local.resolve())
        return destination
    if isinstance(source, dict) and source.get("gdc_file_id"):
        return download_file(client, verified_target(client, source, destination))
    if isinstance(source, dict) and source.get("url"):
        from workflow_scripts.inputs.url_source import fetch_url  # url_source builds on this module's transfers

        return fetch_url(client, source, destination)
    raise GdcError(f"source for {destination} must be a local path, {{gdc_file_id, md5}} or {{url, file_name}}, "
                   f"got {source!r}")


def verified_target(client: GdcClient, source: dict, destination: str | os.PathLike) -> DownloadTarget:
    """The download of `{gdc_file_id, md5?, size?}` checked against the GDC's own record of that file id.

    The API's md5 and size are used; an md5 or size the config pins must agree with them, else a GdcError."""
    file_id = str(source["gdc_file_id"])
    record = file_record(client, file_id)
    pinned = DownloadTarget.from_text(file_id, destination, source.get("md5"), source.get("size"))
    where = f"{Path(destination).name} (GDC file {file_id}, {record.file_name})"
    if pinned.md5 and record.md5 and pinned.md5.strip().lower() != record.md5:
        raise GdcError(f"{where}: the config pins md5 {pinned.md5} but the GDC reports md5 {record.md5}")
    if pinned.size is not None and record.size is not None and pinned.size != record.size:
        raise GdcError(f"{where}: the config pins size {pinned.size} but the GDC reports {record.size} bytes")
    md5 = record.md5 or pinned.md5
    if not md5:
        raise GdcError(f"{where}: the GDC reports no md5 and the config pins none; cannot verify the download")
    client.log.info("%s: GDC reports md5 %s, %s bytes", where, md5, record.size)
    return replace(pinned, md5=md5, size=record.size if record.size is not None else pinned.size)
