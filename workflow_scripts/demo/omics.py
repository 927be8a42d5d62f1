"""TCGA-shaped identifiers, bulk expression and clinical follow-up of the synthetic demo cohort.

Expression and survival are the two places the planted truth reaches the workflow's inputs: a trait's bulk
expression rises with the fraction of tumour tiles carrying it, and the hazard of death rises with the true
heterogeneity (HTI) of the patient's first diagnostic slide. Everything else (decoy genes, subtype, age,
stage, ER status) is drawn independently of the truth, in the formats the real PanCanAtlas and cBioPortal
files use.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ALPHANUMERIC = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))

# Real gene symbols with their Entrez ids, as rows of the PanCanAtlas mRNA matrix (decoys: no planted signal).
DECOY_GENES = (
    "?|100130426", "ACTB|60", "AURKA|6790", "BIRC5|332", "BRCA1|672", "CCND1|595", "CDH1|999", "EGFR|1956",
    "ERBB2|2064", "ESR1|2099", "FOXA1|3169", "GAPDH|2597", "GATA3|2625", "KRT5|3852", "MYBL2|4605",
    "MYC|4609", "PGR|5241", "PTEN|5728", "TOP2A|7153", "TP53|7157", "VIM|7431",
)  # fmt: skip
DECOY_MIRNAS = (
    "hsa-let-7a-5p", "hsa-miR-10b-5p", "hsa-miR-106b-5p", "hsa-miR-125b-5p", "hsa-miR-143-3p",
    "hsa-miR-145-5p", "hsa-miR-155-5p", "hsa-miR-182-5p", "hsa-miR-183-5p", "hsa-miR-18a-5p",
    "hsa-miR-19a-3p", "hsa-miR-200c-3p", "hsa-miR-205-5p", "hsa-miR-20a-5p", "hsa-miR-21-5p",
    "hsa-miR-221-3p", "hsa-miR-222-3p", "hsa-miR-29a-3p", "hsa-miR-375", "hsa-miR-92a-3p",
)  # fmt: skip
UNCORRECTED_MIRNAS = frozenset({"hsa-miR-183-5p", "hsa-miR-375"})
MRNA_CENTER, MIRNA_CENTER = "07", "13"
PORTIONS = ("11", "12", "21", "31")

# Baseline log2 level and log2 gain from no to all tumour tiles carrying the trait, per source.
EXPRESSION_LOG2 = {"mrna": (7.0, 4.0), "mirna": (9.0, 4.0)}

SUBTYPES = ("BRCA_LumA", "BRCA_LumB", "BRCA_Basal", "BRCA_Her2", "BRCA_Normal", "")
SUBTYPE_WEIGHTS = (0.45, 0.2, 0.17, 0.08, 0.05, 0.05)
STAGES = ("STAGE I", "STAGE IA", "STAGE IIA", "STAGE IIB", "STAGE IIIA", "STAGE IIIC", "STAGE IV", "STAGE X")
STAGE_WEIGHTS = (0.08, 0.08, 0.33, 0.24, 0.14, 0.07, 0.03, 0.03)

# cBioPortal patient file: (column, display name, description, datatype); priority row is all 1.
CLINICAL_COLUMNS = (
    ("PATIENT_ID", "Patient Identifier", "Identifier to uniquely specify a patient.", "STRING"),
    ("SUBTYPE", "Subtype", "Subtype", "STRING"),
    ("CANCER_TYPE_ACRONYM", "TCGA PanCanAtlas Cancer Type Acronym", "Text field to hold cancer type acronym used by TCGA PanCanAtlas.", "STRING"),
    ("OTHER_PATIENT_ID", "Other Patient ID", "Legacy DMP patient identifier (DMPnnnn)", "STRING"),
    ("AGE", "Diagnosis Age", "Age at which a condition or disease was first diagnosed.", "NUMBER"),
    ("SEX", "Sex", "Sex", "STRING"),
    ("AJCC_PATHOLOGIC_TUMOR_STAGE", "Neoplasm Disease Stage American Joint Committee on Cancer Code", "The extent of a cancer, especially whether the disease has spread from the original site to other parts of the body based on AJCC staging criteria.", "STRING"),
    ("ER_STATUS_BY_IHC", "ER Status By IHC", "Estrogen receptor status by immunohistochemistry.", "STRING"),
    ("OS_STATUS", "Overall Survival Status", "Overall patient survival status.", "STRING"),
    ("OS_MONTHS", "Overall Survival (Months)", "Overall survival in months since initial diagonosis.", "NUMBER"),
)  # fmt: skip


@dataclass(frozen=True)
class SurvivalModel:
    """Exponential hazard h = ln2 / median_months * exp(log_hazard_per_hti * HTI), uniform censoring."""

    median_months: float = 120.0
    log_hazard_per_hti: float = 3.0
    follow_up_months: tuple[float, float] = (24.0, 150.0)


def participant_codes(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct 4-character upper-case alphanumeric TCGA participant codes (e.g. A0SB)."""
    if count > 36**4:
        raise ValueError(f"cannot draw {count} distinct 4-character participant codes")
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < count:
        code = "".join(rng.choice(ALPHANUMERIC, 4))
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


def file_uuid(rng: np.random.Generator) -> str:
    """A version-4 UUID from the generator, upper- or lower-case at random as in real TCGA slide names."""
    text = str(uuid.UUID(bytes=rng.bytes(16), version=4))
    return text.upper() if rng.random() < 0.5 else text


def plate_codes(rng: np.random.Generator, count: int) -> list[str]:
    """Synthetic 4-character plate codes (A + 3 alphanumerics), one per sequencing batch."""
    return ["A" + "".join(rng.choice(ALPHANUMERIC, 3)) for _ in range(count)]


def aliquot_barcode(patient_id: str, sample: str, portion: str, analyte: str, plate: str, center: str) -> str:
    """Full TCGA aliquot barcode, e.g. TCGA-ZZ-A0SB-01A-11R-A144-07."""
    return f"{patient_id}-{sample}-{portion}{analyte}-{plate}-{center}"


def pick_count(fraction: float, total: int) -> int:
    """How many of `total` get a feature of prevalence `fraction`: at least one whenever fraction > 0."""
    return min(total, math.ceil(fraction * total)) if fraction > 0 else 0


def expression_values(fractions: np.ndarray, source: str, noise_sd: float, rng: np.random.Generator) -> np.ndarray:
    """Bulk expression rising monotonically with the trait fraction: 2^(base + gain * fraction + noise)."""
    base, gain = EXPRESSION_LOG2[source]
    return np.exp2(base + gain * np.asarray(fractions, float) + noise_sd * rng.standard_normal(len(fractions)))


def simulate_survival(
    hti: np.ndarray, rng: np.random.Generator, model: SurvivalModel = SurvivalModel()
) -> tuple[np.ndarray, np.ndarray]:
    """Overall survival (months, event 0/1): exponential death times whose hazard grows with HTI, censored
    at a uniform end of follow-up."""
    hti = np.asarray(hti, float)
    if np.any(~np.isfinite(hti)):
        raise ValueError("HTI values for the survival simulation must be finite")
    hazard = math.log(2) / model.median_months * np.exp(model.log_hazard_per_hti * hti)
    death = rng.exponential(1.0 / hazard)
    censor = rng.uniform(*model.follow_up_months, size=len(hti))
    return np.minimum(death, censor), (death <= censor).astype(np.int64)


@dataclass(frozen=True)
class ExpressionPlan:
    """Which aliquots each patient has: primary (01A), an extra primary (01B), a normal (11A), or none."""

    second_primary: frozenset[str]
    normal: frozenset[str]
    absent: frozenset[str]


def plan_aliquots(
    rng: np.random.Generator, patients: Sequence[str], second: float, normal: float, absent: float
) -> ExpressionPlan:
    """Choose disjoint patient sets: with no expression, with a second primary aliquot, with a normal one."""
    order = [patients[i] for i in rng.permutation(len(patients))]
    n_absent, n_second, n_normal = (pick_count(f, len(patients)) for f in (absent, second, normal))
    if n_absent + n_second + n_normal > len(patients):
        raise ValueError(f"aliquot quirks need {n_absent + n_second + n_normal} patients, cohort has {len(patients)}")
    return ExpressionPlan(
        absent=frozenset(order[:n_absent]),
        second_primary=frozenset(order[n_absent : n_absent + n_second]),
        normal=frozenset(order[n_absent + n_second : n_absent + n_second + n_normal]),
    )


def expression_matrix(
    rng: np.random.Generator,
    patients: Sequence[str],
    planted: dict[str, np.ndarray],
    source: str,
    aliquots: ExpressionPlan,
    noise_sd: float,
) -> pd.DataFrame:
    """Rows = feature ids (planted and decoys, sorted), columns = aliquot barcodes (sorted), expression values.

    `planted` maps a feature id to the per-patient trait fraction (aligned with `patients`). A normal aliquot
    carries no trait (fraction 0); a second primary aliquot is a fresh draw from the same fraction.
    """
    center = MRNA_CENTER if source == "mrna" else MIRNA_CENTER
    plates = plate_codes(rng, 4)
    columns: list[str] = []
    fraction_of: dict[str, dict[str, float]] = {feature: {} for feature in planted}
    for index, patient in enumerate(patients):
        if patient in aliquots.absent:
            continue
        portion = PORTIONS[rng.integers(len(PORTIONS))]
        analyte = "H" if source == "mirna" and rng.random() < 0.2 else "R"
        samples = [("01A", 1.0)]
        if patient in aliquots.second_primary:
            samples.append(("01B", 1.0))
        if patient in aliquots.normal:
            samples.append(("11A", 0.0))
        for sample, tumour in samples:
            barcode = aliquot_barcode(patient, sample, portion, analyte, plates[rng.integers(len(plates))], center)
            columns.append(barcode)
            for feature, fractions in planted.items():
                fraction_of[feature][barcode] = tumour * float(fractions[index])
    decoys = [d for d in (DECOY_GENES if source == "mrna" else DECOY_MIRNAS) if d not in planted]
    rows: dict[str, np.ndarray] = {}
    for feature in planted:
        rows[feature] = expression_values(np.array([fraction_of[feature][c] for c in columns]), source, noise_sd, rng)
    for decoy in decoys:
        level = rng.uniform(2.0, 12.0)
        values = np.exp2(level + rng.normal(0.0, 1.0, len(columns)))
        if decoy.startswith("?|"):
            values[rng.random(len(columns)) < 0.5] = 0.0
        rows[decoy] = values
    frame = pd.DataFrame(rows, index=columns).T
    return frame.sort_index().reindex(columns=sorted(columns))


def format_mrna(matrix: pd.DataFrame) -> str:
    """PanCanAtlas mRNA text: tab-separated, `gene_id` then aliquot columns, values with 4 decimals."""
    lines = ["\t".join(["gene_id", *matrix.columns])]
    lines += ["\t".join([gene, *(f"{v:.4f}" for v in values)]) for gene, values in zip(matrix.index, matrix.to_numpy())]
    return "\n".join(lines) + "\n"


def format_mirna(matrix: pd.DataFrame) -> str:
    """PanCanAtlas miRNA text: comma-separated `Genes,Correction,<aliquots>`, values with 4 decimals."""
    lines = [",".join(["Genes", "Correction", *matrix.columns])]
    for name, values in zip(matrix.index, matrix.to_numpy()):
        correction = "Uncorrected" if name in UNCORRECTED_MIRNAS else "Corrected"
        lines.append(",".join([name, correction, *(f"{v:.4f}" for v in values)]))
    return "\n".join(lines) + "\n"


def clinical_table(
    rng: np.random.Generator,
    patients: Sequence[str],
    os_months: np.ndarray,
    os_event: np.ndarray,
    missing_survival: float,
    cancer_type: str = "BRCA",
) -> pd.DataFrame:
    """One cBioPortal-style row per patient; survival given, the other columns drawn independently of truth."""
    n = len(patients)
    subtypes = rng.choice(SUBTYPES, n, p=SUBTYPE_WEIGHTS)
    er_positive = np.where(subtypes == "BRCA_Basal", rng.random(n) < 0.1, rng.random(n) < 0.85)
    er_status = np.where(er_positive, "Positive", "Negative")
    er_status[rng.random(n) < 0.03] = "Indeterminate"
    status = np.where(np.asarray(os_event) == 1, "1:DECEASED", "0:LIVING").astype(object)
    months = np.array([f"{m:.6f}" for m in os_months], dtype=object)
    missing = rng.permutation(n)[: pick_count(missing_survival, n)]
    status[missing] = ""
    months[missing] = ""
    return pd.DataFrame(
        {
            "PATIENT_ID": list(patients),
            "SUBTYPE": subtypes,
            "CANCER_TYPE_ACRONYM": cancer_type,
            "OTHER_PATIENT_ID": [str(uuid.UUID(bytes=rng.bytes(16), version=4)).upper() for _ in range(n)],
            "AGE": np.clip(np.rint(rng.normal(58, 13, n)), 26, 90).astype(int),
            "SEX": "Female",
            "AJCC_PATHOLOGIC_TUMOR_STAGE": rng.choice(STAGES, n, p=STAGE_WEIGHTS),
            "ER_STATUS_BY_IHC": er_status,
            "OS_STATUS": status,
            "OS_MONTHS": months,
        }
    ).sort_values("PATIENT_ID", kind="stable", ignore_index=True)


def format_cbioportal(table: pd.DataFrame) -> str:
    """cBioPortal patient file text: 4 `#` metadata rows (names, descriptions, types, priorities), header, rows."""
    columns = [column for column, *_ in CLINICAL_COLUMNS]
    if list(table.columns) != columns:
        raise ValueError(f"clinical table columns {list(table.columns)} differ from {columns}")
    meta = [
        "#" + "\t".join(display for _, display, _, _ in CLINICAL_COLUMNS),
        "#" + "\t".join(description for _, _, description, _ in CLINICAL_COLUMNS),
        "#" + "\t".join(datatype for *_, datatype in CLINICAL_COLUMNS),
        "#" + "\t".join("1" for _ in CLINICAL_COLUMNS),
        "\t".join(columns),
    ]
    body = ["\t".join(str(value) for value in row) for row in table.itertuples(index=False)]
    return "\n".join(meta + body) + "\n"
