"""The demo cohort's planted truth (resources/{cohort}/truth/): the one writer and reader of its files.

Contract of the folder (written atomically, as a whole, by demo.cohort; traits in config order are the K axis):
- {slide_id}.h5, one per slide, HDF5 without timestamps, so the same plan gives the same bytes:
  datasets
    traits           (rows, cols, K) uint8: 1 when the tiling cell carries trait k, 0 when it does not,
                     BACKGROUND (255) in every k when the cell is not tissue;
    tissue_fraction  (rows, cols) float32: share of the cell's area that is tissue;
    region_traits    (n_regions, K) uint8 0/1: the traits each subclone territory carries;
  attributes
    slide_id, patient_id (str); traits (K str); cell_px (int, cell side in level-0 px); origin (0, 0) and
    grid_shape (cols, rows): the cells tile level 0 from its top-left corner, as the tiling stage does;
    level0_size (width, height px); mpp (float, um per level-0 px); background_value (255);
    min_tissue_fraction (float, the tissue share that makes a cell tissue); true_hti (float, the slide's HTI).
- slides.tsv (common.tables form): one row per slide: SLIDE_COLUMNS, then fraction_{trait} per trait
  (share of tissue cells positive for it).
- patients.tsv: one row per patient: PATIENT_COLUMNS (true_hti is the DX1 slide's; n_tissue_tiles and the
  fraction_{trait} columns pool all the patient's slides), value_{trait} (bulk expression of the primary
  tumour aliquot, NaN without one), has_expression, os_months, os_event.
Readers get validated content: `read_truth` checks datasets, shapes and attributes, the table readers check
their columns; every error names the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from workflow_scripts.common.tables import read_table, write_tsv
from workflow_scripts.demo.layout import BACKGROUND, trait_fractions

SLIDE_TABLE = "slides.tsv"
PATIENT_TABLE = "patients.tsv"
SLIDE_COLUMNS = ("slide_id", "patient_id", "true_hti", "n_tissue_tiles", "n_positive_tiles", "n_regions")
PATIENT_COLUMNS = ("patient_id", "n_slides", "dx1_slide_id", "n_tissue_tiles", "true_hti", "has_expression",
                   "os_months", "os_event")  # fmt: skip
DATASETS = ("traits", "tissue_fraction", "region_traits")
ATTRIBUTES = ("slide_id", "patient_id", "traits", "cell_px", "origin", "grid_shape", "level0_size", "mpp",
              "background_value", "min_tissue_fraction", "true_hti")  # fmt: skip


class TruthError(ValueError):
    """A truth file that does not hold what the contract promises; the message names the file."""


@dataclass(frozen=True)
class SlideTruth:
    """One slide's planted truth on the tiling grid, as its {slide_id}.h5 file holds it."""

    slide_id: str
    patient_id: str
    traits: tuple[str, ...]
    trait_grid: np.ndarray  # (rows, cols, K) uint8, 0/1, BACKGROUND off tissue
    tissue_fraction: np.ndarray  # (rows, cols) float32
    region_traits: np.ndarray  # (n_regions, K) uint8 0/1
    cell_px: int
    level0_size: tuple[int, int]
    mpp: float
    min_tissue_fraction: float
    true_hti: float

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(cols, rows) of the cell grid, in the order of level0_size."""
        return int(self.trait_grid.shape[1]), int(self.trait_grid.shape[0])

    def summary(self) -> dict:
        """The slide's row of truth/slides.tsv."""
        row = {"slide_id": self.slide_id, "patient_id": self.patient_id, "true_hti": self.true_hti,
               "n_tissue_tiles": int((self.trait_grid[..., 0] != BACKGROUND).sum()),
               "n_positive_tiles": int((self.trait_grid == 1).any(axis=-1).sum()),
               "n_regions": len(self.region_traits)}  # fmt: skip
        row.update({f"fraction_{name}": float(f) for name, f in zip(self.traits, trait_fractions(self.trait_grid))})
        return row


def truth_path(folder: str | os.PathLike, slide_id: str) -> Path:
    """Where a slide's truth file lies in the truth folder."""
    return Path(folder) / f"{slide_id}.h5"


def write_truth(path: str | os.PathLike, truth: SlideTruth) -> None:
    """Write one slide's truth file (see the module docstring), without timestamps."""
    attributes = {
        "slide_id": truth.slide_id, "patient_id": truth.patient_id, "traits": list(truth.traits),
        "cell_px": truth.cell_px, "origin": (0, 0), "grid_shape": truth.grid_shape,
        "level0_size": truth.level0_size, "mpp": truth.mpp, "background_value": BACKGROUND,
        "min_tissue_fraction": truth.min_tissue_fraction, "true_hti": truth.true_hti,
    }  # fmt: skip
    with h5py.File(path, "w", track_order=False) as h5:
        h5.create_dataset("traits", data=truth.trait_grid, track_times=False)
        h5.create_dataset("tissue_fraction", data=truth.tissue_fraction, track_times=False)
        h5.create_dataset("region_traits", data=np.asarray(truth.region_traits, np.uint8), track_times=False)
        for key, value in attributes.items():
            h5.attrs[key] = value


def _text(value: object) -> str:
    """An HDF5 string attribute as str (h5py gives str or bytes depending on how it was stored)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def read_truth(path: str | os.PathLike) -> SlideTruth:
    """Read one slide's truth file, checking datasets, shapes and attributes against each other."""
    try:
        with h5py.File(path, "r") as h5:
            missing = [name for name in DATASETS if name not in h5] + [a for a in ATTRIBUTES if a not in h5.attrs]
            if missing:
                raise TruthError(f"truth file {path} lacks {missing}")
            arrays = {name: h5[name][()] for name in DATASETS}
            attrs = {name: h5.attrs[name] for name in ATTRIBUTES}
    except OSError as error:
        raise TruthError(f"truth file {path} cannot be read as HDF5: {error}") from None
    truth = SlideTruth(
        slide_id=_text(attrs["slide_id"]), patient_id=_text(attrs["patient_id"]),
        traits=tuple(_text(t) for t in np.atleast_1d(attrs["traits"])),
        trait_grid=arrays["traits"], tissue_fraction=arrays["tissue_fraction"], region_traits=arrays["region_traits"],
        cell_px=int(attrs["cell_px"]), level0_size=tuple(int(v) for v in attrs["level0_size"]),
        mpp=float(attrs["mpp"]), min_tissue_fraction=float(attrs["min_tissue_fraction"]),
        true_hti=float(attrs["true_hti"]),
    )  # fmt: skip
    _check(truth, attrs, path)
    return truth


def _check(truth: SlideTruth, attrs: dict, path: str | os.PathLike) -> None:
    """Raise TruthError naming the file when the truth's parts disagree with each other or the contract."""
    grid, k = truth.trait_grid, len(truth.traits)
    problems = []
    if grid.ndim != 3 or grid.dtype != np.uint8 or grid.shape[2] != k:
        problems.append(f"traits is {grid.dtype} {grid.shape}, expected uint8 (rows, cols, {k})")
    elif not np.isin(grid, (0, 1, BACKGROUND)).all():
        problems.append(f"traits holds values other than 0, 1 and {BACKGROUND}")
    elif tuple(int(v) for v in attrs["grid_shape"]) != truth.grid_shape:
        problems.append(f"grid_shape {tuple(attrs['grid_shape'])} is not the traits grid's (cols, rows)")
    if truth.tissue_fraction.shape != grid.shape[:2]:
        problems.append(f"tissue_fraction is {truth.tissue_fraction.shape}, expected {grid.shape[:2]}")
    if truth.region_traits.ndim != 2 or truth.region_traits.shape[1] != k:
        problems.append(f"region_traits is {truth.region_traits.shape}, expected (n_regions, {k})")
    if int(attrs["background_value"]) != BACKGROUND or tuple(int(v) for v in attrs["origin"]) != (0, 0):
        problems.append(f"background_value/origin are not {BACKGROUND}/(0, 0)")
    if problems:
        raise TruthError(f"truth file {path}: {'; '.join(problems)}")


def write_truth_tables(folder: str | os.PathLike, slides: pd.DataFrame, patients: pd.DataFrame) -> None:
    """Write truth/slides.tsv and truth/patients.tsv (see the module docstring), sorted by their ids."""
    for frame, name, key, columns in ((slides, SLIDE_TABLE, "slide_id", SLIDE_COLUMNS),
                                      (patients, PATIENT_TABLE, "patient_id", PATIENT_COLUMNS)):  # fmt: skip
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise TruthError(f"truth table {name} lacks columns {missing}")
        write_tsv(frame.sort_values(key, kind="stable"), Path(folder) / name)


def read_slide_truths(path: str | os.PathLike) -> pd.DataFrame:
    """Read truth/slides.tsv, checking its columns (ids as text)."""
    return read_table(path, SLIDE_COLUMNS)


def read_patient_truths(path: str | os.PathLike) -> pd.DataFrame:
    """Read truth/patients.tsv, checking its columns (ids as text)."""
    return read_table(path, PATIENT_COLUMNS, text=("dx1_slide_id",))
