"""Synthetic demo cohort with a planted ground truth, written in the formats real TCGA data comes in.

Each patient's tumour is a few smooth subclone territories, each carrying a subset of the planted traits;
each trait paints its own morphological signature into an Aperio SVS slide (demo_image), sets the patient's
bulk expression of its gene or miRNA (demo_omics), and the mix of trait combinations (the true HTI of the
first diagnostic slide) sets the hazard of death. The truth is written beside the inputs so every stage of
the workflow can be scored against it.

Determinism: every random draw comes from a generator seeded by (seed, purpose, patient, slide), so the
same config and seed give byte-identical files, and the truth does not depend on `signal` (a signal-0
cohort has the same truth as a signal-1 cohort, only invisible).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.demo.image import SIGNATURES, render_slide
from workflow_scripts.demo.layout import (
    SlideLayout,
    cell_truth,
    choose_region_traits,
    heterogeneity_index,
    make_layout,
    trait_fractions,
)
from workflow_scripts.demo.omics import (
    SurvivalModel,
    clinical_table,
    expression_matrix,
    file_uuid,
    format_cbioportal,
    format_mirna,
    format_mrna,
    participant_codes,
    pick_count,
    plan_aliquots,
    simulate_survival,
)
from workflow_scripts.demo.slidewriter import write_aperio_slide

SLIDE_MPP = 0.25
SLIDE_APP_MAG = 40
SLIDE_DOWNSAMPLES = (1, 4, 16)
SLIDE_TILE_PX = 256
FIELD_SCALE = 4  # level-0 px per field px of the layouts
SOURCES = ("mrna", "mirna")
TSS_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

# Independent random streams, so that e.g. rendering never shifts the truth.
STREAM_PATIENTS, STREAM_LAYOUT, STREAM_RENDER, STREAM_EXPRESSION, STREAM_CLINICAL, STREAM_SURVIVAL = range(6)


@dataclass(frozen=True)
class DemoTrait:
    """A planted trait: its name, the expression matrix and row it sets, and its morphological signature."""

    name: str
    source: str
    id: str
    signature: str


DEFAULT_TRAITS = (
    DemoTrait("MKI67", "mrna", "MKI67|4288", "nuclear_density"),
    DemoTrait("miR-17-5p", "mirna", "hsa-miR-17-5p", "stroma_hue"),
)


@dataclass(frozen=True)
class DemoConfig:
    """The `demo:` config block (see `from_mapping` for validation); defaults give the ~100-patient demo."""

    n_patients: int = 100
    slide_size: tuple[int, int] = (1536, 1152)
    cell_px: int = 192
    tissue_fraction: float = 0.5
    min_tissue_fraction: float = 0.5
    regions: tuple[int, int] = (2, 4)
    homogeneous_fraction: float = 0.45
    signal: float = 1.0
    tss: str = "ZZ"
    dx2_fraction: float = 0.15
    second_aliquot_fraction: float = 0.05
    normal_aliquot_fraction: float = 0.05
    no_expression_fraction: float = 0.03
    missing_survival_fraction: float = 0.02
    expression_noise: float = 0.3
    survival: SurvivalModel = SurvivalModel()
    jpeg_quality: int = 90
    traits: tuple[DemoTrait, ...] = DEFAULT_TRAITS

    @classmethod
    def from_mapping(cls, values: Mapping | None) -> DemoConfig:
        """Build from the `demo:` config dict; unknown keys or bad values raise an error naming `demo.<key>`."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown demo config key(s) {['demo.' + k for k in unknown]}; known: {sorted(known)}")
        if "slide_size" in values:
            values["slide_size"] = _pair(values["slide_size"], "slide_size", int)
        if "regions" in values:
            values["regions"] = _pair(values["regions"], "regions", int)
        if "survival" in values:
            values["survival"] = _survival_model(values["survival"])
        if "traits" in values:
            values["traits"] = tuple(_trait(t, i) for i, t in enumerate(values["traits"] or []))
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the offending `demo.<key>` when a value is out of range."""
        checks = [
            (isinstance(self.n_patients, int) and self.n_patients >= 1, "n_patients", "an integer >= 1"),
            (all(s >= self.cell_px and s % FIELD_SCALE == 0 for s in self.slide_size), "slide_size",
             f"[width, height], each >= cell_px and a multiple of {FIELD_SCALE}"),
            (self.cell_px > 0 and self.cell_px % FIELD_SCALE == 0, "cell_px", f"a positive multiple of {FIELD_SCALE}"),
            (0 < self.tissue_fraction <= 1, "tissue_fraction", "in (0, 1]"),
            (0 < self.min_tissue_fraction <= 1, "min_tissue_fraction", "in (0, 1]"),
            (1 <= self.regions[0] <= self.regions[1], "regions", "[min, max] with 1 <= min <= max"),
            (0 <= self.homogeneous_fraction <= 1, "homogeneous_fraction", "in [0, 1]"),
            (0 <= self.signal <= 1, "signal", "in [0, 1]"),
            (len(self.tss) == 2 and all(c in TSS_CHARACTERS for c in self.tss), "tss", "two upper-case letters or digits"),
            (all(0 <= f <= 1 for f in (self.dx2_fraction, self.second_aliquot_fraction, self.normal_aliquot_fraction,
                                      self.no_expression_fraction, self.missing_survival_fraction)),
             "*_fraction", "in [0, 1]"),
            (self.expression_noise >= 0, "expression_noise", ">= 0"),
            (self.survival.median_months > 0 and 0 <= self.survival.follow_up_months[0] <= self.survival.follow_up_months[1],
             "survival", "median_months > 0 and follow_up_months [min, max] with 0 <= min <= max"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality", "in [1, 100]"),
            (len(self.traits) >= 1, "traits", "a non-empty list"),
        ]  # fmt: skip
        for ok, key, wanted in checks:
            if not ok:
                raise ValueError(f"demo.{key} must be {wanted}; config has {getattr(self, key, None)!r}")
        names = [t.name for t in self.traits]
        ids = [(t.source, t.id) for t in self.traits]
        if len(set(names)) != len(names) or len(set(ids)) != len(ids):
            raise ValueError(f"demo.traits names and (source, id) pairs must be unique, got {self.traits}")

    @property
    def trait_names(self) -> list[str]:
        """Trait names in config order (the K axis of every truth grid)."""
        return [t.name for t in self.traits]


def _pair(value: object, key: str, kind: type) -> tuple:
    """Read a two-element list config value such as [width, height]."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ValueError(f"demo.{key} must be a two-element list, got {value!r}")
    return kind(value[0]), kind(value[1])


def _survival_model(value: object) -> SurvivalModel:
    """Read demo.survival {median_months, log_hazard_per_hti, follow_up_months}."""
    if not isinstance(value, Mapping):
        raise ValueError(f"demo.survival must be a mapping, got {value!r}")
    known = {f.name for f in fields(SurvivalModel)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown demo.survival key(s) {unknown}; known: {sorted(known)}")
    values = dict(value)
    if "follow_up_months" in values:
        values["follow_up_months"] = _pair(values["follow_up_months"], "survival.follow_up_months", float)
    return SurvivalModel(**{k: (float(v) if not isinstance(v, tuple) else v) for k, v in values.items()})


def _trait(value: object, index: int) -> DemoTrait:
    """Read one demo.traits entry {name, source, id, signature}."""
    wanted = {"name", "source", "id", "signature"}
    if not isinstance(value, Mapping) or set(value) != wanted:
        raise ValueError(f"demo.traits[{index}] must have exactly the keys {sorted(wanted)}, got {value!r}")
    trait = DemoTrait(**{k: str(v) for k, v in value.items()})
    if trait.source not in SOURCES:
        raise ValueError(f"demo.traits[{index}].source must be one of {SOURCES}, got {trait.source!r}")
    if trait.signature not in SIGNATURES:
        raise ValueError(f"demo.traits[{index}].signature must be one of {SIGNATURES}, got {trait.signature!r}")
    return trait


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


def file_md5(path: Path) -> str:
    """MD5 of a file, as GDC manifests list it."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_slides(plan: CohortPlan, slides_dir: Path, log: logging.Logger) -> pd.DataFrame:
    """Render and write every slide into `slides_dir` (atomically, as a whole); return the slide table."""
    config = plan.config
    signatures = [t.signature for t in config.traits]
    rows = []
    started = time.monotonic()
    with atomic_path(slides_dir) as temporary:
        temporary.mkdir()
        for number, slide in enumerate(plan.slides, 1):
            rng = stream(plan.seed, STREAM_RENDER, slide.patient_index, slide.slide_index + 1)
            image = render_slide(slide.layout, signatures, config.signal, rng)
            written = write_aperio_slide(
                temporary / slide.file_name, size=config.slide_size, read_region=image, mpp=SLIDE_MPP,
                app_mag=SLIDE_APP_MAG, downsamples=SLIDE_DOWNSAMPLES, tile_px=SLIDE_TILE_PX,
                jpeg_quality=config.jpeg_quality,
            )  # fmt: skip
            rows.append(
                {"slide_id": slide.slide_id, "patient_id": slide.patient_id, "path": str(slides_dir / slide.file_name),
                 "file_name": slide.file_name, "md5": file_md5(written), "size": written.stat().st_size, "file_id": ""}
            )  # fmt: skip
            if number % 20 == 0 or number == len(plan.slides):
                log.info("wrote %d/%d slides (%.1f s)", number, len(plan.slides), time.monotonic() - started)
    return pd.DataFrame(rows).sort_values("slide_id", kind="stable").reset_index(drop=True)


def write_truth(plan: CohortPlan, truth_dir: Path) -> None:
    """Write truth/{slide_id}.h5 grids, truth/slides.tsv and truth/patients.tsv (atomically, as a folder)."""
    config = plan.config
    with atomic_path(truth_dir) as temporary:
        temporary.mkdir()
        slide_rows = []
        for slide in plan.slides:
            write_truth_grid(temporary / f"{slide.slide_id}.h5", slide, config)
            fractions = trait_fractions(slide.trait_grid)
            row = {"slide_id": slide.slide_id, "patient_id": slide.patient_id, "true_hti": slide.hti,
                   "n_tissue_tiles": slide.n_tissue_tiles,
                   "n_positive_tiles": int((slide.trait_grid == 1).any(axis=-1).sum()),
                   "n_regions": len(slide.layout.region_traits)}  # fmt: skip
            row.update({f"fraction_{name}": float(f) for name, f in zip(config.trait_names, fractions)})
            slide_rows.append(row)
        slides = pd.DataFrame(slide_rows).sort_values("slide_id", kind="stable")
        slides.to_csv(temporary / "slides.tsv", sep="\t", index=False, float_format="%.6f")
        plan.patients.sort_values("patient_id", kind="stable").to_csv(
            temporary / "patients.tsv", sep="\t", index=False, float_format="%.6f"
        )


def write_truth_grid(path: Path, slide: SlidePlan, config: DemoConfig) -> None:
    """One slide's true trait grid (rows, cols, K) with its geometry in level-0 px, as HDF5 without timestamps."""
    with h5py.File(path, "w", track_order=False) as h5:
        h5.create_dataset("traits", data=slide.trait_grid, track_times=False)
        h5.create_dataset("tissue_fraction", data=slide.tissue_fraction, track_times=False)
        h5.create_dataset("region_traits", data=slide.layout.region_traits.astype(np.uint8), track_times=False)
        rows, cols = slide.trait_grid.shape[:2]
        attributes = {
            "slide_id": slide.slide_id, "patient_id": slide.patient_id, "traits": config.trait_names,
            "cell_px": config.cell_px, "origin": (0, 0), "grid_shape": (cols, rows),
            "level0_size": config.slide_size, "mpp": SLIDE_MPP, "background_value": 255,
            "min_tissue_fraction": config.min_tissue_fraction, "true_hti": slide.hti,
        }  # fmt: skip
        for key, value in attributes.items():
            h5.attrs[key] = value


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_demo_cohort(
    config: DemoConfig,
    seed: int,
    table: str | os.PathLike,
    slides_dir: str | os.PathLike,
    mrna: str | os.PathLike,
    mirna: str | os.PathLike,
    clinical: str | os.PathLike,
    truth_dir: str | os.PathLike,
    log: logging.Logger | None = None,
) -> CohortPlan:
    """Generate the whole demo cohort: slides, slide table, expression, clinical and truth files."""
    log = log or logging.getLogger(__name__)
    started = time.monotonic()
    plan = plan_cohort(config, seed)
    log.info(
        "planned %d patients, %d slides (%.1f s)", len(plan.patients), len(plan.slides), time.monotonic() - started
    )
    for folder in (Path(slides_dir), Path(truth_dir)):
        if folder.exists():
            shutil.rmtree(folder)
    slide_table = write_slides(plan, Path(slides_dir), log)
    write_truth(plan, Path(truth_dir))
    write_text(Path(mrna), format_mrna(plan.mrna))
    write_text(Path(mirna), format_mirna(plan.mirna))
    write_text(Path(clinical), format_cbioportal(plan.clinical))
    with atomic_path(table) as temporary:
        slide_table.to_csv(temporary, sep="\t", index=False)
    log.info("demo cohort written in %.1f s", time.monotonic() - started)
    return plan
