"""The report's copies of the per-slide pictures: results/{cohort}/report/maps/ and report/thumbnails/, as JPEG.

Contract (this module writes them; only Snakemake's report reads them): ``maps/{slide_id}.jpg`` is the heterogeneity
map over the thumbnail (heterogeneity/maps/{slide_id}.overlay.png) and ``thumbnails/{slide_id}.jpg`` the QC
thumbnail (qc/thumbnails/{slide_id}.png), each with its long side at most REPORT_MAX_PX and JPEG quality
JPEG_QUALITY, so a report of hundreds of slides stays a size a browser opens (a demo map: ~310 kB PNG, ~70 kB
here). The PNGs stay the full-resolution outputs. Each folder is written whole under a temporary name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from workflow_scripts.common.atomic import atomic_path

REPORT_MAX_PX = 1000
JPEG_QUALITY = 90
OVERLAY_SUFFIX = ".overlay.png"


def report_copy(source: str | os.PathLike, target: str | os.PathLike, max_px: int = REPORT_MAX_PX,
                quality: int = JPEG_QUALITY) -> tuple[int, int]:
    """Write one picture as an RGB JPEG no larger than max_px on its long side; return its size in pixels."""
    with Image.open(source) as image:
        picture = image.convert("RGB")
    picture.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    picture.save(target, format="JPEG", quality=quality, optimize=True)
    return picture.size


def overlay_maps(maps_dir: str | os.PathLike) -> dict[str, Path]:
    """The overlay map of every slide in heterogeneity/maps/, by slide id."""
    paths = sorted(Path(maps_dir).glob(f"*{OVERLAY_SUFFIX}"))
    return {path.name.removesuffix(OVERLAY_SUFFIX): path for path in paths}


def write_copies(sources: dict[str, Path], folder: str | os.PathLike) -> int:
    """Write the report copy of each picture as {folder}/{slide_id}.jpg, the folder whole or not at all."""
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        for slide_id, source in sources.items():
            report_copy(source, temporary / f"{slide_id}.jpg")
    return len(sources)


def write_report_images(maps_dir: str | os.PathLike, thumbnails: Sequence[str | os.PathLike],
                        maps_out: str | os.PathLike, thumbnails_out: str | os.PathLike) -> tuple[int, int]:
    """Write the report copies of every overlay map and QC thumbnail; return how many of each."""
    maps = overlay_maps(maps_dir)
    if not maps:
        raise ValueError(f"{maps_dir}: no heterogeneity map (*{OVERLAY_SUFFIX}) to copy into the report")
    pictures = {Path(path).stem: Path(path) for path in thumbnails}
    return write_copies(maps, maps_out), write_copies(pictures, thumbnails_out)
