"""The slide table (resources/{cohort}/slides.tsv): one row per slide, whatever the slides came from.

This module is the one writer and the one reader of the table. Contract: a TSV in the one form of
common.tables (tab-separated, header, `\\n` line ends), sorted by slide_id, every cell text, columns
- slide_id: the slide's id (file name without its last extension, or the user's id); unique, because it names
  every per-slide result (tiles/{slide_id}.h5, qc/slides/{slide_id}.tsv, ...);
- patient_id: the patient the slide belongs to (TCGA: the 12-character barcode); splits and labels are per patient;
- path: where the slide file is or will be (GDC: resources/{cohort}/slides/{file_name}, relative to the workdir;
  local folder or table: the path as found or resolved against the table's folder);
- file_name: the slide file's name, the key rule gdc_download downloads by;
- md5: the file's MD5 (GDC manifest, or the demo's written slide); empty for local slides;
- size: the file size in bytes; empty when unknown;
- file_id: the GDC file id; empty for local and demo slides.
Writers: the slide_table checkpoint (GDC manifest, folder or user table) and the demo generator, both through
`write_slide_table`; readers get a DataFrame of text from `read_slide_table`, which checks the columns, that
slide_id, patient_id, path and file_name are set and that slide ids are unique, naming the file on error.

The slides left out (slides.exclude, slides.sample_types) go to resources/{cohort}/slides_excluded.tsv, also owned
here (`write_excluded_slides`, `read_excluded_slides`): columns EXCLUDED_COLUMNS (slide_id, patient_id, file_name,
reason), sorted by slide_id, header only when none; the QC table lists them as failed with that reason.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import pandas as pd

from workflow_scripts.common.tables import read_text_table, write_tsv
from workflow_scripts.inputs.barcodes import PRIMARY_SAMPLE_TYPES, normalise_sample_types, sample_type_exclusion
from workflow_scripts.inputs.barcodes import patient_id as tcga_patient_id
from workflow_scripts.inputs.gdc_manifest import GdcFile, file_name_problems, read_manifest, validate_file_name
from workflow_scripts.slides.qc_table import EXCLUDED_REASON

SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm")
LOCAL_TABLE_COLUMNS = ("slide_id", "patient_id", "path")
NON_EMPTY_COLUMNS = ("slide_id", "patient_id", "path", "file_name")


class SlideTableError(ValueError):
    """The slides cannot be listed as configured; the message names the file, slide or key."""


@dataclass(frozen=True)
class SlideRecord:
    """One row of slides.tsv; md5, size and file_id are empty for local slides."""

    slide_id: str
    patient_id: str
    path: str
    file_name: str
    md5: str = ""
    size: str = ""
    file_id: str = ""


TABLE_COLUMNS = tuple(f.name for f in fields(SlideRecord))


@dataclass(frozen=True)
class ExcludedSlide:
    """One row of slides_excluded.tsv: a slide of the source left out of the cohort, and why."""

    slide_id: str
    patient_id: str
    file_name: str
    reason: str


EXCLUDED_COLUMNS = tuple(f.name for f in fields(ExcludedSlide))


def slide_id_of(file_name: str) -> str:
    """The slide id: the file name without its (last) extension."""
    stem, dot, _ = file_name.rpartition(".")
    return stem if dot else file_name


def is_slide_file(path: Path) -> bool:
    """Whether OpenSlide could open the file, judged by extension (case-insensitive)."""
    return path.suffix.lower() in SLIDE_EXTENSIONS and not path.name.startswith(".")


def barcode_patient_id(name: str, source: str) -> str:
    """Patient id from a TCGA-named slide; otherwise an error telling the user to provide a table."""
    try:
        return tcga_patient_id(name)
    except ValueError:
        raise SlideTableError(
            f"{source}: cannot tell the patient of slide {name!r} because its name is not a TCGA barcode; "
            f"list the slides in a table (slides.local.table with columns {', '.join(LOCAL_TABLE_COLUMNS)})"
        ) from None


def records_from_manifest(files: Iterable[GdcFile], cohort: str) -> list[SlideRecord]:
    """Rows for GDC slides, to be downloaded to resources/{cohort}/slides/{file name}."""
    records = []
    for f in files:
        validate_file_name(f.file_name, f.file_id)
        records.append(SlideRecord(
            slide_id=slide_id_of(f.file_name),
            patient_id=barcode_patient_id(f.file_name, f"GDC file {f.file_id}"),
            path=f"resources/{cohort}/slides/{f.file_name}",
            file_name=f.file_name,
            md5=f.md5,
            size="" if f.size is None else str(f.size),
            file_id=f.file_id,
        ))
    return records


def records_from_folder(folder: str | os.PathLike) -> list[SlideRecord]:
    """Rows for the slide files directly inside a folder; patients from their TCGA barcodes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SlideTableError(f"slides.local.folder {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if is_slide_file(p) and (p.is_file() or p.is_symlink()))
    if not paths:
        raise SlideTableError(f"slides.local.folder {folder} holds no slide files ({' '.join(SLIDE_EXTENSIONS)})")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise SlideTableError(f"slide {missing[0]} is a broken symbolic link")
    return [
        SlideRecord(slide_id_of(p.name), barcode_patient_id(p.name, f"slides.local.folder {folder}"), str(p), p.name)
        for p in paths
    ]


def records_from_table(table: str | os.PathLike) -> list[SlideRecord]:
    """Rows from a user table (slide_id, patient_id, path); relative paths are relative to the table's folder."""
    table = Path(table)
    if not table.is_file():
        raise SlideTableError(f"slides.local.table {table} does not exist")
    delimiter = "," if table.suffix.lower() == ".csv" else "\t"
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        missing = [c for c in LOCAL_TABLE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SlideTableError(
                f"slide table {table} lacks column(s) {', '.join(missing)}; it needs {', '.join(LOCAL_TABLE_COLUMNS)}"
            )
        records = []
        for line, row in enumerate(reader, start=2):
            values = {c: (row[c] or "").strip() for c in LOCAL_TABLE_COLUMNS}
            empty = [c for c, v in values.items() if not v]
            if empty:
                raise SlideTableError(f"slide table {table} line {line}: empty {', '.join(empty)}")
            slide_id = values["slide_id"]
            problems = file_name_problems(slide_id)
            if problems:
                raise SlideTableError(
                    f"slide table {table} line {line}: slide_id {slide_id!r} is unusable as a file name because "
                    f"{' and '.join(problems)}"
                )
            path = Path(values["path"])
            if not path.is_absolute():
                path = Path(os.path.normpath(table.parent / path))
            if not path.is_file():
                raise SlideTableError(f"slide table {table} line {line}: slide file {path} does not exist")
            records.append(SlideRecord(slide_id, values["patient_id"], str(path), path.name))
    if not records:
        raise SlideTableError(f"slide table {table} lists no slides")
    return records


def exclude_records(
    records: Iterable[SlideRecord],
    exclude: Iterable[str],
    log: logging.Logger = logging.getLogger(__name__),
    dropped: list[ExcludedSlide] | None = None,
) -> list[SlideRecord]:
    """Drop slides whose file name or slide id is in the exclusion list (appending them to `dropped` with reason
    EXCLUDED_REASON); warn about entries matching nothing."""
    excluded = set(exclude or [])
    kept, matched = [], set()
    for record in records:
        hits = {record.file_name, record.slide_id} & excluded
        matched |= hits
        if not hits:
            kept.append(record)
        elif dropped is not None:
            dropped.append(ExcludedSlide(record.slide_id, record.patient_id, record.file_name, EXCLUDED_REASON))
    for name in sorted(excluded - matched):
        log.warning("slides.exclude entry %r matches no slide", name)
    return kept


def filter_sample_types(
    records: Iterable[SlideRecord],
    sample_types: Iterable[str | int] = PRIMARY_SAMPLE_TYPES,
    log: logging.Logger = logging.getLogger(__name__),
    dropped: list[ExcludedSlide] | None = None,
) -> list[SlideRecord]:
    """Drop TCGA slides whose sample type is not allowed (default: primary tumour 01), logging each with its reason
    (and appending it to `dropped`); slides named by a local cohort's own ids are kept."""
    try:
        allowed = normalise_sample_types(sample_types)
    except ValueError as error:
        raise SlideTableError(f"slides.sample_types: {error}") from None
    kept = []
    for record in records:
        reason = sample_type_exclusion(record.file_name, allowed)
        if reason is None:
            kept.append(record)
        else:
            log.warning("slide %s excluded: %s", record.slide_id, reason)
            if dropped is not None:
                dropped.append(ExcludedSlide(record.slide_id, record.patient_id, record.file_name, reason))
    if len(kept) < len(records):
        log.info("%d slide(s) excluded by sample type (allowed: %s)", len(records) - len(kept), ", ".join(allowed))
    return kept


def check_unique(records: Iterable[SlideRecord]) -> None:
    """Slide ids name result files, so two slides with one id would overwrite each other's results."""
    counts = Counter(r.slide_id for r in records)
    duplicates = sorted(s for s, n in counts.items() if n > 1)
    if duplicates:
        raise SlideTableError(f"duplicate slide_id(s): {', '.join(duplicates)}")


def build_slide_table(
    slides: Mapping,
    cohort: str,
    manifest: str | os.PathLike | None = None,
    log: logging.Logger = logging.getLogger(__name__),
    sample_types: Iterable[str | int] = PRIMARY_SAMPLE_TYPES,
    dropped: list[ExcludedSlide] | None = None,
) -> list[SlideRecord]:
    """Slide rows for the `slides:` config (source gdc|local), minus exclusions, checked and sorted by slide id.

    Slides from a GDC manifest or a folder also lose those whose TCGA sample type is not in `sample_types`; a
    user's table lists its slides explicitly and is kept whole. The slides left out are appended to `dropped`.
    """
    source = slides.get("source")
    by_barcode = True
    if source == "gdc":
        if not manifest:
            raise SlideTableError("slides.source is gdc but no GDC manifest was given to the slide table")
        records = records_from_manifest(read_manifest(manifest), cohort)
    elif source == "local":
        local = slides.get("local") or {}
        if local.get("table"):
            records, by_barcode = records_from_table(local["table"]), False
        elif local.get("folder"):
            records = records_from_folder(local["folder"])
        else:
            raise SlideTableError("slides.source is local: set slides.local.table or slides.local.folder")
    else:
        raise SlideTableError(f"slides.source {source!r} is not gdc or local")
    records = exclude_records(records, slides.get("exclude") or [], log, dropped)
    if by_barcode:
        records = filter_sample_types(records, sample_types, log, dropped)
    if not records:
        raise SlideTableError("no slides left after slides.exclude and slides.sample_types")
    check_unique(records)
    return sorted(records, key=lambda r: r.slide_id)


def write_slide_table(records: Iterable[SlideRecord], path: str | os.PathLike) -> None:
    """Write slides.tsv (see the module docstring) sorted by slide id, atomically."""
    records = sorted(records, key=lambda r: r.slide_id)
    check_unique(records)
    write_tsv(pd.DataFrame([astuple(r) for r in records], columns=list(TABLE_COLUMNS), dtype=str), path)


def read_slide_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read slides.tsv as text, checking columns, required cells and unique slide ids; errors name the file."""
    table = _read_filled(path, "slide table", TABLE_COLUMNS, NON_EMPTY_COLUMNS)
    duplicates = sorted(set(table.loc[table["slide_id"].duplicated(), "slide_id"]))
    if duplicates:
        raise SlideTableError(f"slide table {path}: duplicate slide_id(s): {', '.join(duplicates)}")
    return table


def _read_filled(path: str | os.PathLike, what: str, columns: Iterable[str], non_empty: Iterable[str]) -> pd.DataFrame:
    """A table of text with the given columns and no empty cell in `non_empty`; errors name the file and line."""
    try:
        table = read_text_table(path, columns)
    except ValueError as error:
        raise SlideTableError(f"{what} {error}") from None
    for column in non_empty:
        empty = table.index[table[column].str.strip() == ""]
        if len(empty):
            raise SlideTableError(f"{what} {path} line {empty[0] + 2}: empty {column}")
    return table


def write_excluded_slides(excluded: Iterable[ExcludedSlide], path: str | os.PathLike) -> None:
    """Write slides_excluded.tsv (see the module docstring) sorted by slide id, atomically."""
    rows = sorted(excluded, key=lambda e: e.slide_id)
    write_tsv(pd.DataFrame([astuple(e) for e in rows], columns=list(EXCLUDED_COLUMNS), dtype=str), path)


def read_excluded_slides(path: str | os.PathLike) -> pd.DataFrame:
    """Read slides_excluded.tsv as text, checking its columns and that every row has a slide id and a reason."""
    return _read_filled(path, "excluded-slides table", EXCLUDED_COLUMNS, ("slide_id", "reason"))[list(EXCLUDED_COLUMNS)]
