"""TCGA barcodes and slide file names, parsed in one place so every module agrees on patient and sample ids."""

from __future__ import annotations

import re
from dataclasses import dataclass

# TCGA-<TSS>-<participant>[-<sample type><vial>[-<portion>(<analyte>[-<plate>[-<center>]] | -<slide type><order>)]]
_BARCODE = re.compile(
    r"""
    ^TCGA-(?P<tss>[A-Z0-9]{2})-(?P<participant>[A-Z0-9]{4})
    (?:-(?P<sample_type>\d{2})(?P<vial>[A-Z])?
        (?:-(?P<portion>\d{2})
            (?:
                (?P<analyte>[A-Z])(?:-(?P<plate>[A-Z0-9]{4})(?:-(?P<center>[A-Z0-9]{2}))?)?
              | -(?P<slide_type>DX|TS|BS|MS)(?P<slide_order>[0-9]+|[A-Z])
            )?
        )?
    )?$
    """,
    re.VERBOSE,
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SLIDE_EXTENSION = "svs"


@dataclass(frozen=True)
class Barcode:
    """A parsed TCGA barcode; fields below the level the barcode reaches are None."""

    text: str
    project: str
    tss: str
    participant: str
    patient_id: str
    sample_id: str | None
    sample_type: int | None
    vial: str | None
    portion: int | None
    analyte: str | None
    plate: str | None
    center: str | None
    slide_type: str | None
    slide_order: str | None
    slide_number: int | None

    @property
    def is_tumour(self) -> bool:
        """Sample type codes 01-09 are tumour samples, 10-19 normal, 20-29 controls."""
        return self.sample_type is not None and 1 <= self.sample_type <= 9


@dataclass(frozen=True)
class SlideName:
    """A parsed TCGA slide file name: barcode, file UUID (lower-cased) and slide id (name without extension)."""

    file_name: str
    slide_id: str
    barcode: Barcode
    uuid: str
    extension: str


def parse_barcode(text: str) -> Barcode:
    """Parse a TCGA patient, sample, aliquot or slide barcode; raise ValueError naming the string otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"TCGA barcode must be a string, got {text!r}")
    candidate = text.strip().upper()
    match = _BARCODE.match(candidate)
    if match is None:
        raise ValueError(
            f"{text!r} is not a TCGA barcode (expected e.g. TCGA-A1-A0SB, TCGA-A1-A0SB-01A-11R-A144-07 "
            f"or TCGA-A1-A0SB-01Z-00-DX1)"
        )
    groups = match.groupdict()
    patient = f"TCGA-{groups['tss']}-{groups['participant']}"
    sample_type = groups["sample_type"]
    order = groups["slide_order"]
    return Barcode(
        text=candidate,
        project="TCGA",
        tss=groups["tss"],
        participant=groups["participant"],
        patient_id=patient,
        sample_id=f"{patient}-{sample_type}" if sample_type is not None else None,
        sample_type=int(sample_type) if sample_type is not None else None,
        vial=groups["vial"],
        portion=int(groups["portion"]) if groups["portion"] is not None else None,
        analyte=groups["analyte"],
        plate=groups["plate"],
        center=groups["center"],
        slide_type=groups["slide_type"],
        slide_order=order,
        slide_number=int(order) if order is not None and order.isdigit() else None,
    )


def parse_slide_filename(file_name: str) -> SlideName:
    """Parse `TCGA-...-DX1.<UUID>.svs`; the UUID is returned lower-cased because its case varies at GDC."""
    if not isinstance(file_name, str) or "/" in file_name or "\\" in file_name:
        raise ValueError(f"{file_name!r} is not a bare slide file name")
    parts = file_name.split(".")
    if len(parts) != 3:
        raise ValueError(
            f"{file_name!r} is not a TCGA slide file name (expected TCGA-<TSS>-<participant>-<sample><vial>-"
            f"<portion>-<DX|TS|BS><n>.<UUID>.{_SLIDE_EXTENSION})"
        )
    barcode_text, uuid, extension = parts
    if extension.lower() != _SLIDE_EXTENSION:
        raise ValueError(f"{file_name!r}: extension {extension!r} is not .{_SLIDE_EXTENSION}")
    if not _UUID.match(uuid):
        raise ValueError(f"{file_name!r}: {uuid!r} is not a UUID")
    try:
        barcode = parse_barcode(barcode_text)
    except ValueError as error:
        raise ValueError(f"{file_name!r}: {error}") from None
    if barcode.slide_type is None or barcode_text != barcode.text:
        raise ValueError(f"{file_name!r}: {barcode_text!r} is not an upper-case TCGA slide barcode")
    return SlideName(
        file_name=file_name,
        slide_id=f"{barcode_text}.{uuid}",
        barcode=barcode,
        uuid=uuid.lower(),
        extension=extension,
    )


def same_slide_uuid(first: str, second: str) -> bool:
    """Compare two slide UUIDs ignoring letter case, which differs between GDC records."""
    return first.strip().lower() == second.strip().lower()


def patient_id(text: str) -> str:
    """Return the 12-character patient id of a barcode, slide id or slide file name (text before the first dot)."""
    return parse_barcode(text.split(".", 1)[0]).patient_id


def is_tcga_name(text: str) -> bool:
    """Tell whether a barcode, slide id or file name starts with a valid TCGA barcode."""
    try:
        patient_id(text)
    except ValueError:
        return False
    return True
