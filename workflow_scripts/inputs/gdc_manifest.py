"""The GDC manifest (resources/{cohort}/manifest.tsv, or a user's gdc-client manifest): its one reader and writer.

Contract: tab-separated, a header row, `\\n` line ends, one row per file, sorted by file name then id, columns
- id: the GDC file id (UUID), which the `data` endpoint downloads;
- filename: the file's name, a single safe file name (no separator, no '..', no leading dot, no control
  character), because it becomes a path under resources/{cohort}/slides/;
- md5: lower-case hex MD5 of the file (required: a download must be verifiable);
- size: the file size in bytes, or empty when unknown;
- state: the GDC file state: `released` (`validated` in old manifests) or empty.
Readers need only `id` and `filename` (gdc-client manifests carry all five). Reading a user's manifest (or a GDC
query) skips each invalid row (unsafe name, missing or bad md5, bad size, a state the GDC cannot serve) with a
warning naming the row and the problem, and lists it in resources/{cohort}/manifest_rejected.tsv (REJECTED_COLUMNS:
source, line, file_id, file_name, problem); only a manifest without any valid row is an error. The workflow's own
manifest.tsv is read strictly: a bad row there is an error naming the file and line. The file-name checks and
the GDC errors live here, not beside the HTTP client, because the slide table and the demo generator use them in
environments without an HTTP stack.
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
REJECTED_COLUMNS = ("source", "line", "file_id", "file_name", "problem")
MD5_PATTERN = re.compile(r"^[0-9a-f]{32}$")
SERVABLE_STATES = ("", "released", "validated")


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


@dataclass(frozen=True)
class RejectedRow:
    """A manifest row or GDC hit left out of the cohort, and why (one row of manifest_rejected.tsv)."""

    source: str
    line: str
    file_id: str
    file_name: str
    problem: str

    def describe(self) -> str:
        """How warnings and errors name the row."""
        where = f"{self.source} line {self.line}" if self.line else self.source
        return f"{where} (GDC file {self.file_id or '?'}, {self.file_name!r}): {self.problem}"


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


def row_problems(file_id: str, file_name: str, md5: str, size: str, state: str) -> list[str]:
    """Why one manifest row (or GDC hit) cannot be a slide of the cohort (empty list when it can)."""
    problems = [] if file_id else ["it has no file id"]
    name_problems = file_name_problems(file_name)
    if name_problems:
        problems.append(f"refusing file name {file_name!r} because {' and '.join(name_problems)}")
    if not md5:
        problems.append("it has no md5, so its download could not be verified")
    elif not MD5_PATTERN.match(md5):
        problems.append(f"{md5!r} is not an md5 checksum")
    if size and not size.isdigit():
        problems.append(f"size {size!r} is not a byte count")
    if state not in SERVABLE_STATES:
        problems.append(f"state {state!r} is not one the GDC serves ({', '.join(s for s in SERVABLE_STATES if s)})")
    return problems


def read_manifest(
    path: str | os.PathLike, rejected: list[RejectedRow] | None = None, log: logging.Logger | None = None
) -> list[GdcFile]:
    """Read a GDC manifest (see the module docstring). Strict without `rejected` (a bad row is an error naming the
    file and line); with it, bad rows are skipped, warned about and appended, and only no valid row is an error."""
    path, log = Path(path), log or logging.getLogger(__name__)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [column for column in ("id", "filename") if column not in (reader.fieldnames or [])]
        if missing:
            raise GdcError(f"GDC manifest {path} lacks column(s) {missing}; expected {list(MANIFEST_COLUMNS)}")
        rows, skipped = [], []
        for line, row in enumerate(reader, start=2):
            cells = {key: (row.get(key) or "").strip() for key in MANIFEST_COLUMNS}
            cells["md5"] = cells["md5"].lower()
            problems = row_problems(cells["id"], cells["filename"], cells["md5"], cells["size"], cells["state"])
            if problems:
                problem = " and ".join(problems)
                skipped.append(RejectedRow(str(path), str(line), cells["id"], cells["filename"], problem))
                if rejected is None:
                    raise GdcError(f"GDC manifest {skipped[0].describe()}")
                log.warning("skipping %s", skipped[-1].describe())
                continue
            size = cells["size"]
            rows.append(GdcFile(cells["id"], cells["filename"], cells["md5"], int(size) if size else None,
                                cells["state"]))
    if rejected is not None:
        rejected.extend(skipped)
        check_any_valid(rows, skipped, f"GDC manifest {path}")
    return rows


def check_any_valid(rows: list, skipped: list[RejectedRow], what: str) -> None:
    """An error listing the rejected rows when none of a manifest's or query's rows is valid."""
    if not rows and skipped:
        listed = "; ".join(row.describe() for row in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        raise GdcError(f"{what}: none of its {len(skipped)} rows is valid: {listed}")


def write_rejected(rejected: Iterable[RejectedRow], path: str | os.PathLike) -> None:
    """Write manifest_rejected.tsv (REJECTED_COLUMNS, header only when nothing was rejected), atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(REJECTED_COLUMNS)
            for row in rejected:
                writer.writerow([row.source, row.line, row.file_id, row.file_name, row.problem])


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
