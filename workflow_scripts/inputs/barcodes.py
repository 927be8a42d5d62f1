"""TCGA barcodes and slide file names, parsed in one place so every module agrees on patient and sample ids."""

from __future__ import annotations

import re
from collections.abc import Iterable
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
# TCGA sample type codes (GDC "Sample Type Codes" table); the cohort keeps primary tumours (01) by default.
PRIMARY_SAMPLE_TYPES = ("01",)
SAMPLE_TYPE_NAMES = {
    "01": "Primary Solid Tumor",
    "02": "Recurrent Solid Tumor",
    "03": "Primary Blood Derived Cancer - Peripheral Blood",
    "04": "Recurrent Blood Derived Cancer - Bone Marrow",
    "05": "Additional - New Primary",
    "06": "Metastatic",
    "07": "Additional Metastatic",
    "08": "Human Tumor Original Cells",
    "09": "Primary Blood Derived Cancer - Bone Marrow",
    "10": "Blood Derived Normal",
    "11": "Solid Tissue Normal",
    "12": "Buccal Cell Normal",
    "13": "EBV Immortalized Normal",
    "14": "Bone Marrow Normal",
    "20": "Control Analyte",
    "40": "Recurrent Blood Derived Cancer - Peripheral Blood",
    "50": "Cell Lines",
    "60": "Primary Xenograft Tissue",
    "61": "Cell Line Derived Xenograft Tissue",
}
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


def short_slide_name(slide_id: str, max_chars: int = 24) -> str:
    """Patient and slide, e.g. 'TCGA-AB-1234 DX1', for figure titles that must stay short; other names are cut."""
    stem = str(slide_id).split(".", 1)[0]
    try:
        barcode = parse_barcode(stem)
    except ValueError:
        return stem if len(stem) <= max_chars else stem[: max_chars - 1] + "\u2026"
    if barcode.slide_type is None:
        return barcode.patient_id
    return f"{barcode.patient_id} {barcode.slide_type}{barcode.slide_order}"


def normalise_sample_types(codes: Iterable[str | int]) -> tuple[str, ...]:
    """Two-digit sample type codes from config values ("01", "1" or the integer YAML makes of an unquoted 01)."""
    if isinstance(codes, (str, int)):
        codes = [codes]
    normalised = []
    for code in codes:
        text = str(code).strip()
        if isinstance(code, bool) or not text.isdigit() or len(text) > 2:
            raise ValueError(f"sample type {code!r} is not a two-digit TCGA sample type code such as '01'")
        normalised.append(text.zfill(2))
    if not normalised:
        raise ValueError("the list of allowed sample types is empty: no slide could enter the cohort")
    return tuple(dict.fromkeys(normalised))


def sample_type_exclusion(name: str, allowed: Iterable[str | int] = PRIMARY_SAMPLE_TYPES) -> str | None:
    """None when a slide may enter the cohort, else why not (e.g. `sample type 06 (Metastatic) is not a primary
    tumour`). `name` is a slide file name, slide id or barcode; names that are not TCGA barcodes (a local cohort's
    own ids) and TCGA names without a sample type (patient level) are always allowed."""
    allowed = normalise_sample_types(allowed)
    try:
        barcode = parse_barcode(name.split(".", 1)[0])
    except ValueError:
        return None
    if barcode.sample_type is None:
        return None
    code = f"{barcode.sample_type:02d}"
    if code in allowed:
        return None
    label = f"sample type {code} ({SAMPLE_TYPE_NAMES.get(code, 'unknown code')})"
    if allowed == PRIMARY_SAMPLE_TYPES:
        return f"{label} is not a primary tumour"
    return f"{label} is not one of the allowed sample types {', '.join(allowed)}"
