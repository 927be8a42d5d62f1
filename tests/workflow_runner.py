"""Run the real workflow in a scratch folder, so tests never write into the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
LINKED = ("Snakefile", "rules", "envs", "workflow_scripts", "profiles")


def deep_update(base: dict, overrides: dict) -> dict:
    """Merge nested overrides into a config dict (lists are replaced, not merged)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_workdir(workdir: Path, overrides: dict[str, Any] | None = None, base: str = "config.yaml") -> Path:
    """Lay out a runnable copy of the workflow in `workdir` with a config derived from `base`."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        target = workdir / name
        if not target.exists():
            target.symlink_to(REPO_ROOT / name)
    config_dir = workdir / "config"
    config_dir.mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "config" / "schema.yaml", config_dir / "schema.yaml")
    config = yaml.safe_load((REPO_ROOT / "config" / base).read_text())
    config = deep_update(config, overrides or {})
    (config_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


def snakemake(workdir: Path, *args: str, timeout: int = 1800, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake in `workdir` and return the finished process (stdout and stderr captured)."""
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"), TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run(
        [SNAKEMAKE, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and process.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed with {process.returncode}\n"
            f"--- stdout\n{process.stdout[-6000:]}\n--- stderr\n{process.stderr[-12000:]}"
        )
    return process


def scheduled_rules(dry_run_stdout: str) -> dict[str, int]:
    """Rule names and job counts from the 'Job stats' table of a dry run."""
    counts: dict[str, int] = {}
    in_table = False
    for line in dry_run_stdout.splitlines():
        fields = line.split()
        if fields[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if not fields or fields[0].startswith("-"):
                if counts:
                    break
                continue
            if fields[0] == "total":
                break
            counts[fields[0]] = int(fields[1])
    return counts
