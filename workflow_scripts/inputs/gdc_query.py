"""Which files the GDC holds: paged `files` queries for a project's diagnostic slides or a file name, as manifests."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from workflow_scripts.inputs.gdc_manifest import (
    GdcError,
    GdcFile,
    GdcNotFound,
    RejectedRow,
    check_any_valid,
    exclude_files,
    read_manifest,
    row_problems,
    validate_file_name,
)
from workflow_scripts.inputs.gdc_session import GdcClient, raise_for_status

FILE_FIELDS = ("file_id", "file_name", "md5sum", "file_size", "state", "cases.submitter_id")


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


def query_files(
    client: GdcClient, filters: dict, fields: Sequence[str] = FILE_FIELDS, page_size: int = 500
) -> list[dict]:
    """All hits of a GDC `files` query, following data.pagination to the last page."""
    if page_size < 1:
        raise ValueError(f"page_size must be positive, got {page_size}")
    url = client.url("files")
    hits: list[dict] = []
    start = 0
    while True:
        body = {"filters": filters, "fields": ",".join(fields), "format": "JSON", "size": page_size,
                "from": start, "sort": "file_name:asc"}

        def fetch_page() -> dict:
            """One page of hits; a body without data.hits is a permanent error."""
            response = client.request("POST", url, f"GDC files query at {url}", json=body)
            raise_for_status(response, f"POST {url}", client.policy.retries)
            try:
                return response.json()["data"]
            except (ValueError, KeyError) as error:
                raise GdcError(f"GDC files query at {url}: response is not the data.hits shape: {error}") from None

        data = fetch_page()
        page_hits = data.get("hits", [])
        total = int(data["pagination"]["total"])
        hits.extend(page_hits)
        start += len(page_hits)
        client.log.info("GDC files query: %d of %d hits", len(hits), total)
        if start >= total:
            return hits
        if not page_hits:
            raise GdcError(f"GDC files query at {url} stopped at {start} of {total} hits (empty page)")


def file_record(client: GdcClient, file_id: str) -> GdcFile:
    """What the GDC reports for one file id (`/files/{id}`): name, md5 and size, to verify a download against."""
    url = client.url(f"files/{file_id}")
    what = f"GDC metadata of file {file_id}"
    response = client.request("GET", url, what, params={"fields": "file_id,file_name,md5sum,file_size,state"})
    raise_for_status(response, what, client.policy.retries)
    try:
        hit = response.json()["data"]
    except (ValueError, KeyError) as error:
        raise GdcError(f"{what} at {url}: response has no data object: {error}") from None
    record = gdc_file_from_hit({"file_id": file_id, **hit})
    if record.file_id != file_id:
        raise GdcError(f"{what}: the GDC answered for file {record.file_id} instead")
    return record


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
    client: GdcClient, project: str, page_size: int = 500, rejected: list[RejectedRow] | None = None
) -> list[GdcFile]:
    """The diagnostic slides of a GDC project, one manifest row each. Without `rejected` an invalid hit is an
    error; with it, each is skipped with a warning and appended, and only no valid hit is an error."""
    hits = query_files(client, slide_filters(project), FILE_FIELDS, page_size)
    files, skipped = [], []
    for number, hit in enumerate(hits, start=1):
        file_id, file_name = str(hit.get("file_id") or hit.get("id") or ""), str(hit.get("file_name") or "")
        size = "" if hit.get("file_size") is None else str(hit.get("file_size"))
        problems = row_problems(file_id, file_name, (hit.get("md5sum") or "").lower(), size, hit.get("state", ""))
        if problems and rejected is not None:
            skipped.append(RejectedRow(f"GDC query {project}", f"hit {number}", file_id, file_name,
                                       " and ".join(problems)))
            client.log.warning("skipping %s", skipped[-1].describe())
            continue
        files.append(gdc_file_from_hit(hit))
    if rejected is not None:
        rejected.extend(skipped)
        check_any_valid(files, skipped, f"GDC query for {project}")
    return files


def resolve_by_name(client: GdcClient, file_name: str, md5: str | None) -> GdcFile:
    """Find the current GDC record of a file by name (and md5 when known), for manifests with stale ids."""
    hits = query_files(client, file_name_filter(file_name), FILE_FIELDS, 100)
    candidates = [gdc_file_from_hit(hit) for hit in hits]
    candidates = [c for c in candidates if c.file_name == file_name and (not md5 or c.md5 == md5.lower())]
    if len(candidates) != 1:
        raise GdcNotFound(
            f"GDC has {len(candidates)} files named {file_name!r}"
            + (f" with md5 {md5}" if md5 else "")
            + "; cannot resolve a stale file id"
        )
    return candidates[0]


def build_manifest(
    client: GdcClient,
    project: str | None,
    manifest: str | os.PathLike | None = None,
    exclude: Iterable[str] = (),
    page_size: int = 500,
    rejected: list[RejectedRow] | None = None,
) -> list[GdcFile]:
    """The cohort's slides: the user's manifest when given, else the GDC query; minus the exclusion list.

    With `rejected`, invalid rows are skipped and appended to it (see gdc_manifest), else they are errors."""
    log = client.log
    if manifest:
        files = read_manifest(manifest, rejected, log)
        log.info("read %d slides from user manifest %s", len(files), manifest)
    else:
        if not project:
            raise GdcError("slides.gdc.project is required when no slides.gdc.manifest is given")
        files = discover_slides(client, project, page_size, rejected)
        log.info("GDC query for %s found %d diagnostic slides", project, len(files))
    kept = exclude_files(files, exclude, log)
    if len(kept) != len(files):
        log.info("excluded %d slides; %d remain", len(files) - len(kept), len(kept))
    return kept
