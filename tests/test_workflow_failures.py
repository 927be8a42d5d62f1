"""A cohort that no single failure stops, run through the real workflow against the local GDC look-alike: a slide
whose download fails for good (md5 mismatch), one excluded by config, one of another sample type and one hostile
manifest row are each reported, and the rest of the cohort goes on through the QC checkpoint and the splits."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from gdc_server import GdcServer, ServedFile
from test_workflow_sources import with_overrides
from workflow_runner import make_workdir, scheduled_rules, snakemake
from workflow_scripts.inputs.download_status import read_download_status
from workflow_scripts.slides.qc_table import read_failures, read_qc_table

COHORT = "faults"
SLIDE = "slides/CMU-1-Small-Region.svs"  # real H&E, 1.9 MB: each copy tiles in seconds at 256 px
BAD_MD5 = "0" * 32
HOSTILE = "../../etc/passwd.svs"


def name(patient: int, sample_type: str = "01") -> str:
    """A TCGA diagnostic slide file name of patient `patient`."""
    return f"TCGA-AC-{patient:04d}-{sample_type}Z-00-DX1.{patient:08X}-1E73-40D4-834A-46E3471D84A3.svs"


def slide_id(file_name: str) -> str:
    return file_name.removesuffix(".svs")


PASSING = [name(1), name(2), name(5), name(7)]
BAD_DOWNLOAD, EXCLUDED, METASTATIC = name(3), name(4), name(6, "06")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def failing_cohort(shared_data: Path, tmp_path_factory) -> SimpleNamespace:
    """The cohort run to qc/slides.tsv and the splits, from a user manifest (one hostile row) of 7 slides."""
    if not (shared_data / SLIDE).is_file():
        pytest.skip(f"{shared_data / SLIDE} is absent")
    content = (shared_data / SLIDE).read_bytes()
    served = [ServedFile(f"id-{n}", file_name, content) for n, file_name in enumerate(
        [*PASSING, BAD_DOWNLOAD, EXCLUDED, METASTATIC])]
    root = tmp_path_factory.mktemp("failing_cohort")
    manifest = root / "manifest.txt"
    lines = ["id\tfilename\tmd5\tsize\tstate"]
    for f in served:
        md5 = BAD_MD5 if f.file_name == BAD_DOWNLOAD else f.md5  # the GDC's bytes never match this md5
        lines.append(f"{f.file_id}\t{f.file_name}\t{md5}\t{f.size}\treleased")
    lines.append(f"evil-id\t{HOSTILE}\t{served[0].md5}\t10\treleased")
    manifest.write_text("\n".join(lines) + "\n")
    with GdcServer(served) as server:
        workdir = make_workdir(root / "run", {
            "cohort": COHORT,
            "slides": {"gdc": {"api": server.url, "manifest": str(manifest), "retries": 0}, "exclude": [EXCLUDED]},
            "tiling": {"tile_px": 256, "threads": 1},
        }, base="tcga_brca.yaml")
        targets = [f"results/{COHORT}/qc/slides.tsv", f"results/{COHORT}/splits/splits.tsv"]
        snakemake(workdir, "--cores", "2", *targets)
        yield SimpleNamespace(workdir=workdir, server=server, targets=targets,
                              resources=workdir / "resources" / COHORT, results=workdir / "results" / COHORT)


def test_hostile_manifest_row_is_rejected_and_the_rest_kept(failing_cohort) -> None:
    manifest = read_rows(failing_cohort.resources / "manifest.tsv")
    assert sorted(row["filename"] for row in manifest) == sorted([*PASSING, BAD_DOWNLOAD, EXCLUDED, METASTATIC])
    [rejected] = read_rows(failing_cohort.resources / "manifest_rejected.tsv")
    assert (rejected["line"], rejected["file_id"], rejected["file_name"]) == ("9", "evil-id", HOSTILE)
    assert "refusing file name" in rejected["problem"] and "path separator" in rejected["problem"]
    log = (failing_cohort.workdir / "logs" / COHORT / "gdc_manifest.log").read_text()
    assert "evil-id" in log and "line 9" in log


def test_failed_download_excluded_and_other_sample_type_are_fail_rows(failing_cohort) -> None:
    qc = read_qc_table(failing_cohort.results / "qc" / "slides.tsv").set_index("slide_id")
    assert sorted(qc.index) == sorted(slide_id(f) for f in [*PASSING, BAD_DOWNLOAD, EXCLUDED, METASTATIC])
    for file_name in PASSING:
        assert qc.loc[slide_id(file_name), "status"] == "pass", qc.loc[slide_id(file_name), "reason"]
    bad = qc.loc[slide_id(BAD_DOWNLOAD)]
    assert (bad["status"], bad["n_tiles"]) == ("fail", 0)
    assert bad["reason"].startswith("download failed: ") and "md5" in bad["reason"] and BAD_MD5 in bad["reason"]
    assert (qc.loc[slide_id(EXCLUDED), "status"], qc.loc[slide_id(EXCLUDED), "reason"]) == (
        "fail", "excluded by config")
    assert qc.loc[slide_id(METASTATIC), "status"] == "fail"
    assert "06" in qc.loc[slide_id(METASTATIC), "reason"]
    assert qc.loc[slide_id(BAD_DOWNLOAD), "patient_id"] == "TCGA-AC-0003"


def test_failures_table_lists_every_slide_not_analysed(failing_cohort) -> None:
    failures = read_failures(failing_cohort.results / "qc" / "failures.tsv")
    qc = read_qc_table(failing_cohort.results / "qc" / "slides.tsv").set_index("slide_id")
    assert [(row.slide_id, row.stage) for row in failures.itertuples()] == sorted([
        (slide_id(BAD_DOWNLOAD), "download"), (slide_id(EXCLUDED), "excluded"), (slide_id(METASTATIC), "excluded"),
    ])
    for row in failures.itertuples():
        assert row.reason == qc.loc[row.slide_id, "reason"]
        assert row.patient_id == qc.loc[row.slide_id, "patient_id"]


def test_failed_download_writes_a_fail_status_and_no_slide(failing_cohort) -> None:
    resources = failing_cohort.resources
    status = read_download_status(resources / "downloads" / f"{BAD_DOWNLOAD}.tsv")
    assert (status.status, status.md5) == ("fail", BAD_MD5)
    assert "md5" in status.reason
    assert not (resources / "slides" / BAD_DOWNLOAD).exists()
    assert not (resources / "slides" / f".{BAD_DOWNLOAD}.part").exists()
    for file_name in PASSING:
        assert read_download_status(resources / "downloads" / f"{file_name}.tsv").ok
        assert (resources / "slides" / file_name).is_file()
    # excluded slides are never downloaded
    assert not (resources / "downloads" / f"{EXCLUDED}.tsv").exists()
    assert not (resources / "downloads" / f"{METASTATIC}.tsv").exists()
    assert (failing_cohort.results / "tiles" / f"{slide_id(BAD_DOWNLOAD)}.h5").is_file()
    assert (failing_cohort.results / "qc" / "thumbnails" / f"{slide_id(BAD_DOWNLOAD)}.png").is_file()
    splits = read_rows(failing_cohort.results / "splits" / "splits.tsv")
    assert {row["patient_id"] for row in splits} == {f[:12] for f in PASSING}


FAILED_STATUSES = """awk -F'\\t' 'FNR == 2 && $2 == "fail" {print FILENAME}' resources/%s/downloads/*.tsv"""


def test_a_failed_download_is_kept_and_retried_with_forcerun(failing_cohort) -> None:
    workdir, targets = failing_cohort.workdir, failing_cohort.targets
    assert scheduled_rules(snakemake(workdir, "-n", "--cores", "1", *targets).stdout) == {}
    # the README's retry: --forcerun the failed status files only; the next run retries just those downloads
    listed = subprocess.run(["bash", "-c", FAILED_STATUSES % COHORT], cwd=workdir, check=True,
                            capture_output=True, text=True).stdout.split()
    assert listed == [f"resources/{COHORT}/downloads/{BAD_DOWNLOAD}.tsv"]
    retried = snakemake(workdir, "-n", "--cores", "1", *targets, "--forcerun", *listed)
    assert scheduled_rules(retried.stdout) == {"gdc_download": 1, "tile_slide": 1, "qc_summary": 1, "splits": 1}


def test_editing_the_exclusions_downloads_no_slide_again(failing_cohort, tmp_path: Path) -> None:
    """The slide table is rewritten, but the downloads read it as `ancient`: only the slide let in is fetched."""
    workdir = tmp_path / "run"
    shutil.copytree(failing_cohort.workdir, workdir, symlinks=True)
    config = with_overrides(workdir, "no_exclusions", {"slides": {"exclude": []}})
    process = snakemake(workdir, "--cores", "2", *failing_cohort.targets, "--configfile", str(config))
    ran = re.findall(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):$", process.stderr, flags=re.MULTILINE)
    assert sorted(ran) == sorted(["slide_table", "gdc_download", "tile_slide", "qc_summary", "splits"]), ran
    qc = read_qc_table(workdir / "results" / COHORT / "qc" / "slides.tsv").set_index("slide_id")
    assert qc.loc[slide_id(EXCLUDED), "status"] == "pass"
