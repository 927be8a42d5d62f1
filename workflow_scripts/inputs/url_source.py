"""Input files fetched by URL (`{url, md5?, member?, file_name}`), such as one table of a cBioPortal study archive.

A URL is fetched with the GDC download machinery (gdc_download.transfer_to: urllib3 retries of connection errors
and 429/5xx, Range resume of the fixed `.{name}.part` file, rename when complete) through a session of its own
that holds no token: the GDC token is never sent to a URL source, whatever its host. A pinned `md5` is checked
against the bytes received (a mismatch is retried, then refused naming the URL); without one the md5 and sha256
received are logged, so a run records what it read.

Without `member` the download is the input file. With `member` the URL serves a tar archive (gzip, bzip2 or xz
compressed, or plain), e.g. cBioPortal datahub's `brca_tcga_pan_can_atlas_2018.tar.gz` with the member
`brca_tcga_pan_can_atlas_2018/data_clinical_patient.txt`. The archive is kept in `archives/` beside the input
(so other members and reruns do not download it again; delete it to reclaim the space) and read as a stream:
only the wanted member is written, under the configured file name and atomically, never a path the archive
names, so an archive cannot write outside the folder. The member must be a regular file; a missing one is
refused naming the member, the archive and similar member names. Jobs sharing an archive take turns (a lock).
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import os
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.hashing import md5_file
from workflow_scripts.inputs.gdc_download import DownloadFailed, DownloadTarget, transfer_to
from workflow_scripts.inputs.gdc_manifest import MD5_PATTERN, GdcError, file_name_problems
from workflow_scripts.inputs.gdc_session import GdcClient, open_session

ARCHIVE_FOLDER = "archives"


@dataclass(frozen=True)
class UrlTarget(DownloadTarget):
    """A download by URL: `file_id` holds the URL, and log lines and errors name the file and its URL."""

    @property
    def label(self) -> str:
        """How log lines and errors name the file."""
        return f"{self.destination.name} (from {self.file_id})"


def tokenless_client(client: GdcClient) -> GdcClient:
    """A client with the same retry policy and log whose session holds no token (URL sources get none)."""
    return GdcClient(api=client.api, session=open_session(None), policy=client.policy, log=client.log)


def _checked_name(name: str, what: str) -> str:
    """A bare, safe local file name, or an error naming what it is for."""
    problems = file_name_problems(name)
    if problems:
        raise GdcError(f"{what}: refusing file name {name!r} because {' and '.join(problems)}")
    return name


def archive_name(url: str) -> str:
    """The archive's local name: the last segment of the URL path (e.g. brca_tcga_pan_can_atlas_2018.tar.gz)."""
    return _checked_name(unquote(PurePosixPath(urlsplit(url).path).name), f"archive of {url}")


def normalise_member(member: str) -> str:
    """A member path as tar archives spell it (no leading ./); refuse absolute paths and `..` parts."""
    path = PurePosixPath(member.strip().removeprefix("./"))
    if not member.strip() or path.is_absolute() or ".." in path.parts or "\\" in member:
        raise GdcError(f"archive member {member!r} must be a relative path inside the archive without '..'")
    return str(path)


def _pinned_md5(source: dict, url: str) -> str | None:
    """The configured md5 in lower case (None when unset), or an error naming the URL."""
    md5 = (source.get("md5") or "").strip().lower() or None
    if md5 is not None and not MD5_PATTERN.match(md5):
        raise GdcError(f"{url}: configured md5 {source['md5']!r} is not an md5 checksum")
    return md5


def download_url(client: GdcClient, url: str, destination: str | os.PathLike, md5: str | None = None) -> Path:
    """Download a URL to `destination` without any token: resumable, retried, md5-verified when md5 is given."""
    target = UrlTarget(url, Path(destination), md5)
    _checked_name(target.destination.name, target.label)
    client = tokenless_client(client)
    if target.destination.is_file():
        found = md5_file(target.destination) if md5 is not None else None
        if found == md5:
            client.log.info("%s already present%s; not downloading", target.label, f" with md5 {md5}" if md5 else "")
            return target.destination
        client.log.warning("%s exists with md5 %s, expected %s; downloading again", target.label, found, md5)
    path = transfer_to(client, target, url)
    if md5 is None:
        with open(path, "rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        client.log.info("%s: no md5 configured; received md5 %s, sha256 %s", target.label, md5_file(path), sha256)
    return path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`'s lock file, so jobs fetching members of one archive take turns."""
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def extract_member(archive: str | os.PathLike, member: str, destination: str | os.PathLike, where: str = "") -> Path:
    """Stream one regular-file member of a tar archive to `destination` (atomically); nothing else is written."""
    archive, wanted = Path(archive), normalise_member(member)
    names = []
    try:
        with tarfile.open(archive, mode="r|*") as stream:
            for entry in stream:
                name = entry.name.removeprefix("./")
                if name != wanted:
                    names.append(name)
                    continue
                if not entry.isfile():
                    raise DownloadFailed(f"{archive}{where}: member {member!r} is not a regular file")
                with stream.extractfile(entry) as source, atomic_path(destination) as temporary:
                    with open(temporary, "wb") as target:
                        shutil.copyfileobj(source, target, 1 << 20)
                return Path(destination)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DownloadFailed(f"{archive}{where}: not a readable tar archive ({error})") from None
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
    hint = f"; similar members: {close}" if close else f"; it has {len(names)} members, e.g. {names[:5]}"
    raise DownloadFailed(f"archive {archive}{where} has no member {member!r}{hint}")


def fetch_url(client: GdcClient, source: dict, destination: str | os.PathLike) -> Path:
    """Provide the input `{url, md5?, member?, file_name}` at `destination` (see the module docstring)."""
    url, destination = str(source["url"]), Path(destination)
    md5 = _pinned_md5(source, url)
    member = source.get("member")
    if not member:
        return download_url(client, url, destination, md5)
    archive = destination.parent / ARCHIVE_FOLDER / archive_name(url)
    with _locked(archive):
        download_url(client, url, archive, md5)
        extract_member(archive, member, destination, f" (from {url})")
    client.log.info("extracted %s from %s (from %s) to %s", member, archive.name, url, destination)
    return destination
