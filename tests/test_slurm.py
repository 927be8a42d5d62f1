"""The Slurm profile against a real one-node Slurm (slurmctld + slurmd + MUNGE on 127.0.0.1).

Needs root and the Debian packages from .ci/install_slurm.sh; skips otherwise. The cluster rig
(tests/slurm/cluster.py) starts every daemon itself and stops them after the module.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from slurm.cluster import SLURM_CONF_DIR, local_slurm, missing_requirements, processes_holding
from slurm.snakemake_run import (
    REPO_ROOT,
    TINY_SNAKEFILE,
    failure_report,
    gpu_request,
    run_snakemake,
    sbatch_call_for,
    scontrol_fields,
    slurm_profile_args,
    visible_devices,
)
from workflow_runner import make_workdir
from workflow_scripts.slides.qc_table import read_passed_slides

pytestmark = [pytest.mark.slurm]  # `make test` runs a file on one worker (--dist loadfile): one cluster at a time

WORKFLOW_TIMEOUT_S = 300
DEMO_TIMEOUT_S = 1800
DEMO_CONFIG = REPO_ROOT / "tests" / "slurm" / "demo_config.yaml"
DEMO_PROFILE = REPO_ROOT / "tests" / "slurm" / "profile_demo"


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running test cluster for the module; stopping it fails if any of its processes survive."""
    missing = missing_requirements()
    if missing:
        pytest.skip("real Slurm unavailable: " + "; ".join(missing) + " (run .ci/install_slurm.sh as root)")
    with local_slurm() as cluster:
        yield cluster


def _pid_alive(pid: int) -> bool:
    """Whether a process id still names a running (non-zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_cluster_runs_gpu_job_and_stops_without_leftovers():
    """The rig itself: a --gpus=1 batch job sees CUDA_VISIBLE_DEVICES, and stopping leaves nothing behind."""
    missing = missing_requirements()
    if missing:
        pytest.skip("real Slurm unavailable: " + "; ".join(missing))
    conf = SLURM_CONF_DIR / "slurm.conf"
    conf_before = conf.read_bytes() if conf.exists() else None
    with local_slurm() as cluster:
        node = subprocess.run(
            ["scontrol", "show", "node", cluster.node_name], capture_output=True, text=True, check=True
        )
        assert "Gres=gpu:1" in node.stdout
        output = cluster.run_dir / "gpu-job.out"
        subprocess.run(
            [
                "sbatch",
                "--wait",
                "--gpus=1",
                "--ntasks=1",
                "--mem=100",
                f"--output={output}",
                "--wrap",
                "env | grep ^CUDA_VISIBLE_DEVICES=",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        assert visible_devices(output.read_text()) == "0"
        daemon_pids = [process.pid for process in cluster.processes.values()]
        run_dir = cluster.run_dir
    assert not [pid for pid in daemon_pids if _pid_alive(pid)]
    assert not processes_holding(run_dir)
    assert not run_dir.exists()
    assert (conf.read_bytes() if conf.exists() else None) == conf_before


def test_tiny_workflow_runs_through_slurm_profile(slurm_cluster, tmp_path):
    """Grouped CPU jobs, GPU jobs (`gpu` and `gres` resources) and a memory retry run as Slurm jobs."""
    log_path = tmp_path / "snakemake.log"
    started = time.monotonic()
    process = run_snakemake(
        tmp_path, ["--snakefile", str(TINY_SNAKEFILE), *slurm_profile_args()], log_path, WORKFLOW_TIMEOUT_S
    )
    elapsed = time.monotonic() - started
    assert process.returncode == 0, failure_report(log_path, tmp_path) + "\n" + slurm_cluster.daemon_logs()
    log = log_path.read_text()

    # Three tile_slide jobs, two per Slurm job (test profile group-components tiling: 2).
    cpu_outputs = [(tmp_path / "cpu" / f"{item}.txt").read_text() for item in "abc"]
    cpu_job_ids = {text.splitlines()[0] for text in cpu_outputs}
    assert len(cpu_job_ids) == 2, cpu_outputs
    assert len(sbatch_call_for(log, "rule_tiling")) == 2
    assert all(visible_devices(text) is None for text in cpu_outputs)

    # GPU requests: resource gpu=1 -> sbatch --gpus=1; resource gres="gpu:1" -> sbatch --gres=gpu:1.
    gpu_calls = sbatch_call_for(log, "rule_gpu_resource")
    gres_calls = sbatch_call_for(log, "rule_gres_resource")
    assert len(gpu_calls) == 1 and " --gpus=1" in gpu_calls[0], gpu_calls
    assert len(gres_calls) == 1 and " --gres=gpu:1" in gres_calls[0], gres_calls
    assert all(" --requeue" in call for call in gpu_calls + gres_calls)
    for name in ("gpu_resource", "gres_resource"):
        recorded = (tmp_path / "gpu" / f"{name}.txt").read_text()
        assert visible_devices(recorded) == "0", recorded
        fields = scontrol_fields(recorded)
        assert gpu_request(fields) == "gres:gpu:1", recorded
        assert fields["Partition"] == slurm_cluster.partition
        assert fields["Comment"] == f"rule_{name}"

    # restart-times with attempt scaling: the failed first attempt asked for 100 MB, the retry 200 MB.
    retry_calls = sbatch_call_for(log, "rule_memory_retry")
    assert [" --mem 100 " in call for call in retry_calls] == [True, False], retry_calls
    assert " --mem 200 " in retry_calls[1]
    assert scontrol_fields((tmp_path / "retry" / "memory.txt").read_text())["MinMemoryNode"] == "200M"
    print(f"tiny workflow through Slurm: {elapsed:.1f} s")


@pytest.mark.slow
def test_demo_workflow_runs_through_slurm_profile(slurm_cluster, tmp_path):
    """The real workflow (12-patient demo, 2 traits x 1 split) completes as Slurm jobs; training and
    inference ask Slurm for a GPU, per-slide tiling is bundled into group jobs."""
    overrides = yaml.safe_load(DEMO_CONFIG.read_text())
    workdir = make_workdir(tmp_path / "run", overrides)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    results = workdir / "results" / config["cohort"]
    log_path = tmp_path / "snakemake.log"
    started = time.monotonic()
    process = run_snakemake(workdir, slurm_profile_args(DEMO_PROFILE), log_path, DEMO_TIMEOUT_S)
    elapsed = time.monotonic() - started
    assert process.returncode == 0, failure_report(log_path, workdir) + "\n" + slurm_cluster.daemon_logs()
    log = log_path.read_text()

    traits = [trait["name"] for trait in config["traits"]]
    n_splits = config["splits"]["n_splits"]
    train_calls = sbatch_call_for(log, "rule_train")
    predict_calls = sbatch_call_for(log, "rule_predict")
    assert len(train_calls) == len(traits) * n_splits, train_calls
    assert len(predict_calls) == len(traits), predict_calls
    assert all(" --gpus=1" in call and " --requeue" in call for call in train_calls + predict_calls)
    for trait in traits:
        for split in range(n_splits):
            assert (results / "models" / trait / f"split_{split}" / "metrics.json").is_file()
            train_log = (workdir / "logs" / config["cohort"] / "train" / trait / f"split_{split}.log").read_text()
            assert "job sees CUDA_VISIBLE_DEVICES=0" in train_log, train_log[-2000:]
            # device cpu (tests/slurm/demo_config.yaml): the granted GPU is hidden before keras is imported
            assert "device cpu: set {'KERAS_BACKEND': 'tensorflow', 'CUDA_VISIBLE_DEVICES': ''}" in train_log
            assert "devices: cpu x1" in train_log, train_log[-2000:]

    n_slides = len((workdir / "resources" / config["cohort"] / "slides.tsv").read_text().splitlines()) - 1
    group_calls = sbatch_call_for(log, "rule_tiling")
    # profile_demo asks for 1 slide per group job; Snakemake 9.27 sometimes regroups the tile_slide jobs it adds after
    # the slide-table checkpoint into a job of 2 (seen once in CI), which the 2-CPU node still takes.
    assert n_slides // 2 <= len(group_calls) <= n_slides, group_calls
    passed = read_passed_slides(results / "qc" / "slides.tsv")
    assert all((results / "tiles" / f"{slide}.h5").is_file() for slide in passed["slide_id"])
    assert not sbatch_call_for(log, "rule_tile_slide")
    assert (results / "heterogeneity" / "hti.tsv").is_file()
    print(f"demo workflow through Slurm: {elapsed:.1f} s")
