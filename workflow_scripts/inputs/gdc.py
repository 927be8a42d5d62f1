"""GDC slide discovery, manifests and resumable verified downloads, so TCGA inputs arrive complete or not at all."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from workflow_scripts.common.atomic import atomic_path

DEFAULT_API = "https://api.gdc.cancer.gov"
MANIFEST_COLUMNS = ("id", "filename", "md5", "size", "state")
FILE_FIELDS = ("file_id", "file_name", "md5sum", "file_size", "state", "cases.submitter_id")
TOKEN_HEADER = "X-Auth-Token"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


class GdcError(RuntimeError):
    """A GDC request or download that cannot succeed by retrying (bad input, refused access, bad checksum)."""


class GdcNotFound(GdcError):
    """The GDC answered 404 for a file id (old manifests carry ids that no longer resolve)."""


class _Retryable(Exception):
    """A transient failure (5xx, timeout, dropped connection, truncated body) worth another attempt."""


@dataclass(frozen=True)
class GdcFile:
    """One row of a GDC manifest."""

    file_id: str
    file_name: str
    md5: str
    size: int | None
    state: str
    submitter_id: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures: delay = min(backoff_s * 2**k, max_backoff_s)."""

    retries: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0
    timeout_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff before retry number `attempt` (1-based)."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


def file_name_problems(file_name: str) -> list[str]:
    """Why a name is unsafe as a single file name in a folder (empty list when it is safe)."""
    if not isinstance(file_name, str) or not file_name:
        return ["it is empty"]
    problems = []
    if "/" in file_name or "\\" in file_name:
        problems.append("it contains a path separator")
    if ".." in file_name:
        problems.append("it contains '..'")
    if file_name.startswith("."):
        problems.append("it starts with a dot")
    if "\x00" in file_name:
        problems.append("it contains a NUL byte")
    elif any(ord(character) < 32 for character in file_name):
        problems.append("it contains a control character")
    return problems


def validate_file_name(file_name: str, file_id: str) -> str:
    """Refuse names that could escape the download folder or hide there; the error names the file id."""
    problems = file_name_problems(file_name)
    if problems:
        raise GdcError(f"GDC file {file_id}: refusing file name {file_name!r} because {' and '.join(problems)}")
    return file_name


def read_token(token_file: str | os.PathLike | None) -> str | None:
    """Read a GDC authentication token; None when no token file is configured."""
    if token_file is None or str(token_file) == "":
        return None
    path = Path(token_file)
    if not path.is_file():
        raise GdcError(f"GDC token file {path} does not exist")
    token = path.read_text().strip()
    if not token:
        raise GdcError(f"GDC token file {path} is empty")
    return token


def open_session(token: str | None = None) -> requests.Session:
    """A session that sends the token (when given) as X-Auth-Token on every request."""
    session = requests.Session()
    if token is not None:
        session.headers[TOKEN_HEADER] = token
    return session


def slide_filters(project: str) -> dict:
    """GDC filter selecting the diagnostic H&E slide images (SVS) of one project, as the paper used."""
    clauses = [
        ("cases.project.project_id", project),
        ("files.data_type", "Slide Image"),
        ("files.experimental_strategy", "Diagnostic Slide"),
        ("files.data_format", "SVS"),
    ]
    return {"op": "and", "content": [{"op": "in", "content": {"field": f, "value": [v]}} for f, v in clauses]}


def file_name_filter(file_name: str) -> dict:
    """GDC filter selecting files by exact file name (names and md5 outlive file ids)."""
    return {"op": "in", "content": {"field": "files.file_name", "value": [file_name]}}


def _api_url(api: str, endpoint: str) -> str:
    """Join the configurable API base URL and an endpoint."""
    return f"{api.rstrip('/')}/{endpoint.lstrip('/')}"


def _raise_for_status(response: requests.Response, what: str) -> None:
    """Map HTTP status to retryable (5xx, 429), not-found and permanent errors."""
    if response.status_code >= 500 or response.status_code == 429:
        raise _Retryable(f"{what}: HTTP {response.status_code}")
    if response.status_code == 404:
        raise GdcNotFound(f"{what}: HTTP 404 not found at {response.url}")
    if response.status_code in (401, 403):
        raise GdcError(
            f"{what}: HTTP {response.status_code} access refused; controlled files need a valid token_file"
        )
    if response.status_code >= 400:
        raise GdcError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")


def _with_retries(action, what: str, policy: RetryPolicy, log: logging.Logger):
    """Run `action()` retrying transient failures with exponential backoff; raise GdcError when they run out."""
    attempt = 0
    while True:
        try:
            return action()
        except (_Retryable, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
            attempt += 1
            if attempt > policy.retries:
                raise GdcError(f"{what}: giving up after {policy.retries} retries; last error: {error}") from None
            delay = policy.delay(attempt)
            log.warning("%s: %s; retry %d/%d in %.1f s", what, error, attempt, policy.retries, delay)
            time.sleep(delay)


def query_files(
    api: str,
    filters: dict,
    fields: Sequence[str] = FILE_FIELDS,
    page_size: int = 500,
    session: requests.Session | None = None,
    policy: RetryPolicy = RetryPolicy(),
    log: logging.Logger = logging.getLogger(__name__),
) -> list[dict]:
    """All hits of a GDC `files` query, following data.pagination to the last page."""
    if page_size < 1:
        raise ValueError(f"page_size must be positive, got {page_size}")
    session = session or open_session()
    url = _api_url(api, "files")
    hits: list[dict] = []
    start = 0
    while True:
        body = {"filters": filters, "fields": ",".join(fields), "format": "JSON", "size": page_size,
                "from": start, "sort": "file_name:asc"}

        def fetch_page() -> dict:
            response = session.post(url, json=body, timeout=policy.timeout_s)
            _raise_for_status(response, f"POST {url}")
            try:
                return response.json()["data"]
            except (ValueError, KeyError) as error:
                raise GdcError(f"GDC files query at {url}: response is not the data.hits shape: {error}") from None

        data = _with_retries(fetch_page, f"GDC files query (from={start})", policy, log)
        page_hits = data.get("hits", [])
        total = int(data["pagination"]["total"])
        hits.extend(page_hits)
        start += len(page_hits)
        log.info("GDC files query: %d of %d hits", len(hits), total)
        if start >= total:
            return hits
        if not page_hits:
            raise GdcError(f"GDC files query at {url} stopped at {start} of {total} hits (empty page)")


def gdc_file_from_hit(hit: dict) -> GdcFile:
    """A manifest row from a `files` hit; the file name is validated before anything uses it as a path."""
    file_id = hit.get("file_id") or hit.get("id")
    if not file_id:
        raise GdcError(f"GDC hit without file_id: {hit!r}")
    file_name = validate_file_name(hit.get("file_name", ""), file_id)
    cases = hit.get("cases") or []
    submitters = sorted({case.get("submitter_id", "") for case in cases if case.get("submitter_id")})
    size = hit.get("file_size")
    return GdcFile(
        file_id=file_id,
        file_name=file_name,
        md5=(hit.get("md5sum") or "").lower(),
        size=int(size) if size is not None else None,
        state=hit.get("state", ""),
        submitter_id=",".join(submitters),
    )


def discover_slides(
    api: str,
    project: str,
    page_size: int = 500,
    session: requests.Session | None = None,
    policy: RetryPolicy = RetryPolicy(),
    log: logging.Logger = logging.getLogger(__name__),
) -> list[GdcFile]:
    """The diagnostic slides of a GDC project, one manifest row each."""
    hits = query_files(api, slide_filters(project), FILE_FIELDS, page_size, session, policy, log)
    return [gdc_file_from_hit(hit) for hit in hits]


def read_manifest(path: str | os.PathLike) -> list[GdcFile]:
    """Read a GDC manifest (tab-separated id, filename, md5, size, state); file names are validated."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [column for column in ("id", "filename") if column not in (reader.fieldnames or [])]
        if missing:
            raise GdcError(f"GDC manifest {path} lacks column(s) {missing}; expected {list(MANIFEST_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            md5 = (row.get("md5") or "").strip().lower()
            if md5 and not _MD5.match(md5):
                raise GdcError(f"GDC manifest {path} line {line}: {md5!r} is not an md5 checksum")
            size = (row.get("size") or "").strip()
            if size and not size.isdigit():
                raise GdcError(f"GDC manifest {path} line {line}: size {size!r} is not a byte count")
            file_id = row["id"].strip()
            rows.append(GdcFile(
                file_id=file_id,
                file_name=validate_file_name(row["filename"].strip(), file_id),
                md5=md5,
                size=int(size) if size else None,
                state=(row.get("state") or "").strip(),
            ))
    return rows


def write_manifest(files: Iterable[GdcFile], path: str | os.PathLike) -> None:
    """Write a GDC manifest sorted by file name (then id) so the same slides give the same bytes."""
    ordered = sorted(files, key=lambda f: (f.file_name, f.file_id))
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(MANIFEST_COLUMNS)
            for f in ordered:
                writer.writerow([f.file_id, f.file_name, f.md5, "" if f.size is None else f.size, f.state])


def exclude_files(
    files: Iterable[GdcFile], exclude: Iterable[str], log: logging.Logger = logging.getLogger(__name__)
) -> list[GdcFile]:
    """Drop files whose name (or name without extension) is listed; warn about list entries that match nothing."""
    excluded = set(exclude or [])
    kept, matched = [], set()
    for f in files:
        keys = {f.file_name, f.file_name.rsplit(".", 1)[0]} & excluded
        if keys:
            matched |= keys
        else:
            kept.append(f)
    for name in sorted(excluded - matched):
        log.warning("exclusion list entry %r matches no slide", name)
    return kept


def build_manifest(
    api: str,
    project: str | None,
    manifest: str | os.PathLike | None = None,
    exclude: Iterable[str] = (),
    page_size: int = 500,
    session: requests.Session | None = None,
    policy: RetryPolicy = RetryPolicy(),
    log: logging.Logger = logging.getLogger(__name__),
) -> list[GdcFile]:
    """The cohort's slides: the user's manifest when given, else the GDC query; minus the exclusion list."""
    if manifest:
        files = read_manifest(manifest)
        log.info("read %d slides from user manifest %s", len(files), manifest)
    else:
        if not project:
            raise GdcError("slides.gdc.project is required when no slides.gdc.manifest is given")
        files = discover_slides(api, project, page_size, session, policy, log)
        log.info("GDC query for %s found %d diagnostic slides", project, len(files))
    kept = exclude_files(files, exclude, log)
    if len(kept) != len(files):
        log.info("excluded %d slides; %d remain", len(files) - len(kept), len(kept))
    return kept


def file_md5(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


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


def _receive(
    session: requests.Session,
    url: str,
    part: Path,
    state: dict,
    label: str,
    size: int | None,
    policy: RetryPolicy,
    progress: _Progress,
    chunk_bytes: int,
) -> None:
    """One HTTP attempt: continue `part` with a Range request when it has bytes; state["digest"] hashes `part`."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, headers=headers, stream=True, timeout=policy.timeout_s) as response:
        if response.status_code == 416 and have:
            part.unlink(missing_ok=True)
            raise _Retryable(f"server refused Range bytes={have}- (HTTP 416); restarting from byte 0")
        _raise_for_status(response, f"GET {url}")
        expected_total = None
        if have and response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != have:
                part.unlink(missing_ok=True)
                raise _Retryable(
                    f"server answered Range bytes={have}- with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; restarting from byte 0"
                )
            expected_total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
        else:
            if have:
                progress.log.info("%s: server ignored the Range request; restarting from byte 0", label)
            have, mode = 0, "wb"
            state["digest"] = hashlib.md5()
            length = response.headers.get("Content-Length")
            expected_total = int(length) if length and length.isdigit() else None
        if size is not None and expected_total is not None and expected_total != size:
            raise GdcError(f"download of {label}: server reports {expected_total} bytes, manifest says {size}")
        digest = state["digest"]
        with open(part, mode) as handle:
            for chunk in response.iter_content(chunk_size=chunk_bytes):
                handle.write(chunk)
                digest.update(chunk)
                have += len(chunk)
                progress.update(have, len(chunk))
    target = size if size is not None else expected_total
    if target is not None and have < target:
        raise _Retryable(f"connection ended at byte {have} of {target}")
    if target is not None and have > target:
        part.unlink(missing_ok=True)
        raise _Retryable(f"received {have} bytes, more than the expected {target}; restarting")


def download_file(
    api: str,
    file_id: str,
    destination: str | os.PathLike,
    md5: str | None = None,
    size: int | None = None,
    session: requests.Session | None = None,
    policy: RetryPolicy = RetryPolicy(),
    log: logging.Logger = logging.getLogger(__name__),
    chunk_bytes: int = 1 << 20,
    progress_interval_s: float = 10.0,
) -> Path:
    """Download `{api}/data/{file_id}` to `destination`: resumable, retried, md5-verified, renamed when complete."""
    destination = Path(destination)
    label = f"{destination.name} (GDC file {file_id})"
    validate_file_name(destination.name, file_id)
    md5 = md5.strip().lower() if md5 else None
    if md5 is not None and not _MD5.match(md5):
        raise GdcError(f"{label}: expected md5 {md5!r} is not an md5 checksum")
    if destination.is_file() and md5 is not None:
        found = file_md5(destination)
        if found == md5:
            log.info("%s already present with md5 %s; not downloading", label, md5)
            return destination
        log.warning("%s exists with md5 %s, expected %s; downloading again", label, found, md5)
    session = session or open_session()
    url = _api_url(api, f"data/{file_id}")
    log.info("downloading %s from %s", label, url)
    with atomic_path(destination) as part:
        state: dict = {"digest": hashlib.md5(), "bad_md5": None}
        progress = _Progress(label, size, log, progress_interval_s)

        def attempt() -> None:
            state["bad_md5"] = None
            if not part.exists():
                state["digest"] = hashlib.md5()
            _receive(session, url, part, state, label, size, policy, progress, chunk_bytes)
            found = state["digest"].hexdigest()
            if md5 is not None and found != md5:
                part.unlink(missing_ok=True)
                state["bad_md5"] = found
                raise _Retryable(f"md5 mismatch: expected {md5}, got {found}")

        try:
            _with_retries(attempt, f"download of {label}", policy, log)
        except GdcError:
            if state["bad_md5"] is not None:
                raise GdcError(
                    f"download of {label} failed md5 verification {policy.retries + 1} times: "
                    f"expected md5 {md5}, received md5 {state['bad_md5']}; the partial file was deleted "
                    f"and nothing was written to {destination}"
                ) from None
            raise
        received = part.stat().st_size
        progress.update(received, 0, force=True)
    log.info("downloaded %s: %d bytes, md5 %s", label, received, state["digest"].hexdigest())
    return destination


def resolve_by_name(
    api: str,
    file_name: str,
    md5: str | None,
    session: requests.Session | None = None,
    policy: RetryPolicy = RetryPolicy(),
    log: logging.Logger = logging.getLogger(__name__),
) -> GdcFile:
    """Find the current GDC record of a file by name (and md5 when known), for manifests with stale ids."""
    hits = query_files(api, file_name_filter(file_name), FILE_FIELDS, 100, session, policy, log)
    candidates = [gdc_file_from_hit(hit) for hit in hits]
    candidates = [c for c in candidates if c.file_name == file_name and (not md5 or c.md5 == md5.lower())]
    if len(candidates) != 1:
        raise GdcNotFound(
            f"GDC has {len(candidates)} files named {file_name!r}"
            + (f" with md5 {md5}" if md5 else "")
            + "; cannot resolve a stale file id"
        )
    return candidates[0]


def download_keyed(
    api: str,
    file_id: str,
    destination: str | os.PathLike,
    md5: str | None = None,
    size: int | None = None,
    session: requests.Session | None = None,
    policy: RetryPolicy = RetryPolicy(),
    log: logging.Logger = logging.getLogger(__name__),
    progress_interval_s: float = 10.0,
) -> Path:
    """Download by id; when the id no longer resolves, look the file up by name and md5 and use its new id."""
    try:
        return download_file(api, file_id, destination, md5, size, session, policy, log,
                             progress_interval_s=progress_interval_s)
    except GdcNotFound:
        name = Path(destination).name
        log.warning("GDC file id %s not found; looking up %s by name and md5", file_id, name)
        current = resolve_by_name(api, name, md5, session, policy, log)
        log.info("%s is now GDC file %s", name, current.file_id)
        return download_file(api, current.file_id, destination, md5, size, session, policy, log,
                             progress_interval_s=progress_interval_s)


def fetch_source(
    source: str | os.PathLike | dict,
    destination: str | os.PathLike,
    api: str = DEFAULT_API,
    session: requests.Session | None = None,
    policy: RetryPolicy = RetryPolicy(),
    log: logging.Logger = logging.getLogger(__name__),
) -> Path:
    """Provide an input file: a local path is symlinked (absolute target, no copy of multi-GB matrices);
    `{gdc_file_id, md5?, size?}` is downloaded with the slide download code."""
    destination = Path(destination)
    if isinstance(source, (str, os.PathLike)):
        local = Path(source)
        if not local.is_file():
            raise GdcError(f"input file {local} for {destination} does not exist")
        with atomic_path(destination) as temporary:
            os.symlink(local.resolve(), temporary)
        log.info("linked %s -> %s", destination, local.resolve())
        return destination
    if isinstance(source, dict) and source.get("gdc_file_id"):
        size = source.get("size")
        return download_keyed(
            api, str(source["gdc_file_id"]), destination, source.get("md5") or None,
            int(size) if size not in (None, "") else None, session, policy, log,
        )
    raise GdcError(f"source for {destination} must be a local path or {{gdc_file_id, md5}}, got {source!r}")
