"""Write the synthetic demo cohort in the formats real TCGA data comes in, with its planted truth beside it.

The plan (demo.plan) fixes everything but the pixels; this module renders each slide into an Aperio SVS
(demo.slidewriter), lists the slides in resources/{cohort}/slides.tsv through its owner (inputs.slidetable),
writes the PanCanAtlas-style expression matrices and the cBioPortal clinical file (demo.omics), and the truth
folder through its owner (demo.truth), so every stage of the workflow can be scored against the truth.
Same config and seed give byte-identical files.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.hashing import md5_file
from workflow_scripts.demo.config import DemoConfig
from workflow_scripts.demo.image import render_slide
from workflow_scripts.demo.omics import format_cbioportal, format_mirna, format_mrna
from workflow_scripts.demo.plan import STREAM_RENDER, CohortPlan, SlidePlan, plan_cohort, stream
from workflow_scripts.demo.slidewriter import write_aperio_slide
from workflow_scripts.demo.truth import SlideTruth, truth_path, write_truth, write_truth_tables
from workflow_scripts.inputs.slidetable import SlideRecord, write_slide_table

SLIDE_MPP = 0.25
SLIDE_APP_MAG = 40
SLIDE_DOWNSAMPLES = (1, 4, 16)
SLIDE_TILE_PX = 256


@dataclass(frozen=True)
class DemoOutputs:
    """Where the demo cohort goes: the outputs of the demo_cohort checkpoint."""

    table: Path  # resources/{cohort}/slides.tsv
    slides_dir: Path  # resources/{cohort}/slides/
    mrna: Path  # resources/{cohort}/expression/mrna.tsv (PanCanAtlas mRNA TSV)
    mirna: Path  # resources/{cohort}/expression/mirna.csv (PanCanAtlas miRNA CSV)
    clinical: Path  # resources/{cohort}/clinical/data_clinical_patient.txt (cBioPortal)
    truth_dir: Path  # resources/{cohort}/truth/ (see demo.truth)

    @classmethod
    def of(cls, **paths: str | os.PathLike) -> DemoOutputs:
        """Outputs from path-like values keyed by field name (Snakemake gives strings)."""
        return cls(**{key: Path(value) for key, value in paths.items()})


def write_slides(plan: CohortPlan, slides_dir: Path, log: logging.Logger) -> list[SlideRecord]:
    """Render and write every slide into `slides_dir` (atomically, as a whole); return the slide table rows."""
    config = plan.config
    signatures = [t.signature for t in config.traits]
    records = []
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
            records.append(SlideRecord(
                slide_id=slide.slide_id, patient_id=slide.patient_id, path=str(slides_dir / slide.file_name),
                file_name=slide.file_name, md5=md5_file(written), size=str(written.stat().st_size), file_id="",
            ))  # fmt: skip
            if number % 20 == 0 or number == len(plan.slides):
                log.info("wrote %d/%d slides (%.1f s)", number, len(plan.slides), time.monotonic() - started)
    return records


def slide_truth(slide: SlidePlan, config: DemoConfig) -> SlideTruth:
    """The truth file content of one planned slide."""
    return SlideTruth(
        slide_id=slide.slide_id, patient_id=slide.patient_id, traits=tuple(config.trait_names),
        trait_grid=slide.trait_grid, tissue_fraction=slide.tissue_fraction,
        region_traits=slide.layout.region_traits.astype(np.uint8), cell_px=config.cell_px,
        level0_size=config.slide_size, mpp=SLIDE_MPP, min_tissue_fraction=config.min_tissue_fraction,
        true_hti=slide.hti,
    )  # fmt: skip


def write_truth_folder(plan: CohortPlan, truth_dir: Path) -> None:
    """Write truth/{slide_id}.h5 per slide, truth/slides.tsv and truth/patients.tsv (atomically, as a folder)."""
    with atomic_path(truth_dir) as temporary:
        temporary.mkdir()
        rows = []
        for slide in plan.slides:
            truth = slide_truth(slide, plan.config)
            write_truth(truth_path(temporary, slide.slide_id), truth)
            rows.append(truth.summary())
        write_truth_tables(temporary, pd.DataFrame(rows), plan.patients)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_demo_cohort(
    config: DemoConfig, seed: int, outputs: DemoOutputs, log: logging.Logger | None = None
) -> CohortPlan:
    """Generate the whole demo cohort: slides, slide table, expression, clinical and truth files."""
    log = log or logging.getLogger(__name__)
    started = time.monotonic()
    plan = plan_cohort(config, seed)
    log.info(
        "planned %d patients, %d slides (%.1f s)", len(plan.patients), len(plan.slides), time.monotonic() - started
    )
    for folder in (outputs.slides_dir, outputs.truth_dir):
        if folder.exists():
            shutil.rmtree(folder)
    records = write_slides(plan, outputs.slides_dir, log)
    write_truth_folder(plan, outputs.truth_dir)
    write_text(outputs.mrna, format_mrna(plan.mrna))
    write_text(outputs.mirna, format_mirna(plan.mirna))
    write_text(outputs.clinical, format_cbioportal(plan.clinical))
    write_slide_table(records, outputs.table)
    log.info("demo cohort written in %.1f s", time.monotonic() - started)
    return plan
