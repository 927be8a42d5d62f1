"""The one figure writer: headless Matplotlib, atomic saves, and no dates in the file so reruns are identical."""

from __future__ import annotations

import os
from pathlib import Path

from workflow_scripts.common.atomic import atomic_path


def pyplot():
    """Matplotlib's pyplot on the non-interactive Agg backend (jobs run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, *paths: str | os.PathLike, dpi: int = 120, tight: bool = False) -> None:
    """Save a figure atomically to each path in its suffix's format (png, pdf, svg) without dates, then close it."""
    plt = pyplot()
    extra = {"bbox_inches": "tight"} if tight else {}
    try:
        for path in paths:
            suffix = Path(path).suffix.lstrip(".").lower()
            metadata = {"CreationDate": None} if suffix == "pdf" else {"Software": None}
            with atomic_path(path) as temporary:
                figure.savefig(temporary, format=suffix, dpi=dpi, metadata=metadata, **extra)
    finally:
        plt.close(figure)
