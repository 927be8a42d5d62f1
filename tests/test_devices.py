"""Device choice of training jobs: GPUs granted but unusable fail fast with the cause and fix; device cpu trains.

The job tests run the real Snakemake script (workflow_scripts/scripts/train.py) through a one-rule workflow in a
temporary folder, on this GPU-less machine: CUDA_VISIBLE_DEVICES=0 stands for a scheduler's grant of a GPU that the
installed framework (tensorflow-cpu) cannot see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from qc_rows import qc_frame
from test_tiledata import write_signal_stores
from workflow_scripts.learning.backend_setup import (
    JAX_DETERMINISTIC_FLAG,
    backend_environment,
    gpus_requested,
    prepare_backend,
    with_xla_flag,
)
from workflow_scripts.learning.devices import gpu_missing_message, select_devices
from workflow_scripts.learning.labels import write_labels
from workflow_scripts.learning.run_outputs import DEVICE_KEYS, read_metrics_file
from workflow_scripts.learning.splits import write_splits
from workflow_scripts.slides.qc_table import write_qc_table

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
LABELS = [0, 1, 0, 1, 0, 1]  # slides 0-3 train, 4-5 validation
TRAINING = {  # params.training of the job: the keys that change the model
    "input_px": 75, "batch_size": 4, "learning_rate": 0.001, "evals_per_epoch": 2, "lr_patience": 5,
    "lr_factor": 0.1, "stop_patience": 5, "max_evals": 1, "bn_momentum": 0.9, "mixed_precision": "auto",
    "max_val_tiles_per_slide": None, "backend": "tensorflow", "deterministic": True,
}
SNAKEFILE = """
configfile: "config.yaml"

rule train:
    input:
        labels="labels.tsv", splits="splits.tsv", qc="qc.tsv", stores=config["stores"],
    output:
        model="models/model.keras", history="models/history.tsv", metrics="models/metrics.json",
    log:
        "train.log",
    threads: 1
    params:
        training=config["training_params"], threshold=0.5, seed=3, split=0, trait="MKI67",
    script:
        "{script}"
"""


def write_training_job(folder: Path, device: str) -> Path:
    """A one-rule workflow training trait MKI67 split 0 on 6 tiny slides (4 train, 2 validation) with `device`."""
    stores = write_signal_stores(folder / "tiles", LABELS, tiles_per_slide=4)
    patients = [f"P{number}" for number in range(len(LABELS))]
    write_labels(pd.DataFrame({
        "patient_id": patients, "trait": "MKI67", "value": 0.0, "percentile": 0.0,
        "label": pd.array(LABELS, dtype="Int64"), "set": "train_pool", "median_label": 0,
    }), folder / "labels.tsv")
    write_splits(pd.DataFrame({"patient_id": patients, "test": False, "split_0": ["train"] * 4 + ["val"] * 2}),
                 folder / "splits.tsv")
    write_qc_table(qc_frame([
        {"slide_id": store.stem, "patient_id": patient, "status": "pass", "n_tiles": 4}
        for store, patient in zip(stores, patients)
    ]), folder / "qc.tsv")
    config = {
        "stores": [str(store.relative_to(folder)) for store in stores], "training_params": TRAINING,
        "training": {"workers": 1, "predict_batch_size": 8, "device": device},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "Snakefile").write_text(SNAKEFILE.format(script=REPO_ROOT / "workflow_scripts" / "scripts" / "train.py"))
    return folder


def run_training_job(folder: Path, cuda_visible_devices: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run the job's workflow with a CUDA_VISIBLE_DEVICES as a scheduler would set it; return it and its seconds."""
    env = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND", "JAX_PLATFORMS")}
    env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    started = time.monotonic()
    process = subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", "--directory", str(folder), "--snakefile", str(folder / "Snakefile")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    return process, time.monotonic() - started


def test_granted_gpu_that_the_cpu_wheel_cannot_see_fails_fast_with_cause_and_fix(tmp_path: Path) -> None:
    folder = write_training_job(tmp_path, device="auto")
    process, seconds = run_training_job(folder, "0")
    assert process.returncode != 0
    log = (folder / "train.log").read_text()
    assert "job sees CUDA_VISIBLE_DEVICES=0" in log
    assert "GpuUnavailableError: CUDA_VISIBLE_DEVICES='0' names a GPU, but TensorFlow 2.21.0 sees no GPU" in log
    assert "CPU-only wheel (tensorflow-cpu)" in log and "make venv GPU=1" in log and "pip install '.[gpu]'" in log
    assert "training.device: cpu" in log
    # it failed before building a model or reading a tile: no model, no checkpoint, no training log line
    assert not (folder / "models").exists() or not any((folder / "models").iterdir())
    assert "training MKI67 split 0" not in log
    print(f"failed after {seconds:.1f} s (Snakemake start and the TensorFlow import included)")
    assert seconds < 60


def test_device_cpu_hides_the_granted_gpu_and_trains(tmp_path: Path) -> None:
    folder = write_training_job(tmp_path, device="cpu")
    process, _ = run_training_job(folder, "0")
    assert process.returncode == 0, process.stderr[-3000:]
    log = (folder / "train.log").read_text()
    assert "job sees CUDA_VISIBLE_DEVICES=0" in log
    assert "device cpu: set {'KERAS_BACKEND': 'tensorflow', 'CUDA_VISIBLE_DEVICES': ''}" in log
    metrics = read_metrics_file(folder / "models" / "metrics.json", required=DEVICE_KEYS)
    assert (metrics["device"], metrics["n_devices"], metrics["backend"]) == ("cpu", 1, "tensorflow")
    assert metrics["n_evals"] == 1 and (folder / "models" / "model.keras").is_file()
    assert json.loads((folder / "models" / "metrics.json").read_text())["deterministic"] is True


@pytest.mark.parametrize(
    ("value", "requested"),
    [(None, False), ("", False), ("-1", False), ("NoDevFiles", False), ("0", True), ("0,1", True),
     ("GPU-5f2a", True), (" ", False)],
)
def test_which_cuda_visible_devices_values_grant_a_gpu(value: str | None, requested: bool) -> None:
    assert gpus_requested(value) is requested


def test_backend_environment_per_backend_device_and_determinism() -> None:
    assert backend_environment("tensorflow", "auto", True, {}) == {"KERAS_BACKEND": "tensorflow"}
    assert backend_environment("tensorflow", "cpu", True, {}) == {"KERAS_BACKEND": "tensorflow",
                                                                  "CUDA_VISIBLE_DEVICES": ""}
    assert backend_environment("jax", "cpu", False, {}) == {"KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "",
                                                           "JAX_PLATFORMS": "cpu"}
    jax_gpu = backend_environment("jax", "gpu", True, {"XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    assert jax_gpu == {"KERAS_BACKEND": "jax", "XLA_FLAGS": f"--xla_dump_to=/tmp/x {JAX_DETERMINISTIC_FLAG}"}
    with pytest.raises(ValueError, match="training.backend"):
        backend_environment("torch", "auto", True, {})
    with pytest.raises(ValueError, match="training.device"):
        backend_environment("jax", "tpu", True, {})


def test_xla_flags_are_merged_not_repeated() -> None:
    flags = with_xla_flag("--a=1 --xla_gpu_deterministic_ops=false", JAX_DETERMINISTIC_FLAG)
    assert flags == f"--a=1 {JAX_DETERMINISTIC_FLAG}"
    assert with_xla_flag(flags, JAX_DETERMINISTIC_FLAG) == flags


def test_prepare_backend_refuses_when_keras_already_runs_another_backend() -> None:
    import keras

    environ: dict[str, str] = {}
    assert prepare_backend(keras.backend.backend(), "auto", True, environ)["KERAS_BACKEND"] == keras.backend.backend()
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(RuntimeError, match="already imported"):
        prepare_backend(other, "auto", True, {})


def test_gpu_missing_messages_name_cause_and_fix() -> None:
    versions = {"tensorflow": "2.21.0", "jax": "0.10.2"}
    jax_wheel = gpu_missing_message("jax", "auto", "0", True, versions)
    assert "JAX 0.10.2 sees no GPU" in jax_wheel and "make venv GPU=jax" in jax_wheel and "jax_gpu" in jax_wheel
    driver = gpu_missing_message("tensorflow", "gpu", None, False, versions)
    assert driver.startswith("training.device is gpu, but TensorFlow 2.21.0 sees no GPU")
    assert "driver/CUDA mismatch" in driver and "nvidia-smi" in driver and "get_build_info()" in driver
    assert "jax.print_environment_info()" in gpu_missing_message("jax", "gpu", None, False, versions)


def test_select_devices_on_this_cpu_machine() -> None:
    assert select_devices("auto", {}).kind == "cpu"
    assert select_devices("cpu", {"CUDA_VISIBLE_DEVICES": "0"}).names == ("cpu",)
    with pytest.raises(RuntimeError, match="training.device is gpu"):
        select_devices("gpu", {})
