"""The workflow's configuration contract: schema validation, lint and formatting."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow_runner import REPO_ROOT, SNAKEMAKE, make_workdir, snakemake


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        ({"tiling": {"tile_px": -512}}, "tile_px", "minimum"),
        (
            {"traits": [{"name": "MKI67", "source": "rnaseq", "id": "MKI67|4288"}]},
            "source",
            "rnaseq",
        ),
        ({"slides": {"source": "ftp"}}, "source", "ftp"),
        ({"cohort": "bad/name"}, "cohort", "bad/name"),
        # the cohort-wide default_mpp re-tiled every slide when set; tiling.mpp_overrides replaces it
        ({"tiling": {"default_mpp": 0.25}}, "default_mpp", "default_mpp"),
        ({"tiling": {"mpp_overrides": {"slide-1": 0}}}, "mpp_overrides", "exclusiveMinimum"),
    ],
)
def test_invalid_config_stops_before_any_job(tmp_path: Path, overrides, key, fragment) -> None:
    workdir = make_workdir(tmp_path, overrides)
    process = snakemake(workdir, "-n", "--cores", "1", check=False)
    output = process.stdout + process.stderr
    assert process.returncode != 0
    assert "ValidationError" in output or "validation" in output.lower()
    assert key in output and fragment in output
    assert not (workdir / "resources").exists() and not (workdir / "results").exists()


def test_default_config_dry_run_plans_the_generator_first(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path)
    process = snakemake(workdir, "-n", "--cores", "2")
    assert "demo_cohort" in process.stdout
    assert not (workdir / "resources").exists()


def test_rulegraph_covers_every_stage(tmp_path: Path) -> None:
    # Before the slide-table checkpoint has run, the per-slide rules (tile_slide) cannot be planned yet;
    # tests/test_workflow_demo.py checks the complete graph after a run.
    workdir = make_workdir(tmp_path)
    process = snakemake(workdir, "--rulegraph", "--cores", "1")
    for rule in ("demo_cohort", "qc_summary", "labels_trait", "labels_summary", "clinical", "splits", "train",
                 "predict", "evaluate", "choose_traits", "cartography", "heterogeneity", "survival", "qupath", "viewer",
                 "report_tables"):
        assert rule in process.stdout, rule


def test_lint_is_clean() -> None:
    process = snakemake(REPO_ROOT, "--lint", check=False)
    output = process.stdout + process.stderr
    assert process.returncode == 0, output
    assert "Lints for" not in output, output


def test_snakefmt_check_passes() -> None:
    import subprocess

    snakefmt = str(Path(SNAKEMAKE).with_name("snakefmt"))
    process = subprocess.run([snakefmt, "--check", "."], cwd=REPO_ROOT, capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr
