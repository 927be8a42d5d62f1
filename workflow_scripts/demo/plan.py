"""The synthetic cohort without pixels: patients, slides with tile-level truth, expression and follow-up.

Each patient's tumour is a few smooth subclone territories, each carrying a subset of the planted traits;
each trait paints its own morphological signature into the slide (demo.image), sets the patient's bulk
expression of its gene or miRNA (demo.omics), and the mix of trait combinations (the true HTI of the first
diagnostic slide) sets the hazard of death.

Determinism: every random draw comes from a generator seeded by (seed, purpose, patient, slide), so the
same config and seed give the same plan, and the truth does not depend on `signal` (a signal-0 cohort has
the same truth as a signal-1 cohort, only invisible).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workflow_scripts.demo.config import FIELD_SCALE, SOURCES, DemoConfig
from workflow_scripts.demo.layout import SlideLayout, cell_truth, choose_region_traits, heterogeneity_index, make_layout
from workflow_scripts.demo.omics import (
    clinical_table,
    expression_matrix,
    file_uuid,
    participant_codes,
    pick_count,
    plan_aliquots,
    simulate_survival,
)

# Independent random streams, so that e.g. rendering never shifts the truth.
STREAM_PATIENTS, STREAM_LAYOUT, STREAM_RENDER, STREAM_EXPRESSION, STREAM_CLINICAL, STREAM_SURVIVAL = range(6)


def stream(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """Generator for one purpose (and patient/slide), independent of every other stream."""
    return np.random.default_rng([int(seed), purpose, *keys])


@dataclass(frozen=True)
class SlidePlan:
    """One synthetic slide: identity, layout and its truth at tile resolution."""

    slide_id: str
    patient_id: str
    patient_index: int
    slide_index: int  # 0 = DX1, 1 = DX2
    layout: SlideLayout
    trait_grid: np.ndarray  # (rows, cols, K) uint8, 0/1, BACKGROUND off tissue
    tissue_fraction: np.ndarray  # (rows, cols) float32

    @property
    def file_name(self) -> str:
        """The slide file name, TCGA style."""
        return f"{self.slide_id}.svs"

    @property
    def hti(self) -> float:
        """True heterogeneity index of the slide."""
        return heterogeneity_index(self.trait_grid)

    @property
    def n_tissue_tiles(self) -> int:
        """Number of cells that count as tissue."""
        return int((self.trait_grid[..., 0] != 255).sum())


@dataclass(frozen=True)
class CohortPlan:
    """Everything the generator writes, except the slide pixels, which are rendered when written."""

    config: DemoConfig
    seed: int
    slides: list[SlidePlan]
    patients: pd.DataFrame  # truth per patient
    mrna: pd.DataFrame
    mirna: pd.DataFrame
    clinical: pd.DataFrame = field(repr=False)


def plan_slides(config: DemoConfig, seed: int) -> list[SlidePlan]:
    """Patients, their slide names and layouts with tile-level truth (no pixels)."""
    rng = stream(seed, STREAM_PATIENTS)
    codes = participant_codes(rng, config.n_patients)
    with_dx2 = set(rng.permutation(config.n_patients)[: pick_count(config.dx2_fraction, config.n_patients)].tolist())
    slides: list[SlidePlan] = []
    for index, code in enumerate(codes):
        patient_id = f"TCGA-{config.tss}-{code}"
        layout_rng = stream(seed, STREAM_LAYOUT, index)
        n_regions = int(layout_rng.integers(config.regions[0], config.regions[1] + 1))
        region_traits = choose_region_traits(layout_rng, n_regions, len(config.traits), config.homogeneous_fraction)
        for slide_index in range(2 if index in with_dx2 else 1):
            # a second section of the same tumour: same subclones, new geometry
            slide_rng = stream(seed, STREAM_LAYOUT, index, slide_index + 1)
            layout = make_layout(
                slide_rng, config.slide_size, FIELD_SCALE, config.cell_px, config.tissue_fraction, region_traits
            )
            grid, tissue = cell_truth(layout, config.cell_px, config.min_tissue_fraction)
            slide_id = f"{patient_id}-01Z-00-DX{slide_index + 1}.{file_uuid(slide_rng)}"
            slides.append(SlidePlan(slide_id, patient_id, index, slide_index, layout, grid, tissue))
    return slides


def patient_truth(config: DemoConfig, slides: Sequence[SlidePlan]) -> pd.DataFrame:
    """Per patient: tissue-tile-weighted true trait fractions over all slides and the DX1 slide's true HTI."""
    rows = []
    for patient_id in dict.fromkeys(s.patient_id for s in slides):
        own = [s for s in slides if s.patient_id == patient_id]
        cells = np.concatenate([s.trait_grid.reshape(-1, len(config.traits)) for s in own])
        cells = cells[(cells != 255).all(axis=1)]
        fractions = cells.mean(axis=0) if len(cells) else np.zeros(len(config.traits))
        first = next(s for s in own if s.slide_index == 0)
        row = {"patient_id": patient_id, "n_slides": len(own), "dx1_slide_id": first.slide_id,
               "n_tissue_tiles": len(cells), "true_hti": first.hti}  # fmt: skip
        row.update({f"fraction_{name}": float(f) for name, f in zip(config.trait_names, fractions)})
        rows.append(row)
    return pd.DataFrame(rows)


def plan_cohort(config: DemoConfig, seed: int) -> CohortPlan:
    """The whole cohort without pixels: slides with truth, expression matrices, clinical table."""
    slides = plan_slides(config, seed)
    patients = patient_truth(config, slides)
    patient_ids = patients["patient_id"].tolist()
    expression_rng = stream(seed, STREAM_EXPRESSION)
    aliquots = plan_aliquots(
        expression_rng, patient_ids, config.second_aliquot_fraction, config.normal_aliquot_fraction,
        config.no_expression_fraction,
    )  # fmt: skip
    matrices = {}
    for source in SOURCES:
        planted = {t.id: patients[f"fraction_{t.name}"].to_numpy() for t in config.traits if t.source == source}
        matrices[source] = expression_matrix(
            stream(seed, STREAM_EXPRESSION, SOURCES.index(source) + 1), patient_ids, planted, source, aliquots,
            config.expression_noise,
        )  # fmt: skip
    for trait in config.traits:
        matrix = matrices[trait.source]
        primary = {column[:12]: column for column in matrix.columns if column[13:16] == "01A"}
        patients[f"value_{trait.name}"] = [
            matrix.at[trait.id, primary[p]] if p in primary else np.nan for p in patient_ids
        ]
    patients["has_expression"] = [p not in aliquots.absent for p in patient_ids]
    months, events = simulate_survival(patients["true_hti"].to_numpy(), stream(seed, STREAM_SURVIVAL), config.survival)
    patients["os_months"], patients["os_event"] = months, events
    clinical = clinical_table(
        stream(seed, STREAM_CLINICAL), patient_ids, months, events, config.missing_survival_fraction
    )
    return CohortPlan(config, seed, slides, patients, matrices["mrna"], matrices["mirna"], clinical)

