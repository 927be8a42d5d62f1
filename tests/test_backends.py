"""The same tiny training under KERAS_BACKEND=tensorflow and jax (on CPU): agreement, determinism and exact resume.

Keras fixes its backend at import, so each training runs in its own Python process (RUNNER below), which sets the
backend with `prepare_backend` before importing keras, as the job scripts do. Per backend, process A trains from
scratch and keeps its checkpoint as it stood after evaluation 1 (what a job killed there leaves); process B trains
the same configuration from scratch again (bitwise-identical weights: training.deterministic), then resumes a copy
of A's killed checkpoint (bitwise-identical weights to A's uninterrupted run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_tiledata import write_signal_stores
from workflow_scripts.learning.model import load_model
from workflow_scripts.learning.run_outputs import DEVICE_KEYS, HISTORY_COLUMNS, read_history, read_metrics_file
from workflow_scripts.learning.schedule import ScheduleState, update_schedule
from workflow_scripts.learning.settings import TrainingSettings

LABELS = [0, 1, 0, 1, 0, 1]  # slides 0-3 train (4 tiles each), 4-5 validation
SETTINGS = {"input_px": 75, "batch_size": 4, "evals_per_epoch": 2, "lr_patience": 1, "stop_patience": 5,
            "max_evals": 3, "bn_momentum": 0.9, "workers": 1}
RUNNER = """
import json, os, shutil, sys
from pathlib import Path
from workflow_scripts.learning.backend_setup import prepare_backend

backend, stores, jobs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
prepare_backend(backend, "cpu", True)
from workflow_scripts.learning.model import limit_cpu_threads
limit_cpu_threads(1)
from workflow_scripts.learning.settings import RunSpec, TrainingOutputs, TrainingSettings
from workflow_scripts.learning.tiledata import build_tile_index
from workflow_scripts.learning.train import train

settings = TrainingSettings(backend=backend, device="cpu", **json.loads(sys.argv[4]))
indexes = build_tile_index(stores[:4], [0, 1, 0, 1]), build_tile_index(stores[4:], [0, 1])
for folder, resume_from in jobs:
    folder = Path(folder)
    outputs = TrainingOutputs.beside(folder / "model.keras", folder / "history.tsv", folder / "metrics.json")
    if resume_from:
        shutil.copytree(resume_from, outputs.checkpoint)

    def keep_first(step, outputs=outputs, folder=folder):
        if step == 1:
            shutil.copytree(outputs.checkpoint, folder / "killed_after_eval_1")

    train(*indexes, settings, RunSpec("MKI67", 0, 3), outputs, log=lambda line: None, after_evaluation=keep_first)
"""


def run_trainings(backend: str, stores: list[Path], jobs: list[tuple[str, str | None]]) -> subprocess.Popen:
    """Start one process that runs the given (output folder, checkpoint to resume or None) trainings in order."""
    env = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND", "XLA_FLAGS")}
    arguments = [backend, json.dumps([str(path) for path in stores]), json.dumps(jobs), json.dumps(SETTINGS)]
    return subprocess.Popen([sys.executable, "-c", RUNNER, *arguments], env=env, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per backend, a folder with runs a (from scratch), b (again, another process), resumed (from a at eval 1)."""
    root = tmp_path_factory.mktemp("backends")
    stores = write_signal_stores(root / "tiles", LABELS, tiles_per_slide=4)
    folders = {}
    for backend in ("tensorflow", "jax"):
        folder = root / backend
        first = run_trainings(backend, stores, [(str(folder / "a"), None)])
        second = run_trainings(backend, stores, [(str(folder / "b"), None)])
        for process in (first, second):
            assert process.wait(timeout=900) == 0, process.stderr.read()[-3000:]
        killed = folder / "a" / "killed_after_eval_1"
        resumed = run_trainings(backend, stores, [(str(folder / "resumed"), str(killed))])
        assert resumed.wait(timeout=900) == 0, resumed.stderr.read()[-3000:]
        folders[backend] = folder
    return folders


def weights(folder: Path) -> list[np.ndarray]:
    """The saved model's weights (the .keras file is backend-neutral: read here under this process's backend)."""
    return load_model(folder / "model.keras").get_weights()


def assert_bitwise_equal(ours: list[np.ndarray], theirs: list[np.ndarray]) -> None:
    """Same number of arrays, each identical bit for bit."""
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs):
        assert mine.dtype == other.dtype and mine.shape == other.shape
        assert mine.tobytes() == other.tobytes()


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_processes_train_bitwise_identical_weights(trained: dict, backend: str) -> None:
    assert_bitwise_equal(weights(trained[backend] / "a"), weights(trained[backend] / "b"))
    metrics = read_metrics_file(trained[backend] / "a" / "metrics.json", required=DEVICE_KEYS)
    assert metrics["backend"] == backend and metrics["deterministic"] is True and metrics["device"] == "cpu"
    assert backend in metrics["versions"] and {"keras", "numpy"} <= set(metrics["versions"])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_resume_after_a_kill_gives_identical_weights(trained: dict, backend: str) -> None:
    folder = trained[backend]
    assert_bitwise_equal(weights(folder / "resumed"), weights(folder / "a"))
    assert read_history(folder / "resumed" / "history.tsv").equals(read_history(folder / "a" / "history.tsv"))


def test_backends_agree_on_shapes_history_and_the_best_weights_rule(trained: dict) -> None:
    shapes = {backend: [w.shape for w in weights(folder / "a")] for backend, folder in trained.items()}
    assert shapes["tensorflow"] == shapes["jax"] and shapes["jax"][-2:] == [(2048, 1), (1,)]  # the Dense(1) head
    settings = TrainingSettings(**SETTINGS)
    for backend, folder in trained.items():
        history = read_history(folder / "a" / "history.tsv")
        assert list(history.columns) == HISTORY_COLUMNS and list(history["eval_step"]) == [1, 2, 3]
        metrics = read_metrics_file(folder / "a" / "metrics.json")
        state = ScheduleState(lr=settings.learning_rate)
        for step, auc, loss in zip(history["eval_step"], history["val_slide_auc"], history["val_loss"]):
            state, _ = update_schedule(state, auc, step, settings, loss)
        # the kept weights are those the pure schedule calls best for this backend's own history
        assert metrics["best_eval_step"] == state.best_eval, backend
        assert (metrics["stop_reason"], metrics["n_evals"]) == ("max_evals", 3)
    assert not any(path.name == "checkpoint" for path in (trained["jax"] / "resumed").iterdir())
