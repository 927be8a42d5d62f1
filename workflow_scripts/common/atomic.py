"""Write outputs under a temporary name and rename them when complete, so a killed job leaves nothing half-written.

The temporary name is fixed per output (``.{name}.tmp`` beside it), not per process: what a killed job (SIGKILL,
Slurm time limit) leaves behind is removed by the next attempt at the same output instead of piling up. Snakemake
runs one job per output at a time, so two writers never share a temporary name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` on success, delete it on any exception."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.tmp")
    if temporary.is_dir():
        shutil.rmtree(temporary)
    elif temporary.exists():
        temporary.unlink()
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(f"nothing was written to {temporary} for {final}")
        os.replace(temporary, final)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()
        raise
