"""Per-slide heterogeneity outputs: the hti.tsv rows, the map of every slide and the gallery ordered by HTI."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.analysis.cartography import read_cartography, read_store_layout
from workflow_scripts.analysis.heterogeneity import combination_counts, combination_label, hta_test, hti, select_traits
from workflow_scripts.analysis.maps import DEFAULT_ALPHA, plot_gallery, plot_map
from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.seeds import stable_seed
from workflow_scripts.common.tables import read_table, write_tsv
from workflow_scripts.inputs.barcodes import short_slide_name
from workflow_scripts.slides.qc_table import read_passed_slides

GALLERY_SIZE = 24


@dataclass(frozen=True)
class HtaSettings:
    """How HTI and HTA are computed: region side in tiles, permutations, the run's base seed and the log base."""

    region: int
    permutations: int
    seed: int
    log_base: str = "combinations"  # heterogeneity.hta_log_base: combinations (the paper) or observed (`hta`)
    map_alpha: float = DEFAULT_ALPHA  # maps.alpha: fill opacity of the overlay maps


@dataclass(frozen=True)
class HeterogeneityOutputs:
    """Where the heterogeneity job writes: the hti.tsv table, the maps/ folder and gallery.png."""

    hti: str | os.PathLike
    maps: str | os.PathLike
    gallery: str | os.PathLike


def combination_names(traits: list[str]) -> list[str]:
    """Names of the 2**K - 1 combinations in id order, for the p_<combination> columns."""
    return [combination_label(index, traits) for index in range(1, 2 ** len(traits))]


def slide_row(slide_id: str, patient_id: str, tensor: np.ndarray, traits: list[str], settings: HtaSettings) -> dict:
    """One hti.tsv row: HTI, HTA with its p-values (slide-seeded permutations) and each combination's share."""
    counts = combination_counts(tensor)
    total = counts.sum()
    seed = stable_seed(settings.seed, slide_id)
    spatial = hta_test(tensor, settings.region, settings.permutations, seed, log_base=settings.log_base)
    row = {"slide_id": slide_id, "patient_id": patient_id, "traits": "+".join(traits),
           "n_positive_tiles": int(total), "hti": hti(tensor, log_base=settings.log_base), "hta": spatial.hta,
           "hta_p": spatial.p_value, "hta_p_clt": spatial.p_value_clt}
    row |= {f"p_{name}": (count / total if total else np.nan) for name, count in zip(combination_names(traits), counts)}
    return row


def map_title(row: dict, region: int) -> str:
    """Title of a slide's map, so the picture carries its HTI and HTA numbers."""
    return (f"{short_slide_name(row['slide_id'])}\nHTI {row['hti']:.2f}  HTA {row['hta']:.2f} "
            f"(p {row['hta_p']:.3g}, region {region})")


def gallery_picks(table: pd.DataFrame, size: int = GALLERY_SIZE) -> pd.DataFrame:
    """Up to `size` rows spread evenly over the slides ordered by decreasing HTI (NaN last), for the gallery."""
    ordered = table.sort_values(["hti", "slide_id"], ascending=[False, True], na_position="last")
    if ordered.empty:
        return ordered
    return ordered.iloc[np.unique(np.linspace(0, len(ordered) - 1, min(len(ordered), size)).round().astype(int))]


def write_heterogeneity(
    traits_path: str | os.PathLike,
    qc_path: str | os.PathLike,
    cartography_dir: str | os.PathLike,
    store_paths: Sequence[str | os.PathLike],
    settings: HtaSettings,
    outputs: HeterogeneityOutputs,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Write hti.tsv, the maps (alone and over the thumbnail) of every QC-passed slide and gallery.png."""
    log = log or logging.getLogger(__name__)
    traits = read_table(traits_path, ["trait"])["trait"].astype(str).tolist()
    slides = read_passed_slides(qc_path)
    stores = {Path(path).stem: path for path in store_paths}
    rows, tensors = [], {}
    with atomic_path(outputs.maps) as maps:
        maps.mkdir()
        for slide_id, patient_id in zip(slides["slide_id"], slides["patient_id"]):
            path = Path(cartography_dir) / f"{slide_id}.h5"
            tensor, tensor_traits, _ = read_cartography(path)
            tensor = select_traits(tensor, tensor_traits, traits, str(path))
            tensors[slide_id] = tensor
            row = slide_row(slide_id, patient_id, tensor, traits, settings)
            rows.append(row)
            title = map_title(row, settings.region)
            layout = read_store_layout(stores[slide_id], with_thumbnail=True)  # one read serves both maps
            plot_map(tensor, traits, maps / f"{slide_id}.png", title, replace(layout, thumbnail=None))
            plot_map(tensor, traits, maps / f"{slide_id}.overlay.png", title, layout, settings.map_alpha)
            log.info("%s: HTI %.3f HTA %.3f p %.3g (%d positive tiles)", slide_id, row["hti"], row["hta"],
                     row["hta_p"], row["n_positive_tiles"])
        table = pd.DataFrame(rows)
        picks = gallery_picks(table)
        gallery = [(sid, float(value), tensors[sid]) for sid, value in zip(picks["slide_id"], picks["hti"])]
        plot_gallery(gallery, traits, outputs.gallery)
        write_tsv(table, outputs.hti)
    return table
