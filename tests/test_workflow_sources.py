"""Where the slides come from, run through the real workflow: GDC discovery against a real GDC-shaped HTTP server
on 127.0.0.1 (no internet), a user's GDC manifest with exclusions, and a user's own cohort from a local table."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from gdc_server import GdcServer, ServedFile
from workflow_runner import deep_update, make_workdir, scheduled_rules, snakemake

BRCA_MANIFEST = "tcga/gdc_manifest_brca_761.txt"
MANIFEST_HEADER = ["id", "filename", "md5", "size", "state"]
SLIDE_TABLE_HEADER = ["slide_id", "patient_id", "path", "file_name", "md5", "size", "file_id"]
QC_HEADER = [
    "slide_id", "patient_id", "status", "reason", "mpp", "objective_power", "width", "height",
    "tissue_fraction", "pen_fraction", "blur_fraction", "n_tiles",
]
TCGA_PATIENT = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}$")
PAGE_SIZE = 200
BRCA_TRAITS = 10
BRCA_SPLITS = 5


@dataclass
class ListedSlide(ServedFile):
    """A manifest row the server lists with its real byte size but holds no bytes for (TCGA slides are GBs)."""

    listed_size: int | None = None

    @property
    def size(self) -> int | None:
        return self.listed_size


def read_tsv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a tab-separated file, all values as text."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def manifest_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a GDC manifest, checking it has the GDC manifest header."""
    header, rows = read_tsv(path)
    assert header == MANIFEST_HEADER, f"{path} header {header}"
    return rows


def listed_slides(manifest: Path, project: str = "TCGA-BRCA") -> list[ListedSlide]:
    """What the GDC lists for the rows of a manifest: id, name, md5, size, state and the case's barcode."""
    return [
        ListedSlide(row["id"], row["filename"], None, md5=row["md5"], state=row["state"],
                    submitter_id=row["filename"][:12], project=project, listed_size=int(row["size"]))
        for row in manifest_rows(manifest)
    ]


def planned_jobs(dry_run_stdout: str, rule: str) -> list[dict[str, str]]:
    """The input/output/wildcards lines of every job of one rule printed by a dry run."""
    jobs, current = [], None
    for line in dry_run_stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ", "checkpoint ", "localcheckpoint ")) and stripped.endswith(":"):
            current = {} if stripped.split()[1].rstrip(":") == rule else None
            if current is not None:
                jobs.append(current)
        elif current is not None and ": " in stripped:
            key, _, value = stripped.partition(": ")
            current.setdefault(key, value)
    return jobs


@pytest.fixture(scope="module")
def brca_manifest(shared_data: Path) -> Path:
    """The paper's 761-slide TCGA-BRCA GDC manifest; skip when the shared data lacks it."""
    path = shared_data / BRCA_MANIFEST
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def discovered_brca(brca_manifest: Path, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """The TCGA-BRCA config with its GDC api pointed at a local server listing the 761 slides, after running
    the real discovery (gdc_manifest, then the slide_table checkpoint); the server stays up for later runs."""
    with GdcServer(listed_slides(brca_manifest)) as server:
        workdir = make_workdir(
            tmp_path_factory.mktemp("tcga_brca"),
            {"slides": {"gdc": {"api": server.url, "page_size": PAGE_SIZE, "retries": 0}}},
            base="tcga_brca.yaml",
        )
        snakemake(workdir, "--cores", "1", "--until", "slide_table")
        yield SimpleNamespace(
            workdir=workdir,
            server=server,
            discovery_requests=list(server.requests),
            resources=workdir / "resources" / "tcga_brca",
        )


def test_gdc_discovery_pages_through_the_files_endpoint(discovered_brca) -> None:
    requests = discovered_brca.discovery_requests
    assert [(r.method, r.path.rstrip("/")) for r in requests] == [("POST", "/files")] * 4
    assert [(r.body["from"], r.body["size"]) for r in requests] == [(start, PAGE_SIZE) for start in (0, 200, 400, 600)]
    filters = requests[0].body["filters"]
    assert filters["op"] == "and"
    assert {(c["content"]["field"], tuple(c["content"]["value"])) for c in filters["content"]} == {
        ("cases.project.project_id", ("TCGA-BRCA",)),
        ("files.data_type", ("Slide Image",)),
        ("files.experimental_strategy", ("Diagnostic Slide",)),
        ("files.data_format", ("SVS",)),
    }
    assert all(r.body["filters"] == filters for r in requests)


def test_gdc_discovery_writes_the_manifest_the_gdc_lists(discovered_brca, brca_manifest: Path) -> None:
    written = manifest_rows(discovered_brca.resources / "manifest.tsv")
    expected = sorted(manifest_rows(brca_manifest), key=lambda row: row["filename"])
    assert len(written) == 761
    assert written == expected  # same ids, names, md5, sizes and states, sorted by file name


def test_gdc_discovery_slide_table_has_one_row_per_slide(discovered_brca, brca_manifest: Path) -> None:
    header, slides = read_tsv(discovered_brca.resources / "slides.tsv")
    assert header == SLIDE_TABLE_HEADER
    # slides.sample_types defaults to primary tumours: the manifest's one metastatic (06) slide is left out
    assert len(slides) == 760
    by_name = {row["filename"]: row for row in manifest_rows(brca_manifest)}
    metastatic = {name for name in by_name if name[13:15] == "06"}
    assert len(metastatic) == 1
    assert {s["file_name"] for s in slides} == set(by_name) - metastatic
    assert [s["slide_id"] for s in slides] == sorted(s["slide_id"] for s in slides)
    for slide in slides:
        listed = by_name[slide["file_name"]]
        assert slide["slide_id"] == slide["file_name"].removesuffix(".svs")
        assert TCGA_PATIENT.match(slide["patient_id"]), slide
        assert slide["patient_id"] == slide["file_name"][:12]
        assert slide["path"] == f"resources/tcga_brca/slides/{slide['file_name']}"
        assert (slide["md5"], slide["size"], slide["file_id"]) == (listed["md5"], listed["size"], listed["id"])
    # (the metastatic slide's patient has no other slide, so it leaves the table with it)
    assert len({s["patient_id"] for s in slides}) == len({name[:12] for name in set(by_name) - metastatic})


@pytest.mark.slow
def test_tcga_brca_dry_run_plans_the_full_dag(discovered_brca) -> None:
    before = len(discovered_brca.server.requests)
    process = snakemake(discovered_brca.workdir, "-n", "--cores", "1")
    assert len(discovered_brca.server.requests) == before, "a dry run must not contact the GDC"
    _, slides = read_tsv(discovered_brca.resources / "slides.tsv")
    n_slides = len(slides)
    # Every job up to the QC checkpoint is known now that slides.tsv exists. The jobs after the checkpoint
    # (splits, train, predict, evaluate, ...) read qc/slides.tsv through checkpoints.qc_summary.get(): until it
    # has run Snakemake plans each of them once with the checkpoint's output as a stand-in input, and re-plans
    # them (adding the tile stores of the slides that passed) after it. Their counts are therefore the
    # per-trait/per-split structure, not per-slide.
    assert scheduled_rules(process.stdout) == {
        "gdc_download": n_slides,
        "tile_slide": n_slides,
        "fetch_input": 5,
        "qc_summary": 1,
        "clinical": 1,
        "labels_trait": BRCA_TRAITS,
        "labels_summary": 1,
        "splits": 1,
        "train": BRCA_TRAITS * BRCA_SPLITS,
        "predict": BRCA_TRAITS,
        "evaluate": 1,
        "cartography": 1,
        "choose_traits": 1,
        "heterogeneity": 1,
        "survival": 1,
        "qupath": 1,
        "viewer": 1,
        "report_tables": 1,
        "report_images": 1,
        "all": 1,
    }
    # a download's declared output is its status file (ok or fail), which tile_slide reads: a slide the GDC never
    # gives becomes a fail QC row instead of stopping the cohort
    status_files = {f"resources/tcga_brca/downloads/{s['file_name']}.tsv" for s in slides}
    assert {job["output"] for job in planned_jobs(process.stdout, "gdc_download")} == status_files
    assert {job["input"] for job in planned_jobs(process.stdout, "tile_slide")} == status_files
    assert {job["output"] for job in planned_jobs(process.stdout, "fetch_input")} == {
        "resources/tcga_brca/expression/EBPlusPlusAdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv",
        "resources/tcga_brca/expression/pancanMiRs_EBadjOnProtocolPlatformWithoutRepsWithUnCorrectMiRs_08_04_16.csv",
        "resources/tcga_brca/clinical/TCGA-CDR-SupplementalTableS1.xlsx",
        "resources/tcga_brca/clinical/brca_tcga_pan_can_atlas_2018.data_clinical_patient.txt",
        "resources/tcga_brca/clinical/brca_tcga.data_clinical_patient.txt",
    }


def test_manifest_in_config_replaces_the_query_and_exclusions_are_listed(
    brca_manifest: Path, tmp_path: Path
) -> None:
    rows = sorted(manifest_rows(brca_manifest), key=lambda row: row["filename"])
    by_file_name, by_slide_id = rows[3]["filename"], rows[500]["filename"].removesuffix(".svs")
    with GdcServer(listed_slides(brca_manifest)) as server:
        workdir = make_workdir(
            tmp_path,
            {"slides": {"gdc": {"api": server.url, "manifest": str(brca_manifest), "retries": 0},
                        "exclude": [by_file_name, by_slide_id]}},
            base="tcga_brca.yaml",
        )
        snakemake(workdir, "--cores", "1", "--until", "slide_table")
        assert server.requests == [], [r.path for r in server.requests]
    # the manifest is what the user listed; the slide table leaves the excluded slides out and lists them, with
    # the metastatic slide, in slides_excluded.tsv (qc_summary makes them fail rows)
    assert manifest_rows(workdir / "resources/tcga_brca/manifest.tsv") == rows
    header, rejected = read_tsv(workdir / "resources/tcga_brca/manifest_rejected.tsv")
    assert (header, rejected) == (["source", "line", "file_id", "file_name", "problem"], [])
    metastatic = [row["filename"] for row in rows if row["filename"][13:15] == "06"]
    kept = [row for i, row in enumerate(rows) if i not in (3, 500) and row["filename"] not in metastatic]
    _, slides = read_tsv(workdir / "resources/tcga_brca/slides.tsv")
    assert [s["file_name"] for s in slides] == [row["filename"] for row in kept]
    assert by_file_name not in {s["file_name"] for s in slides}
    assert by_slide_id not in {s["slide_id"] for s in slides}
    header, excluded = read_tsv(workdir / "resources/tcga_brca/slides_excluded.tsv")
    assert header == ["slide_id", "patient_id", "file_name", "reason"]
    reasons = {row["file_name"]: row["reason"] for row in excluded}
    assert reasons[by_file_name] == reasons[f"{by_slide_id}.svs"] == "excluded by config"
    assert [reasons[name] for name in metastatic] == ["sample type 06 (Metastatic) is not a primary tumour"]
    assert len(excluded) == 3


LOCAL_SLIDES = {
    "patient7_slideA": ("patient7", "slides/CMU-1-Small-Region.svs"),
    "patient9_slideB": ("patient9", "slides/unreadable.svs"),
}


@pytest.fixture()
def local_cohort(shared_data: Path, tmp_path: Path) -> SimpleNamespace:
    """A user's own cohort: two real slides listed by absolute path in a table with non-TCGA names, and
    expression and clinical tables for its two patients; `.workdir(**overrides)` lays out a run of it."""
    for _, relative in LOCAL_SLIDES.values():
        if not (shared_data / relative).is_file():
            pytest.skip(f"{shared_data / relative} is absent")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    table = inputs / "slides.tsv"
    table.write_text("slide_id\tpatient_id\tpath\n" + "".join(
        f"{slide_id}\t{patient}\t{shared_data / relative}\n" for slide_id, (patient, relative) in LOCAL_SLIDES.items()
    ))
    mrna = inputs / "mrna.tsv"
    mrna.write_text("gene_id\tpatient7\tpatient9\nMKI67|4288\t812.5\t97.25\n")
    mirna = inputs / "mirna.csv"
    mirna.write_text("Genes,Correction,patient7,patient9\nhsa-miR-17-5p,Uncorrected,11.5,3.75\n")
    clinical = inputs / "data_clinical_patient.txt"
    clinical.write_text(
        "#Patient Identifier\tOverall Survival Status\tOverall Survival (Months)\n"
        "#Identifier\tStatus\tMonths\n#STRING\tSTRING\tNUMBER\n#1\t1\t1\n"
        "PATIENT_ID\tOS_STATUS\tOS_MONTHS\npatient7\t1:DECEASED\t20.5\npatient9\t0:LIVING\t61.0\n"
    )
    cohort = {
        "cohort": "own",
        "slides": {"source": "local", "local": {"table": str(table)}},
        "expression": {"mrna": str(mrna), "mirna": str(mirna)},
        "clinical": {"path": str(clinical), "format": "cbioportal"},
    }
    return SimpleNamespace(
        workdir=lambda **overrides: make_workdir(tmp_path / "run", {**cohort, **overrides}),
        shared_data=shared_data,
    )


def test_local_table_cohort_plans_one_tiling_job_per_slide(local_cohort) -> None:
    workdir = local_cohort.workdir()
    snakemake(workdir, "--cores", "1", "--until", "slide_table")
    header, slides = read_tsv(workdir / "resources/own/slides.tsv")
    assert header == SLIDE_TABLE_HEADER
    assert [(s["slide_id"], s["patient_id"], s["path"], s["file_name"], s["md5"], s["size"], s["file_id"])
            for s in slides] == [
        (slide_id, patient, str(local_cohort.shared_data / relative), Path(relative).name, "", "", "")
        for slide_id, (patient, relative) in sorted(LOCAL_SLIDES.items())
    ]
    assert not (workdir / "resources/own/manifest.tsv").exists()

    process = snakemake(workdir, "-n", "--cores", "1", "--until", "qc_summary", "labels_summary", "clinical")
    # No download and no fetch: the slides, matrices and clinical table are the user's local files.
    assert scheduled_rules(process.stdout) == {
        "tile_slide": 2, "qc_summary": 1, "labels_trait": 2, "labels_summary": 1, "clinical": 1,
    }
    planned = {job["wildcards"]: job["input"] for job in planned_jobs(process.stdout, "tile_slide")}
    assert planned == {f"slide_id={s['slide_id']}": s["path"] for s in slides}


def run_local_qc(local_cohort, tile_px: int) -> dict[str, dict[str, str]]:
    """Tile the local cohort for real up to the QC checkpoint; its qc/slides.tsv rows by slide id."""
    workdir = local_cohort.workdir(tiling={"tile_px": tile_px})
    snakemake(workdir, "--cores", "2", "--until", "qc_summary")
    header, qc = read_tsv(workdir / "results/own/qc/slides.tsv")
    assert header == QC_HEADER
    for slide_id in LOCAL_SLIDES:
        assert (workdir / f"results/own/tiles/{slide_id}.h5").is_file()
        assert (workdir / f"results/own/qc/thumbnails/{slide_id}.png").is_file()
    return {row["slide_id"]: row for row in qc}


def test_local_table_cohort_qc_passes_the_real_slide_and_fails_the_unreadable_one(local_cohort) -> None:
    by_slide = run_local_qc(local_cohort, tile_px=512)  # the paper's tiles
    assert set(by_slide) == set(LOCAL_SLIDES)
    good, bad = by_slide["patient7_slideA"], by_slide["patient9_slideB"]
    assert (good["patient_id"], good["status"], good["reason"]) == ("patient7", "pass", "")
    assert (int(good["width"]), int(good["height"]), float(good["mpp"])) == (2220, 2967, 0.499)
    assert int(good["n_tiles"]) > 0
    assert (bad["patient_id"], bad["status"], int(bad["n_tiles"])) == ("patient9", "fail", 0)
    assert "OpenSlideError" in bad["reason"]


def test_local_cohort_with_demo_tile_size_passes_the_clean_slide(local_cohort) -> None:
    by_slide = run_local_qc(local_cohort, tile_px=96)
    assert by_slide["patient7_slideA"]["status"] == "pass", by_slide["patient7_slideA"]["reason"]


def test_editing_the_local_table_replans_the_slide_table(local_cohort) -> None:
    workdir = local_cohort.workdir()
    snakemake(workdir, "--cores", "1", "--until", "slide_table")
    table = Path(yaml.safe_load((workdir / "config/config.yaml").read_text())["slides"]["local"]["table"])
    table.write_text("".join(table.read_text().splitlines(keepends=True)[:2]))  # drop patient9_slideB
    process = snakemake(workdir, "-n", "--cores", "1", "--until", "slide_table")
    assert scheduled_rules(process.stdout) == {"slide_table": 1}


def with_overrides(workdir: Path, name: str, overrides: dict) -> Path:
    """The run's own config with nested overrides, written to config/{name}.yaml for `--configfile`."""
    settings = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    path = workdir / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(deep_update(settings, overrides), sort_keys=False))
    return path


def test_gdc_runtime_settings_rerun_no_discovery(discovered_brca) -> None:
    """Retries, page size and the token file change how the GDC is asked, not which slides it lists."""
    workdir = discovered_brca.workdir
    config = with_overrides(workdir, "gdc_runtime", {"slides": {"gdc": {
        "retries": 3, "page_size": 50, "token_file": "gdc-token.txt", "max_concurrent": 2}}})
    process = snakemake(workdir, "-n", "--cores", "1", "--until", "slide_table", "--configfile", str(config))
    assert scheduled_rules(process.stdout) == {}


def test_gdc_project_reruns_discovery(discovered_brca) -> None:
    workdir = discovered_brca.workdir
    config = with_overrides(workdir, "gdc_project", {"slides": {"gdc": {"project": "TCGA-LUAD"}}})
    process = snakemake(workdir, "-n", "--cores", "1", "--until", "slide_table", "--configfile", str(config))
    assert scheduled_rules(process.stdout) == {"gdc_manifest": 1, "slide_table": 1}


def cdr_workbook(path: Path) -> bytes:
    """A small TCGA-CDR table as the published xlsx, OS.time in days; it has neither PAM50 nor ER status."""
    import pandas as pd

    pd.DataFrame({
        "bcr_patient_barcode": ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0003"],
        "OS": [1, 0, 0], "OS.time": [365.25, 730.5, 60.875], "Redaction": ["", "", ""],
    }).to_excel(path, index=False)
    return path.read_bytes()


def test_tcga_brca_covariates_fetched_by_url_reach_clinical_tsv(tmp_path: Path) -> None:
    """The shipped TCGA-BRCA clinical section run for real: the CDR by GDC id (with the token), its two
    cBioPortal covariate members from .tar.gz archives by URL (without it), merged into clinical.tsv."""
    from gdc_server import tar_archive

    brca = yaml.safe_load((Path(__file__).parents[1] / "config" / "tcga_brca.yaml").read_text())
    cdr_id = brca["clinical"]["path"]["gdc_file_id"]
    archives = {
        "brca_tcga_pan_can_atlas_2018": "#Patient\tSubtype\n#a\tb\n#STRING\tSTRING\n#1\t1\nPATIENT_ID\tSUBTYPE\n"
        "TCGA-AA-0001\tBRCA_LumA\nTCGA-AA-0002\tBRCA_Basal\nTCGA-AA-0003\t\n",
        "brca_tcga": "#P\tER\tPR\tHER2\n#a\tb\tc\td\n#STRING\tSTRING\tSTRING\tSTRING\n#1\t1\t1\t1\n"
        "PATIENT_ID\tER_STATUS_BY_IHC\tPR_STATUS_BY_IHC\tIHC_HER2\n"
        "TCGA-AA-0001\tPositive\tPositive\tNegative\nTCGA-AA-0002\tNegative\tNegative\tEquivocal\n",
    }
    token = tmp_path / "token.txt"
    token.write_text("secret-token\n")
    with GdcServer([ServedFile(cdr_id, "TCGA-CDR-SupplementalTableS1.xlsx", cdr_workbook(tmp_path / "cdr.xlsx"),
                               data_type="Clinical Supplement")], token="secret-token") as server:
        covariates = []
        for entry in brca["clinical"]["covariates"]:
            study = entry["source"]["member"].split("/")[0]
            archive = tar_archive({f"{study}/meta_study.txt": b"x\n",
                                   entry["source"]["member"]: archives[study].encode()})
            url = server.add_url(f"/{study}.tar.gz", ServedFile(study, f"{study}.tar.gz", archive))
            covariates.append({**entry, "source": {**entry["source"], "url": url}})
        workdir = make_workdir(tmp_path / "run", {
            "slides": {"gdc": {"api": server.url, "retries": 1, "token_file": str(token)}},
            "clinical": {"covariates": covariates},
        }, base="tcga_brca.yaml")
        snakemake(workdir, "--cores", "1", "--until", "clinical")
        url_requests = [r for r in server.requests if r.path.endswith(".tar.gz")]
        data_requests = server.data_requests(cdr_id)
    assert len(url_requests) == 2 and all("X-Auth-Token" not in r.headers for r in url_requests)
    assert len(data_requests) == 1 and data_requests[0].headers.get("X-Auth-Token") == "secret-token"
    header, rows = read_tsv(workdir / "results/tcga_brca/survival/clinical.tsv")
    assert [(r["patient_id"], r["subtype"], r["er_status"], r["pr_status"], r["her2_status"]) for r in rows] == [
        ("TCGA-AA-0001", "BRCA_LumA", "positive", "positive", "negative"),
        ("TCGA-AA-0002", "BRCA_Basal", "negative", "negative", ""),
        ("TCGA-AA-0003", "", "", "", ""),
    ]
    assert [r["os_months"] for r in rows] == ["12", "24", "2"]
    clinical = workdir / "resources/tcga_brca/clinical"
    assert sorted(p.name for p in clinical.iterdir()) == sorted(
        ["archives", "TCGA-CDR-SupplementalTableS1.xlsx"] + [e["source"]["file_name"] for e in covariates])
