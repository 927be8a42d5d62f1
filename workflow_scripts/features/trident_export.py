"""Export a tile store's tiles as a TRIDENT patch-coordinate file, so TRIDENT embeds exactly our tiles.

`export_trident_coords(store, folder)` writes `{folder}/{name}_patches.h5`, folder being the `patches` folder of a
TRIDENT coords directory (conventionally `{job_dir}/{trident_patch_folder_name(mpp, tile_px)}/patches`) and name
the slide file's name without its last extension, the name TRIDENT gives the slide. TRIDENT's feature step then
reads these coordinates (`run_batch_of_slides.py --task feat --coords_dir {that coords directory} --wsi_dir ...`)
and reads each patch as patch_size px at its pixel size 10 / target_magnification um, from level-0 regions of
patch_size x level0_magnification / target_magnification px: with the magnifications written here (10 / mpp and
10 / source_mpp) that is the store's own tile. `level0_width` / `level0_height` are the extent of the store's tile
grid (a store does not record the slide's size; TRIDENT writes these attributes but does not read them).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from workflow_scripts.features.trident_files import TridentPatchAttrs, write_trident_coords
from workflow_scripts.slides.tilestore import TileStore

MICRONS_AT_1X = 10.0  # TRIDENT: magnification m means 10 / m um per pixel


class TridentExportError(ValueError):
    """A tile store that cannot be described to TRIDENT; the message names the store."""


def magnification(mpp: float) -> float:
    """TRIDENT's magnification of a pixel size (20x at 0.5 um/px)."""
    return MICRONS_AT_1X / float(mpp)


def trident_patch_folder_name(mpp: float, tile_px: int, overlap: int = 0) -> str:
    """TRIDENT's coords directory name for tiles of tile_px at mpp, e.g. '20x_512px_0px_overlap'."""
    return f"{magnification(mpp):g}x_{int(tile_px)}px_{int(overlap)}px_overlap"


def trident_slide_name(source_path: str | os.PathLike) -> str:
    """The name TRIDENT gives a slide: its file name without the last extension."""
    return Path(source_path).stem


def export_trident_coords(store_path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Write the store's tile corners as TRIDENT's `{folder}/{slide name}_patches.h5`; returns its path."""
    folder = Path(folder)
    with TileStore(store_path) as store:
        attrs, coords = store.attrs, store.coords
        name = trident_slide_name(str(attrs.get("source_path", "")))
        source_mpp, span = float(attrs["source_mpp"]), float(attrs["level0_tile_px"])
        if not name or not source_mpp > 0 or not span > 0:
            raise TridentExportError(
                f"{store_path}: slide {attrs['slide_id']} has no slide file, level-0 um/px or tile span "
                "(it failed before tiling): nothing to export"
            )
        n_cols, n_rows = (int(value) for value in attrs["grid_shape"])
        patch_attrs = TridentPatchAttrs(
            patch_size=int(attrs["tile_px"]), patch_size_level0=int(round(span)),
            level0_magnification=magnification(source_mpp), target_magnification=magnification(float(attrs["mpp"])),
            name=name, savetodir=str(folder.parent),
            level0_width=math.ceil(n_cols * span), level0_height=math.ceil(n_rows * span),
        )  # fmt: skip
    return write_trident_coords(folder / f"{name}_patches.h5", coords, patch_attrs)
