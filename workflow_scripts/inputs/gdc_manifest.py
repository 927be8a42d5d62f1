"""The GDC manifest (resources/{cohort}/manifest.tsv, or a user's gdc-client manifest): its one reader and writer.

Contract: tab-separated, a header row, `\\n` line ends, one row per file, sorted by file name then id, columns
- id: the GDC file id (UUID), which the `data` endpoint downloads;
- filename: the file's name, a single safe file name (no separator, no '..', no leading dot, no control
  character), because it becomes a path under resources/{cohort}/slides/;
- md5: lower-case hex MD5 of the file, or empty when unknown;
- size: the file size in bytes, or empty when unknown;
- state: the GDC file state (`released`), informational.
Readers need only `id` and `filename` (gdc-client manifests carry all five); a bad md5, size or name is an
error naming the file and line. The file-name checks and the GDC errors live here, not beside the HTTP client,
because the slide table and the demo generator use them in environments without an HTTP stack.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.common.atomic import atomic_path

MANIFEST_COLUMNS = ("id", "filename", "md5", "size", "state")
MD5_PATTERN = re.compile(r"^[0-9a-f]{32}$")


class GdcError(RuntimeError):
    """A GDC request or download that cannot succeed by retrying (bad input, refused access, bad checksum)."""


class GdcNotFound(GdcError):
    """The GDC answered 404 for a file id (old manifests carry ids that no longer resolve)."""


@dataclass(frozen=True)
class GdcFile:
    """One row of a GDC manifest."""

    file_id: str
    file_name: str
    md5: str
    size: int | None
    state: str
    submitter_id: str = ""


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


def read_manifest(path: str | os.PathLike) -> list[GdcFile]:
    """Read a GDC manifest (see the module docstring); file names, md5s and sizes are validated."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [column for column in ("id", "filename") if column not in (reader.fieldnames or [])]
        if missing:
            raise GdcError(f"GDC manifest {path} lacks column(s) {missing}; expected {list(MANIFEST_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            md5 = (row.get("md5") or "").strip().lower()
            if md5 and not MD5_PATTERN.match(md5):
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
