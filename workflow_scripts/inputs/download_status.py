"""The download status of one GDC slide (resources/{cohort}/downloads/{file_name}.tsv): its one reader and writer.

Rule gdc_download declares this file, not the slide, as its output, so that a download that can never succeed
(md5 mismatch after every retry, no file by id or by name, a permanent HTTP status) still ends the job with its
outputs written: the status says `fail` and why, and the slide's tiling job turns that into a `fail` QC row.
Transient failures and kills write no status (the job fails; Snakemake's retries and the `.part` resume apply).

Contract: a TSV in the one form of common.tables with one row, columns STATUS_COLUMNS
- file_name: the slide's file name (the rule's wildcard);
- status: exactly `ok` or `fail`;
- reason: why the download failed ('' when ok; required when fail);
- path: where the slide file is (ok) or would have been (fail), relative to the workdir;
- md5: the md5 the slide file has (ok) or was expected to have (fail; may be empty);
- file_id: the GDC file id the slide was downloaded by (the current one, after a name lookup).
Only this module and no HTTP code is imported by the tiling job, so it stays importable there.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

import pandas as pd

from workflow_scripts.common.tables import read_text_table, write_tsv

DOWNLOAD_STATUSES = ("ok", "fail")


@dataclass(frozen=True)
class DownloadStatus:
    """How one slide's download ended."""

    file_name: str
    status: str
    reason: str = ""
    path: str = ""
    md5: str = ""
    file_id: str = ""

    @property
    def ok(self) -> bool:
        """True when the slide file was downloaded and verified."""
        return self.status == "ok"


STATUS_COLUMNS = tuple(f.name for f in fields(DownloadStatus))


def _check(status: DownloadStatus, where: str) -> DownloadStatus:
    """The status, or an error naming the file when it breaks the contract."""
    if status.status not in DOWNLOAD_STATUSES:
        raise ValueError(f"{where}: download status {status.status!r} is not ok or fail")
    if status.status == "fail" and not status.reason:
        raise ValueError(f"{where}: a failed download of {status.file_name} must give its reason")
    if not status.file_name:
        raise ValueError(f"{where}: empty file_name")
    return status


def write_download_status(status: DownloadStatus, path: str | os.PathLike) -> None:
    """Write one slide's download status (one row), atomically."""
    _check(status, str(path))
    write_tsv(pd.DataFrame([asdict(status)], columns=list(STATUS_COLUMNS), dtype=str), path)


def read_download_status(path: str | os.PathLike) -> DownloadStatus:
    """Read one slide's download status, checking the columns, the one row and the status; errors name the file."""
    table = read_text_table(path, STATUS_COLUMNS)
    if len(table) != 1:
        raise ValueError(f"{path}: a download status has exactly one row, found {len(table)}")
    row = table.iloc[0]
    return _check(DownloadStatus(**{column: str(row[column]) for column in STATUS_COLUMNS}), str(path))
