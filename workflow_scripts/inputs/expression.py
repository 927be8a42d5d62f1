"""Bulk expression of the configured traits, one value per patient, read from the PanCanAtlas matrices.

Two formats are read, recognised from their header:

- mRNA (EBPlusPlusAdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv): tab-separated, first column `gene_id`
  with rows like `MKI67|4288`, every other column an aliquot barcode.
- miRNA (pancanMiRs_EBadjOnProtocolPlatformWithoutRepsWithUnCorrectMiRs_08_04_16.csv): comma-separated,
  columns `Genes,Correction,<aliquot barcodes>`, rows like `hsa-miR-17-5p`.

The matrix is streamed line by line and only the requested rows are split into values, so the 1.8 GB mRNA
file is never held in memory.

Aliquot choice: only primary-tumour aliquots (sample type 01) are kept. When a patient has several, the
one kept is the first in the order (vial letter, portion number, full barcode): vial A before B, then the
lowest portion, then the lexicographically smallest barcode (a barcode that stops before the vial or the
portion sorts before those that have one). The choice depends on the barcodes only, so a
patient's value for every trait comes from the same aliquot. Columns that are not TCGA barcodes are taken as
patient ids as they are (a user's own cohort); a patient-level TCGA barcode (12 characters) likewise.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workflow_scripts.inputs.barcodes import parse_barcode

PRIMARY_TUMOUR = 1
MISSING_VALUES = frozenset({"", "NA", "NAN", "NULL", "NONE", "N/A", "#N/A", "."})
_METADATA_COLUMNS = {"mrna": ("gene_id",), "mirna": ("Genes", "Correction")}


class TraitNotFoundError(LookupError):
    """A configured trait id is not a row of the expression matrix."""


@dataclass(frozen=True)
class MatrixLayout:
    """Where the trait ids and the sample columns are in one expression matrix file."""

    source: str
    delimiter: str
    header: tuple[str, ...]
    n_metadata_columns: int

    @property
    def sample_columns(self) -> tuple[str, ...]:
        """The aliquot (or patient) column names, in file order."""
        return self.header[self.n_metadata_columns :]


@dataclass(frozen=True)
class AliquotChoice:
    """Which of a patient's primary-tumour aliquots was kept, recorded so the log can show every choice."""

    patient_id: str
    chosen: str
    candidates: tuple[str, ...]


def _open_text(path: Path) -> io.TextIOBase:
    """Open a plain or gzip-compressed text file."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def _split(line: str, delimiter: str) -> list[str]:
    """Split one matrix line into cells, dropping the line end and quotes around cells."""
    return [cell.strip().strip('"') for cell in line.rstrip("\r\n").split(delimiter)]


def check_unique_columns(header: Sequence[str], path: str | os.PathLike) -> None:
    """Raise naming the file and the repeated header cells: a repeated aliquot column would hide all but one value."""
    counts = Counter(header)
    repeated = {column: count for column, count in counts.items() if count > 1}
    if repeated:
        listed = ", ".join(f"{column!r} x{count}" for column, count in sorted(repeated.items())[:20])
        more = f" and {len(repeated) - 20} more" if len(repeated) > 20 else ""
        raise ValueError(
            f"{path}: the header repeats {len(repeated)} column name(s): {listed}{more}; each aliquot (or patient) "
            f"column must appear once, so remove or rename the copies"
        )


def detect_layout(header_line: str, path: str | os.PathLike) -> MatrixLayout:
    """Recognise the mRNA TSV or miRNA CSV layout from the header line; raise naming the file otherwise."""
    for delimiter in ("\t", ","):
        cells = _split(header_line, delimiter)
        if len(cells) < 2:
            continue
        if cells[0] == "gene_id":
            check_unique_columns(cells, path)
            return MatrixLayout("mrna", delimiter, tuple(cells), 1)
        if cells[0] == "Genes" and cells[1] == "Correction":
            check_unique_columns(cells, path)
            return MatrixLayout("mirna", delimiter, tuple(cells), 2)
    raise ValueError(
        f"{path}: not a PanCanAtlas expression matrix (expected a tab-separated header starting with "
        f"'gene_id' or a comma-separated header starting with 'Genes,Correction'), got {header_line[:80]!r}"
    )


def primary_aliquots(
    columns: Sequence[str], path: str | os.PathLike = ""
) -> tuple[dict[str, str], list[AliquotChoice]]:
    """Map each kept column to its patient id (one per patient) and list the choices among several aliquots."""
    candidates: dict[str, list[tuple[tuple[str, int, str], str]]] = {}
    plain: dict[str, str] = {}
    for column in columns:
        if column.upper().startswith("TCGA-"):
            try:
                barcode = parse_barcode(column)
            except ValueError as error:
                raise ValueError(f"{path}: column {column!r}: {error}") from None
            if barcode.sample_type is None:
                plain_id = barcode.patient_id
            elif barcode.sample_type != PRIMARY_TUMOUR:
                continue
            else:
                key = (barcode.vial or "", barcode.portion if barcode.portion is not None else -1, barcode.text)
                candidates.setdefault(barcode.patient_id, []).append((key, column))
                continue
        else:
            plain_id = column
        if plain_id in plain:
            raise ValueError(f"{path}: patient {plain_id!r} has two columns ({plain[plain_id]!r} and {column!r})")
        plain[plain_id] = column
    kept = {column: patient for patient, column in plain.items()}
    choices: list[AliquotChoice] = []
    for patient, options in sorted(candidates.items()):
        if patient in plain:
            raise ValueError(
                f"{path}: patient {patient!r} has a patient-level column {plain[patient]!r} and aliquot columns "
                f"{[column for _, column in options]}"
            )
        options.sort()
        kept[options[0][1]] = patient
        if len(options) > 1:
            choices.append(AliquotChoice(patient, options[0][1], tuple(column for _, column in options)))
    return kept, choices


def _parse_value(cell: str, path: Path, trait_id: str, column: str) -> float:
    """Turn one matrix cell into a float, NaN for the usual missing-value markers."""
    if cell.upper() in MISSING_VALUES:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise ValueError(f"{path}: trait {trait_id!r}, column {column!r}: {cell!r} is not a number") from None


def _stem(row_id: str) -> str:
    """The gene symbol (text before '|') or miRNA name, lower-cased, to suggest near misses in errors."""
    return row_id.split("|", 1)[0].lower()


def _similar_ids(wanted: str, seen: Iterable[str]) -> list[str]:
    """Row ids sharing the wanted id's gene symbol or name, for the missing-trait error."""
    return [row_id for row_id in seen if _stem(row_id) == _stem(wanted)]


def read_trait_rows(
    path: str | os.PathLike, trait_ids: Sequence[str], source: str | None = None
) -> tuple[MatrixLayout, dict[str, list[str]]]:
    """Stream the matrix and return its layout and the raw cells (sample columns only) of the wanted rows."""
    path = Path(path)
    wanted = set(trait_ids)
    wanted_stems = {_stem(trait) for trait in wanted}
    rows: dict[str, list[str]] = {}
    similar: list[str] = []
    with _open_text(path) as handle:
        header_line = handle.readline()
        if not header_line:
            raise ValueError(f"{path}: empty expression matrix")
        layout = detect_layout(header_line, path)
        if source is not None and layout.source != source:
            raise ValueError(
                f"{path}: expected a {source} matrix for trait(s) {list(trait_ids)}, found a {layout.source} matrix"
            )
        for line_number, line in enumerate(handle, start=2):
            row_id = line.split(layout.delimiter, 1)[0].strip().strip('"')
            if row_id not in wanted:
                if _stem(row_id) in wanted_stems:
                    similar.append(row_id)
                continue
            if row_id in rows:
                raise ValueError(f"{path}: trait {row_id!r} appears twice (again on line {line_number})")
            cells = _split(line, layout.delimiter)
            if len(cells) != len(layout.header):
                raise ValueError(
                    f"{path}: line {line_number} (trait {row_id!r}) has {len(cells)} cells, "
                    f"the header has {len(layout.header)}"
                )
            rows[row_id] = cells[layout.n_metadata_columns :]
            if len(rows) == len(wanted):
                break
    missing = [trait for trait in trait_ids if trait not in rows]
    if missing:
        hints = {trait: _similar_ids(trait, similar) for trait in missing}
        details = "; ".join(
            f"{trait!r}" + (f" (rows with the same name: {hints[trait]})" if hints[trait] else "") for trait in missing
        )
        raise TraitNotFoundError(f"trait id(s) not found in expression matrix {path}: {details}")
    return layout, rows


def read_expression(
    path: str | os.PathLike,
    trait_ids: Sequence[str],
    source: str | None = None,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Read the wanted traits as a patients x traits table of floats (NaN = no expression for that trait)."""
    path = Path(path)
    layout, rows = read_trait_rows(path, trait_ids, source)
    kept, choices = primary_aliquots(layout.sample_columns, path)
    if log is not None:
        log.info(
            "%s: %s matrix, %d sample columns, %d patients with a primary-tumour (01) or plain-id column",
            path,
            layout.source,
            len(layout.sample_columns),
            len(set(kept.values())),
        )
        for choice in choices:
            log.info(
                "patient %s: kept aliquot %s of %d primary-tumour aliquots %s (rule: vial A first, lowest "
                "portion, then barcode)",
                choice.patient_id,
                choice.chosen,
                len(choice.candidates),
                list(choice.candidates),
            )
    column_index = {column: index for index, column in enumerate(layout.sample_columns)}
    ordered = sorted(kept.items(), key=lambda item: item[1])
    table = pd.DataFrame(
        {
            trait: [_parse_value(rows[trait][column_index[column]], path, trait, column) for column, _ in ordered]
            for trait in trait_ids
        },
        index=pd.Index([patient for _, patient in ordered], name="patient_id"),
        dtype=float,
    )
    return table


def read_trait_expression(
    path: str | os.PathLike, trait_id: str, source: str | None = None, log: logging.Logger | None = None
) -> pd.Series:
    """Read one trait as a Series indexed by patient id, without the patients whose value is missing."""
    values = read_expression(path, [trait_id], source, log)[trait_id]
    present = values.dropna()
    if log is not None:
        log.info(
            "trait %r: %d patients with a value, %d with NA/empty", trait_id, len(present), len(values) - len(present)
        )
    return present
