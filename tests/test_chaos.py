"""Chaos test: a 32-slide cohort from a user manifest, served by the local GDC look-alike with injected faults
(a 503 burst, connections cut mid-body, one bad md5, one file that 404s by id and by name, one hostile manifest
name), run to QC, labels and splits while Snakemake and its jobs are SIGKILLed at seeded random moments, then
rerun with the same command until it finishes. Its outputs must equal those of an undisturbed run of the same
cohort (same faults, no kills), no partial or temporary file may be left, and the server must never have sent a
byte twice except where a kill can have lost it."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import psutil
import pytest

from gdc_server import GdcServer, ServedFile, ServedRange
from test_workflow_failures import read_rows
from workflow_runner import SNAKEMAKE, make_workdir, scheduled_rules, snakemake
from workflow_scripts.learning.labels import read_labels
from workflow_scripts.learning.splits import read_splits
from workflow_scripts.slides.qc_table import read_failures, read_qc_table
from workflow_scripts.slides.tilestore import TileStore

pytestmark = [pytest.mark.slow]

COHORT = "chaos"
SLIDE = "slides/CMU-1-Small-Region.svs"  # real H&E, 1.9 MB: each copy tiles in seconds at 256 px
SEED = int(os.environ.get("CHAOS_SEED", "20240611"))
N_SLIDES = 32  # slides listed in the manifest (plus one hostile row)
BAD_MD5 = "0" * 32
HOSTILE = "../../etc/passwd.svs"
RETRIES = 3
KILLS = ["group", "group", "child", "child", "child", "child"]  # shuffled by the seed; `group` = Snakemake itself
KILL_DELAY_S = (2.0, 16.0)  # seconds after the attempt starts (or after the previous kill) before each kill
MAX_ATTEMPTS = len(KILLS) + 3
TRAITS = [{"name": "MKI67", "source": "mrna", "id": "MKI67|4288"},
          {"name": "miR-17-5p", "source": "mirna", "id": "hsa-miR-17-5p"}]
TARGETS = [f"results/{COHORT}/qc/slides.tsv", f"results/{COHORT}/qc/failures.tsv",
           f"results/{COHORT}/splits/splits.tsv", f"results/{COHORT}/labels/labels.tsv"]


def name(patient: int) -> str:
    """A TCGA diagnostic slide file name of patient `patient`."""
    return f"TCGA-AC-{patient:04d}-01Z-00-DX1.{patient:08X}-1E73-40D4-834A-46E3471D84A3.svs"


def slide_id(file_name: str) -> str:
    return file_name.removesuffix(".svs")


NAMES = [name(patient) for patient in range(1, N_SLIDES + 1)]
BAD_DOWNLOAD, MISSING = NAMES[4], NAMES[9]  # the GDC's bytes never match its md5; no such file at the GDC
BURST = NAMES[10:18]  # answer 503 (Retry-After: 1) twice before serving
CUT = NAMES[18:24]  # the first response (two for the first of them) drops the connection mid-body
PASSING = [n for n in NAMES if n not in (BAD_DOWNLOAD, MISSING)]


def served_files(content: bytes) -> list[ServedFile]:
    """The cohort as the fake GDC holds it: each copy made unique by trailing bytes (TIFF readers ignore them),
    sent in slow chunks so that kills land mid-download, with the faults of the module docstring."""
    files = []
    for index, file_name in enumerate(NAMES):
        if file_name == MISSING:
            continue
        served = ServedFile(f"chaos-{index:02d}", file_name, content + f"chaos copy {index}".encode(),
                            submitter_id=file_name[:12], send_chunk=256 * 1024, send_delay_s=0.05)
        if file_name in BURST:
            served.fail_first, served.fail_status, served.retry_after = 2, 503, "1"
        if file_name in CUT:
            served.cut_after = 300_000 + 100_000 * CUT.index(file_name)
            served.cut_times = 2 if file_name == CUT[0] else 1
        files.append(served)
    return files


def write_inputs(folder: Path, files: list[ServedFile], content: bytes) -> dict:
    """The user manifest (bad md5, missing file, hostile name) and the expression and clinical tables: the config."""
    folder.mkdir(parents=True, exist_ok=True)
    by_name = {f.file_name: f for f in files}
    lines = ["id\tfilename\tmd5\tsize\tstate"]
    for index, file_name in enumerate(NAMES):
        if file_name == MISSING:
            lines.append(f"chaos-missing\t{file_name}\t{hashlib.md5(b'gone').hexdigest()}\t{len(content)}\treleased")
            continue
        served = by_name[file_name]
        md5 = BAD_MD5 if file_name == BAD_DOWNLOAD else served.md5
        lines.append(f"{served.file_id}\t{file_name}\t{md5}\t{served.size}\treleased")
    lines.append(f"evil-id\t{HOSTILE}\t{files[0].md5}\t10\treleased")
    (folder / "manifest.txt").write_text("\n".join(lines) + "\n")
    rng = random.Random(SEED)
    barcodes = [f"{file_name[:12]}-01A-11R-A00Z-07" for file_name in NAMES]
    mrna = ["gene_id\t" + "\t".join(barcodes),
            "MKI67|4288\t" + "\t".join(f"{rng.uniform(10, 900):.3f}" for _ in barcodes)]
    (folder / "mrna.tsv").write_text("\n".join(mrna) + "\n")
    mirna = ["Genes,Correction," + ",".join(barcodes),
             "hsa-miR-17-5p,Uncorrected," + ",".join(f"{rng.uniform(1, 20):.3f}" for _ in barcodes)]
    (folder / "mirna.csv").write_text("\n".join(mirna) + "\n")
    clinical = ["#Patient Identifier\tOverall Survival Status\tOverall Survival (Months)",
                "#Identifier\tStatus\tMonths", "#STRING\tSTRING\tNUMBER", "#1\t1\t1",
                "PATIENT_ID\tOS_STATUS\tOS_MONTHS"]
    clinical += [f"{n[:12]}\t{rng.choice(['0:LIVING', '1:DECEASED'])}\t{rng.uniform(1, 100):.1f}" for n in NAMES]
    (folder / "data_clinical_patient.txt").write_text("\n".join(clinical) + "\n")
    return {
        "cohort": COHORT,
        "slides": {"source": "gdc", "gdc": {"manifest": str(folder / "manifest.txt"), "retries": RETRIES}},
        "expression": {"mrna": str(folder / "mrna.tsv"), "mirna": str(folder / "mirna.csv")},
        "clinical": {"path": str(folder / "data_clinical_patient.txt"), "format": "cbioportal"},
        "traits": TRAITS,
        "tiling": {"tile_px": 256, "threads": 1},
    }


@dataclass
class Kill:
    kind: str  # group: SIGKILL Snakemake's process group (and any job left outside it); child: one job process
    at: float  # time.monotonic() of the kill
    victim: str  # what was killed, for the failure message


@dataclass
class ChaosRun:
    attempts: list[float] = field(default_factory=list)  # seconds each attempt took
    kills: list[Kill] = field(default_factory=list)
    returncodes: list[int] = field(default_factory=list)
    log: str = ""


def job_processes(root: psutil.Process) -> list[psutil.Process]:
    """The job processes below Snakemake: what runs a rule's script (`.snakemake/scripts/...`)."""
    jobs = []
    for child in root.children(recursive=True):
        try:
            if any(".snakemake/scripts/" in part for part in child.cmdline()):
                jobs.append(child)
        except psutil.Error:
            continue
    return sorted(jobs, key=lambda p: p.pid)


def kill_group(process: subprocess.Popen) -> str:
    """SIGKILL Snakemake's process group, then any of its descendants that left the group (a crashed node)."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    os.killpg(process.pid, signal.SIGKILL)
    for child in descendants:
        try:
            child.kill()
        except psutil.Error:
            pass
    process.wait()
    psutil.wait_procs(descendants, timeout=10)
    return f"snakemake (pid {process.pid}) and {len(descendants)} descendant(s)"


def kill_child(process: subprocess.Popen, rng: random.Random) -> str | None:
    """SIGKILL one running job process (chosen by the seeded generator); None when no job runs within 5 s."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and process.poll() is None:
        try:
            jobs = job_processes(psutil.Process(process.pid))
        except psutil.Error:
            return None
        if jobs:
            victim = jobs[rng.randrange(len(jobs))]
            try:
                what = " ".join(victim.cmdline()[-1:])
                victim.kill()
            except psutil.Error:
                continue
            return f"job pid {victim.pid} ({what})"
        time.sleep(0.1)
    return None


def run_with_chaos(workdir: Path, args: list[str], seed: int) -> ChaosRun:
    """Run Snakemake (own process group) with the seeded kill schedule, rerunning the same command until it
    succeeds; after a kill of Snakemake itself, `--unlock` first (its lock survives a SIGKILL)."""
    rng = random.Random(seed)
    schedule = list(KILLS)
    rng.shuffle(schedule)
    pending = [(kind, rng.uniform(*KILL_DELAY_S)) for kind in schedule]
    run = ChaosRun()
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"), TF_CPP_MIN_LOG_LEVEL="2")
    for attempt in range(MAX_ATTEMPTS):
        started = time.monotonic()
        with open(workdir / f"chaos_attempt_{attempt}.log", "w") as log:
            process = subprocess.Popen([SNAKEMAKE, *args], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            killed_snakemake = False
            try:
                while pending and process.poll() is None:
                    kind, delay = pending[0]
                    try:
                        process.wait(timeout=delay)
                        break  # finished before the kill: the kill moves to the next attempt
                    except subprocess.TimeoutExpired:
                        pass
                    pending.pop(0)
                    if kind == "group":
                        run.kills.append(Kill(kind, time.monotonic(), kill_group(process)))
                        killed_snakemake = True
                        break
                    victim = kill_child(process, rng)
                    if victim is not None:
                        run.kills.append(Kill(kind, time.monotonic(), victim))
                process.wait(timeout=600)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        run.attempts.append(time.monotonic() - started)
        run.returncodes.append(process.returncode)
        run.log += f"\n--- attempt {attempt}: rc {process.returncode}\n" + (
            workdir / f"chaos_attempt_{attempt}.log").read_text()[-3000:]
        if process.returncode == 0 and not killed_snakemake:
            return run
        if killed_snakemake:
            snakemake(workdir, "--unlock", *args)
    raise AssertionError(f"no successful run in {MAX_ATTEMPTS} attempts; kills {run.kills}\n{run.log[-12000:]}")


def run_cohort(root: Path, content: bytes, chaos: bool) -> SimpleNamespace:
    files = served_files(content)
    config = write_inputs(root / "inputs", files, content)
    with GdcServer(files) as server:
        config["slides"]["gdc"]["api"] = server.url
        workdir = make_workdir(root / "run", config, base="tcga_brca.yaml")
        args = ["--cores", "2", *TARGETS]
        started = time.monotonic()
        if chaos:
            run = run_with_chaos(workdir, args, SEED)
        else:
            snakemake(workdir, *args)
            run = ChaosRun()
        elapsed = time.monotonic() - started
        dry = snakemake(workdir, "-n", *args)
    return SimpleNamespace(workdir=workdir, server=server, files={f.file_name: f for f in files}, run=run,
                           elapsed=elapsed, dry=dry.stdout, resources=workdir / "resources" / COHORT,
                           results=workdir / "results" / COHORT)


@pytest.fixture(scope="module")
def cohorts(shared_data: Path, tmp_path_factory) -> SimpleNamespace:
    """The undisturbed run and the chaos run of the same cohort, each against its own fresh server."""
    if not (shared_data / SLIDE).is_file():
        pytest.skip(f"{shared_data / SLIDE} is absent")
    content = (shared_data / SLIDE).read_bytes()
    root = tmp_path_factory.mktemp("chaos")
    calm = run_cohort(root / "calm", content, chaos=False)
    chaos = run_cohort(root / "chaos", content, chaos=True)
    print(f"\nchaos test (seed {SEED}): undisturbed run {calm.elapsed:.1f} s; chaos run {chaos.elapsed:.1f} s in "
          f"{len(chaos.run.attempts)} attempts {[round(t, 1) for t in chaos.run.attempts]} rc "
          f"{chaos.run.returncodes}; kills: " + "; ".join(f"{k.kind} {k.victim}" for k in chaos.run.kills))
    resent = {name: sum(min(old.end, new.end) - new.start for old, new in overlaps(chaos.server.ranges_of(f.file_id)))
              for name, f in chaos.files.items() if name != BAD_DOWNLOAD}
    print(f"bytes sent twice after kills: {sum(resent.values())} over {sum(v > 0 for v in resent.values())} slides")
    return SimpleNamespace(calm=calm, chaos=chaos)


def test_the_chaos_run_was_disturbed_and_finished(cohorts) -> None:
    run = cohorts.chaos.run
    assert any(kill.kind == "group" for kill in run.kills), run.kills
    assert run.returncodes[-1] == 0 and len(run.attempts) >= 2, run.returncodes
    for cohort in (cohorts.calm, cohorts.chaos):
        assert scheduled_rules(cohort.dry) == {}, cohort.dry[-3000:]


def qc_table(cohort) -> pd.DataFrame:
    return read_qc_table(cohort.results / "qc" / "slides.tsv").sort_values("slide_id").reset_index(drop=True)


def test_qc_and_failures_tables_equal_the_undisturbed_run(cohorts) -> None:
    pd.testing.assert_frame_equal(qc_table(cohorts.chaos), qc_table(cohorts.calm))
    failures = [read_failures(c.results / "qc" / "failures.tsv").sort_values("slide_id").reset_index(drop=True)
                for c in (cohorts.chaos, cohorts.calm)]
    pd.testing.assert_frame_equal(*failures)


def test_bad_md5_and_missing_slides_are_fail_rows_and_the_rest_pass(cohorts) -> None:
    for cohort in (cohorts.calm, cohorts.chaos):
        qc = qc_table(cohort).set_index("slide_id")
        assert sorted(qc.index) == sorted(slide_id(n) for n in NAMES)
        for file_name in PASSING:
            assert qc.loc[slide_id(file_name), "status"] == "pass", qc.loc[slide_id(file_name), "reason"]
        bad = qc.loc[slide_id(BAD_DOWNLOAD)]
        assert (bad["status"], bad["n_tiles"]) == ("fail", 0)
        assert bad["reason"].startswith("download failed: ") and "md5" in bad["reason"] and BAD_MD5 in bad["reason"]
        missing = qc.loc[slide_id(MISSING)]
        assert (missing["status"], missing["n_tiles"]) == ("fail", 0)
        assert missing["reason"].startswith("download failed: ") and "not found" in missing["reason"]
        assert "chaos-missing" in missing["reason"]
        failures = read_failures(cohort.results / "qc" / "failures.tsv")
        assert sorted(zip(failures["slide_id"], failures["stage"])) == sorted(
            [(slide_id(BAD_DOWNLOAD), "download"), (slide_id(MISSING), "download")])


def test_hostile_manifest_row_is_rejected(cohorts) -> None:
    for cohort in (cohorts.calm, cohorts.chaos):
        [rejected] = read_rows(cohort.resources / "manifest_rejected.tsv")
        assert (rejected["file_id"], rejected["file_name"]) == ("evil-id", HOSTILE)
        assert "path separator" in rejected["problem"]
        assert sorted(row["filename"] for row in read_rows(cohort.resources / "manifest.tsv")) == sorted(NAMES)


def tile_digest(path: Path) -> tuple[list[list[int]], list[str]]:
    with TileStore(path) as store:
        return store.coords.tolist(), [hashlib.md5(store.read_encoded(i)).hexdigest() for i in range(store.n_tiles)]


def test_tile_stores_equal_the_undisturbed_run(cohorts) -> None:
    calm, chaos = cohorts.calm, cohorts.chaos
    stores = sorted(p.name for p in (calm.results / "tiles").glob("*.h5"))
    assert stores == sorted(p.name for p in (chaos.results / "tiles").glob("*.h5"))
    assert stores == sorted(f"{slide_id(n)}.h5" for n in NAMES)
    for store in stores:
        expected = tile_digest(calm.results / "tiles" / store)
        assert tile_digest(chaos.results / "tiles" / store) == expected, store
        if store in {f"{slide_id(n)}.h5" for n in PASSING}:
            assert len(expected[0]) > 0, store


def test_labels_and_splits_equal_the_undisturbed_run(cohorts) -> None:
    calm, chaos = cohorts.calm, cohorts.chaos
    for path in ["labels/labels.tsv", *(f"labels/{t['name']}.tsv" for t in TRAITS)]:
        pd.testing.assert_frame_equal(read_labels(chaos.results / path), read_labels(calm.results / path))
    splits = read_splits(calm.results / "splits" / "splits.tsv")
    pd.testing.assert_frame_equal(read_splits(chaos.results / "splits" / "splits.tsv"), splits)
    assert set(splits["patient_id"]) == {n[:12] for n in PASSING}


def test_no_partial_or_temporary_file_is_left(cohorts) -> None:
    for cohort in (cohorts.calm, cohorts.chaos):
        left = [p for folder in ("resources", "results") for p in (cohort.workdir / folder).rglob(".*")
                if p.name.endswith((".part", ".tmp"))]
        assert left == []
        for file_name in PASSING:  # the slides themselves arrived whole
            slide = cohort.resources / "slides" / file_name
            assert hashlib.md5(slide.read_bytes()).hexdigest() == cohort.files[file_name].md5
        for file_name in (BAD_DOWNLOAD, MISSING):
            assert not (cohort.resources / "slides" / file_name).exists()


def overlaps(ranges: list[ServedRange]) -> list[tuple[ServedRange, ServedRange]]:
    """(earlier, later) pairs where a later body began before the end of what had already been sent, `earlier`
    being the latest body that sent the later one's first byte."""
    found = []
    for k, later in enumerate(ranges):
        senders = [r for r in ranges[:k] if r.start <= later.start < r.end]
        if senders:
            found.append((senders[-1], later))
    return found


def test_no_byte_is_sent_twice_except_where_a_kill_can_have_lost_it(cohorts) -> None:
    """What the server sent for each slide, in request order. The client resumes `.part` files by Range, so it
    asks again for a byte the server already sent only if it lost that byte, and only a kill loses received
    bytes: a cut connection delivers every byte written before the server's shutdown, and the client appends
    them to the part file before it retries (the md5 mismatch of BAD_DOWNLOAD deletes its part file on purpose,
    so that slide is checked apart). Hence, for every other slide, (1) no body starts after the bytes already
    sent (no gap: the Range asks for the first byte the client lacks), (2) in the undisturbed run no two bodies
    overlap and the bytes sent add up to the file size exactly, and (3) in the chaos run a body that starts
    inside an earlier one comes after a kill that happened between the two requests. The sent counts are taken
    before each write, so they never undercount what the client can have received; (3) holds for any kill
    moment, and bytes re-sent are at most what was in flight when a process died."""
    for label, cohort in (("undisturbed", cohorts.calm), ("chaos", cohorts.chaos)):
        kills = [kill.at for kill in cohort.run.kills]
        for file_name, served in cohort.files.items():
            ranges = cohort.server.ranges_of(served.file_id)
            if file_name == BAD_DOWNLOAD:
                # every attempt starts over (the md5 mismatch deletes the part file), unless a kill during an attempt
                # left its part file, which the next one resumes (seen once in a .ci/run under load)
                assert ranges and ranges[0].start == 0, (label, ranges)
                for before, body in zip(ranges, ranges[1:]):
                    killed = any(before.requested_at < at < body.requested_at for at in kills)
                    assert body.start == 0 or killed, (label, ranges, cohort.run.kills)
                assert sum(r.end == served.size for r in ranges) >= RETRIES + 1, (label, ranges)
                continue
            assert ranges and ranges[0].start == 0, (label, file_name, ranges)
            for k, body in enumerate(ranges[1:], start=1):
                assert body.start <= max(r.end for r in ranges[:k]), (label, file_name, ranges)
            assert max(r.end for r in ranges) == served.size, (label, file_name, ranges)
            if file_name in CUT:
                assert sum(r.cut for r in ranges) == (2 if file_name == CUT[0] else 1), (label, file_name, ranges)
            twice = overlaps(ranges)
            if label == "undisturbed":
                assert twice == [] and sum(r.sent for r in ranges) == served.size, (file_name, ranges)
            for earlier, later in twice:
                assert any(earlier.requested_at < at < later.requested_at for at in kills), (
                    label, file_name, earlier, later, cohort.run.kills)
        assert cohort.server.ranges_of("chaos-missing") == []
