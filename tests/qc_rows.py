"""Test helper: complete QC tables from a few columns, written and read through the QC table owner."""

from __future__ import annotations

import pandas as pd

from workflow_scripts.slides.qc_table import QC_COLUMNS


def qc_frame(rows: pd.DataFrame | list[dict]) -> pd.DataFrame:
    """A QC table with every contract column: given columns kept, the rest filled (1 tile, blank measurements)."""
    frame = pd.DataFrame(rows).copy()
    defaults = {"reason": "", "n_tiles": 1}
    for column in QC_COLUMNS:
        if column not in frame.columns:
            frame[column] = defaults.get(column, float("nan"))
    return frame[list(QC_COLUMNS)]
