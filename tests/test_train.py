"""Training schedule, outputs, best-weight selection, early stopping, lr decay and exact resume after a kill.

The two real trainings here are tiny (48 training tiles, 75 px) but each pays TensorFlow's one-off graph tracing
(tens of seconds on a shared CPU), so they share a module-scoped fixture. The kill is simulated at the file level:
the uninterrupted run's evaluation hook snapshots the checkpoint folder as it stands after evaluation 2, which is
exactly what a job killed at that point leaves on disk; a second run started on that folder must end identically.
"""

from __future__ import annotations

import math
import os
import shutil
import zlib
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from test_tiledata import write_signal_stores
from workflow_scripts.learning.checkpoint import latest_checkpoint, read_arrays
from workflow_scripts.learning.devices import mixed_precision_policy, optimizer_for
from workflow_scripts.learning.model import load_model
from workflow_scripts.learning.run_outputs import DEVICE_KEYS, HISTORY_COLUMNS, read_history, read_metrics_file
from workflow_scripts.learning.schedule import ScheduleState, tile_loss, update_schedule
from workflow_scripts.learning.settings import RunSpec, TrainingOutputs, TrainingSettings
from workflow_scripts.learning.slide_score import grouped_slide_scores, slide_auc
from workflow_scripts.learning.tiledata import build_tile_index, ordered_batches
from workflow_scripts.learning.train import select_slides, train

LABELS = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
SETTINGS = TrainingSettings(
    input_px=75, batch_size=8, evals_per_epoch=2, lr_patience=1, lr_factor=0.1, stop_patience=2, max_evals=8,
    bn_momentum=0.9, workers=2,
)
SEED = 3
RUN = RunSpec(trait="MKI67", split=1, seed=SEED)
LOG_LINES: list[str] = []  # the uninterrupted run's training log


class SimulatedKill(RuntimeError):
    """Raised by the evaluation hook to stop a training the way a killed job would."""


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """Training index of 6 slides x 8 tiles and validation index of 4 slides x 8 tiles with a colour signal."""
    stores = write_signal_stores(tmp_path_factory.mktemp("stores"), LABELS)
    return build_tile_index(stores[:6], LABELS[:6]), build_tile_index(stores[6:], LABELS[6:])


def after_eval(outputs: TrainingOutputs, eval_step: int) -> Path:
    """Where the uninterrupted run's hook kept (hard links of) the checkpoint folder as it stood after eval_step."""
    return outputs.checkpoint.parent / "after_each_eval" / f"{eval_step}"


def outputs_in(folder: Path) -> TrainingOutputs:
    """The standard output files of a training in `folder`."""
    return TrainingOutputs.beside(folder / "model.keras", folder / "history.tsv", folder / "metrics.json")


@pytest.fixture(scope="module")
def uninterrupted(
    indexes: tuple, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainingOutputs, dict, pd.DataFrame, Path]:
    """One complete training with small patiences (lr decay and early stopping happen) and its checkpoint at eval 2.

    The hook also keeps the checkpoint folder after every evaluation (`after_eval`); the log goes to LOG_LINES.
    """
    folder = tmp_path_factory.mktemp("uninterrupted")
    outputs = outputs_in(folder)
    snapshot = folder / "killed_after_eval_2"

    def snapshot_after_each_evaluation(eval_step: int) -> None:
        shutil.copytree(outputs.checkpoint, after_eval(outputs, eval_step), copy_function=os.link)
        if eval_step == 2:
            shutil.copytree(outputs.checkpoint, snapshot, copy_function=os.link)

    metrics = train(
        *indexes, SETTINGS, RUN, outputs, log=LOG_LINES.append, after_evaluation=snapshot_after_each_evaluation
    )
    return outputs, metrics, read_history(outputs.history), snapshot


def test_history_has_one_row_per_evaluation(uninterrupted: tuple) -> None:
    _, metrics, history, _ = uninterrupted
    assert list(history.columns) == HISTORY_COLUMNS
    assert list(history["eval_step"]) == list(range(1, metrics["n_evals"] + 1))
    steps_per_eval = round(48 / (2 * 8))  # 48 tiles, 2 evaluations per epoch, batch 8
    np.testing.assert_allclose(history["epoch_fraction"], history["eval_step"] * steps_per_eval * 8 / 48)
    assert history["train_loss"].notna().all() and history["val_slide_auc"].between(0, 1).all()


def test_metrics_describe_the_run(uninterrupted: tuple) -> None:
    outputs, metrics, history, _ = uninterrupted
    assert read_metrics_file(outputs.metrics) == metrics
    assert (metrics["trait"], metrics["split"]) == ("MKI67", 1)
    counts = (metrics["n_train_tiles"], metrics["n_train_slides"], metrics["n_val_tiles"], metrics["n_val_slides"])
    assert counts == (48, 6, 32, 4)
    assert metrics["best_val_slide_auc"] == pytest.approx(history["val_slide_auc"].max(), abs=1e-6)
    assert metrics["best_eval_step"] == int(history.loc[history["val_slide_auc"].idxmax(), "eval_step"])
    assert metrics["seconds"] > 0 and metrics["tiles_per_second"] > 0


def test_early_stop_after_stop_patience_evaluations_without_improvement(uninterrupted: tuple) -> None:
    _, metrics, history, _ = uninterrupted
    # 4 validation slides allow at most 5 distinct AUC values, so improvement must stall before max_evals
    assert metrics["stop_reason"] == "no_improvement"
    assert metrics["n_evals"] == metrics["best_eval_step"] + SETTINGS.stop_patience < SETTINGS.max_evals


def test_lr_decays_after_lr_patience_evaluations_without_improvement(uninterrupted: tuple) -> None:
    _, metrics, history, _ = uninterrupted
    lr = dict(zip(history["eval_step"], history["lr"]))
    best = metrics["best_eval_step"]
    # the lr column is the rate used during the interval ending at each evaluation: one stalled evaluation
    # (lr_patience 1) after the best one, the next interval runs at a tenth of the rate
    assert lr[best + 2] == pytest.approx(lr[best + 1] * 0.1)
    # and the whole column is what the pure schedule gives for the recorded AUCs
    state, replayed = ScheduleState(lr=SETTINGS.learning_rate), []
    for step, auc, loss in zip(history["eval_step"], history["val_slide_auc"], history["val_loss"]):
        replayed.append(state.lr)
        state, _ = update_schedule(state, auc, step, SETTINGS, loss)
    np.testing.assert_allclose(history["lr"], replayed, rtol=1e-5)


def test_saved_model_holds_the_best_weights(uninterrupted: tuple, indexes: tuple) -> None:
    outputs, metrics, _, _ = uninterrupted
    _, val_index = indexes
    model = load_model(outputs.model)
    batches = ordered_batches(val_index, 32, 75)
    probabilities = np.concatenate([keras.ops.convert_to_numpy(model(x, training=False)) for x in batches]).reshape(-1)
    scores = grouped_slide_scores(probabilities, val_index.tiles_per_store(), SETTINGS.threshold)
    assert slide_auc(val_index.slide_labels, scores) == pytest.approx(metrics["best_val_slide_auc"], abs=1e-6)
    # the weights are those of the best evaluation (kept in the checkpoint's best.h5), not those of the last one
    assert metrics["best_eval_step"] < metrics["n_evals"]  # early stopping ran stop_patience evaluations past the best
    final = latest_checkpoint(after_eval(outputs, metrics["n_evals"]))
    best, last = read_arrays(final / "best.h5", "model"), read_arrays(final / "state.h5", "model")
    saved = model.get_weights()
    assert len(saved) == len(best)
    for ours, expected in zip(saved, best):
        np.testing.assert_array_equal(ours, expected)
    assert any(not np.array_equal(ours, final) for ours, final in zip(saved, last))


def test_resume_after_a_kill_gives_the_uninterrupted_result(
    uninterrupted: tuple, indexes: tuple, tmp_path: Path
) -> None:
    reference_outputs, reference_metrics, reference_history, killed_checkpoint = uninterrupted
    assert reference_metrics["n_evals"] > 2, "the reference run must continue past the simulated kill"
    outputs = outputs_in(tmp_path)
    shutil.copytree(killed_checkpoint, outputs.checkpoint)
    assert latest_checkpoint(outputs.checkpoint).name == "eval_000002"
    metrics = train(*indexes, SETTINGS, RUN, outputs)
    history = read_history(outputs.history)
    # in-process resume, within float noise: a .ci/run under load once saw 1.6e-4 relative on one train_loss;
    # bitwise resume across processes is test_backends.py's
    pd.testing.assert_frame_equal(history, reference_history, rtol=1e-3)
    for key in ("best_val_slide_auc", "best_eval_step", "stop_reason", "n_evals"):
        assert metrics[key] == reference_metrics[key]
    resumed, reference = load_model(outputs.model), load_model(reference_outputs.model)
    for ours, theirs in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["history.tsv", "metrics.json", "model.keras"]  # the checkpoint folder is gone


def test_resume_refuses_a_checkpoint_of_another_run(uninterrupted: tuple, indexes: tuple, tmp_path: Path) -> None:
    reference_outputs = uninterrupted[0]
    outputs = outputs_in(tmp_path)
    outputs.checkpoint.parent.mkdir(exist_ok=True)
    (outputs.checkpoint / "eval_000001").mkdir(parents=True)
    (outputs.checkpoint / "eval_000001" / "state.json").write_text(
        (latest_checkpoint(after_eval(reference_outputs, 1)) / "state.json").read_text()
    )
    with pytest.raises(ValueError, match="different run"):
        train(*indexes, SETTINGS, replace(RUN, seed=SEED + 1), outputs)


def test_only_the_latest_state_and_the_best_weights_are_kept_and_removed_at_the_end(uninterrupted: tuple) -> None:
    outputs, metrics, history, _ = uninterrupted
    assert not outputs.checkpoint.exists()  # a finished training leaves no checkpoint behind
    state, best_eval = ScheduleState(lr=SETTINGS.learning_rate), {}
    for step, auc, loss in zip(history["eval_step"], history["val_slide_auc"], history["val_loss"]):
        state, _ = update_schedule(state, auc, step, SETTINGS, loss)
        best_eval[int(step)] = state.best_eval
    for step in range(1, metrics["n_evals"] + 1):
        folders = list(after_eval(outputs, step).iterdir())
        assert [folder.name for folder in folders] == [f"eval_{step:06d}"]
        assert sorted(path.name for path in folders[0].iterdir()) == ["best.h5", "state.h5", "state.json"]
        best = folders[0] / "best.h5"
        with pytest.raises(KeyError, match="optimizer"):
            read_arrays(best, "optimizer")  # best.h5 holds the weights alone
        if best_eval[step] < step:  # unchanged best weights: a hard link to the previous evaluation's file
            previous = after_eval(outputs, step - 1) / f"eval_{step - 1:06d}" / "best.h5"
            assert best.stat().st_ino == previous.stat().st_ino
        else:
            for ours, state_weights in zip(read_arrays(best, "model"), read_arrays(folders[0] / "state.h5", "model")):
                np.testing.assert_array_equal(ours, state_weights)


def test_each_evaluation_logs_throughput_and_time_left(uninterrupted: tuple) -> None:
    _, metrics, history, _ = uninterrupted
    progress = [line for line in LOG_LINES if "img/s" in line]
    assert len(progress) == metrics["n_evals"]
    state = ScheduleState(lr=SETTINGS.learning_rate)
    for line, step, auc, loss in zip(progress, history["eval_step"], history["val_slide_auc"], history["val_loss"]):
        state, _ = update_schedule(state, auc, step, SETTINGS, loss)
        to_max = SETTINGS.max_evals - step
        to_stop = min(to_max, SETTINGS.stop_patience - state.since_best)
        assert line.startswith(f"eval {step}: train ") and "validation " in line
        assert f"left to max_evals ({to_max} evals)" in line and f"early-stop horizon ({to_stop} evals)" in line
    assert "(0 evals)" in progress[-1]  # the run stopped at its horizon
    # on this CPU machine: no GPU-seconds and no device memory; validation scored n_evals x 32 tiles
    assert metrics["gpu_seconds"] == 0 and metrics["peak_device_memory_mb"] is None
    assert metrics["val_tiles_per_second"] > 0 and metrics["peak_host_rss_mb"] > 100  # TensorFlow alone is larger


def test_schedule_decays_lr_and_stops_by_hand() -> None:
    settings = TrainingSettings(lr_patience=2, lr_factor=0.5, stop_patience=3, max_evals=100)
    state = ScheduleState(lr=1.0)
    trace = []
    for step, score in enumerate([0.6, 0.7, 0.7, 0.65, 0.8, 0.8, 0.8, 0.8], start=1):
        state, improved = update_schedule(state, score, step, settings)
        trace.append((improved, state.lr, state.stop_reason))
    assert trace == [
        (True, 1.0, None), (True, 1.0, None), (False, 1.0, None), (False, 0.5, None),  # 2 stalls -> halve
        (True, 0.5, None), (False, 0.5, None), (False, 0.25, None), (False, 0.25, "no_improvement"),
    ]
    state, _ = update_schedule(ScheduleState(lr=1.0), 0.5, 100, settings)
    assert state.stop_reason == "max_evals"


def test_equal_score_with_lower_validation_loss_counts_as_improvement() -> None:
    settings = replace(SETTINGS, lr_patience=2, lr_factor=0.5, stop_patience=3, max_evals=100)
    state = ScheduleState(lr=1.0)
    trace = []
    for step, (auc, loss) in enumerate([(1.0, 0.9), (1.0, 0.4), (1.0, 0.6), (1.0, 0.4), (1.0, float("nan"))], start=1):
        state, improved = update_schedule(state, auc, step, settings, loss)
        trace.append((improved, state.best_eval, state.lr))
    # eval 2 ties on AUC and lowers the loss: best; evals 3-5 (higher, equal, undefined loss) do not improve
    assert trace == [(True, 1, 1.0), (True, 2, 1.0), (False, 2, 1.0), (False, 2, 0.5), (False, 2, 0.5)]
    assert state.best_loss == pytest.approx(0.4)


def test_tile_loss_is_binary_cross_entropy() -> None:
    assert tile_loss(np.array([0.8, 0.25]), np.array([1, 0])) == pytest.approx(-(math.log(0.8) + math.log(0.75)) / 2)


def test_select_slides_keeps_labelled_passing_slides_with_tiles(tmp_path: Path) -> None:
    labels = pd.DataFrame({
        "patient_id": ["P1", "P2", "P3", "P4", "P5", "P6"], "trait": "T", "value": 0.0, "percentile": 0.0,
        "label": pd.array([1, 0, pd.NA, 1, 0, 1], dtype="Int64"),
        "set": ["train_pool", "train_pool", "ood_near", "train_pool", "train_pool", "train_pool"], "median_label": 0,
    })
    splits = pd.DataFrame({"patient_id": ["P1", "P2", "P3", "P4", "P5", "P6"], "test": False,
                           "split_0": ["train", "train", "train", "val", "val", "train"]})
    qc = pd.DataFrame({"slide_id": ["S1", "S2", "S3", "S4", "S5", "S6"],
                       "patient_id": ["P1", "P2", "P3", "P4", "P5", "P6"],
                       "status": ["pass", "pass", "pass", "pass", "pass", "fail"], "n_tiles": [5, 4, 3, 0, 2, 9]})
    stores = {slide: tmp_path / f"{slide}.h5" for slide in qc["slide_id"]}
    train_slides, val_slides = select_slides(labels, splits, qc, "T", 0, stores)
    assert list(train_slides["slide_id"]) == ["S1", "S2"] and list(train_slides["label"]) == [1, 0]
    assert list(val_slides["slide_id"]) == ["S5"]  # S4 has no tiles, S6 failed QC, S3 is unlabelled
    with pytest.raises(FileNotFoundError, match="S1"):
        select_slides(labels, splits, qc, "T", 0, {"S2": stores["S2"]})


def test_settings_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="lr_patinece"):
        TrainingSettings.from_config({"lr_patinece": 3})
    with pytest.raises(ValueError, match="input_px"):
        TrainingSettings.from_config({"input_px": 64})
    assert TrainingSettings.from_config({"batch_size": 4}).batch_size == 4


def test_mixed_precision_only_on_gpu() -> None:
    assert mixed_precision_policy(True, has_gpu=True) == "mixed_float16"
    assert mixed_precision_policy("mixed_bfloat16", has_gpu=True) == "mixed_bfloat16"
    assert mixed_precision_policy(True, has_gpu=False) == "float32"
    assert mixed_precision_policy(False, has_gpu=True) == "float32"
    with pytest.raises(ValueError, match="float8"):
        mixed_precision_policy("float8", has_gpu=True)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((9, 0), "mixed_bfloat16"), ((8, 0), "mixed_bfloat16"), ((8, 6), "mixed_bfloat16"), ((7, 5), "mixed_float16"),
     ((7, 0), "mixed_float16"), ((6, 1), "float32"), (None, "float32")],
)
def test_auto_precision_follows_the_compute_capability(capability: tuple | None, expected: str) -> None:
    # H100 9.0 and A100 8.0 have bfloat16 tensor cores, V100 7.0 and T4 7.5 float16 only, P100-era 6.x neither
    assert mixed_precision_policy("auto", has_gpu=True, capability=capability) == expected
    assert mixed_precision_policy("auto", has_gpu=False, capability=capability) == "float32"


def test_float16_training_gets_loss_scaling_and_bfloat16_does_not() -> None:
    scaled = optimizer_for("mixed_float16", 0.01)
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert isinstance(scaled.inner_optimizer, keras.optimizers.Adam)
    assert float(keras.ops.convert_to_numpy(scaled.learning_rate)) == pytest.approx(0.01)
    for policy in ("mixed_bfloat16", "float32"):
        assert type(optimizer_for(policy, 0.01)) is keras.optimizers.Adam


def test_each_trait_and_split_gets_its_own_seed() -> None:
    seeds = {(trait, split): RunSpec(trait, split, SEED).run_seed for trait in ("MKI67", "ESR1") for split in (0, 1)}
    assert len(set(seeds.values())) == 4  # seed + split gave both traits of a split the same initial weights
    # the SeedSequence of (seed, "train", crc32(trait), crc32("split_<k>")), as stable_seed defines it
    entropy = [SEED, zlib.crc32(b"train"), zlib.crc32(b"MKI67"), zlib.crc32(b"split_1")]
    assert RUN.run_seed == int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])
    assert RunSpec("MKI67", 1, SEED).run_seed == RUN.run_seed  # a pure function of the three


def test_metrics_record_device_backend_and_versions(uninterrupted: tuple) -> None:
    outputs, metrics, _, _ = uninterrupted
    assert read_metrics_file(outputs.metrics, required=DEVICE_KEYS) == metrics
    assert (metrics["backend"], metrics["device"], metrics["n_devices"]) == ("tensorflow", "cpu", 1)
    assert metrics["device_names"] == ["cpu"] and metrics["compute_capability"] is None
    assert metrics["dtype_policy"] == "float32" and metrics["deterministic"] is True
    assert metrics["model_family"] == "inception_v3" and "head_kind" not in metrics
    import tensorflow as tf

    assert metrics["versions"] == {"keras": keras.__version__, "numpy": np.__version__, "tensorflow": tf.__version__}
    assert any(line.startswith("devices: cpu x1 ['cpu']") and "backend tensorflow" in line for line in LOG_LINES)


def test_read_metrics_file_names_missing_device_keys(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"trait": "T"}')
    with pytest.raises(ValueError, match=r"metrics.json: metrics file lacks \['backend'"):
        read_metrics_file(path, required=DEVICE_KEYS)


def test_split_without_validation_slides_keeps_the_last_weights(indexes: tuple, tmp_path: Path) -> None:
    """Small cohorts: every validation patient out of distribution: train to max_evals and keep the last weights."""
    train_index, _ = indexes
    no_validation = build_tile_index([], [])
    settings = replace(SETTINGS, max_evals=2)
    outputs = outputs_in(tmp_path)
    metrics = train(train_index, no_validation, settings, replace(RUN, split=3), outputs)
    history = read_history(outputs.history)
    assert list(history["eval_step"]) == [1, 2]
    assert history["val_slide_auc"].isna().all() and history["val_loss"].isna().all()
    chosen = (metrics["selection_metric"], metrics["best_eval_step"], metrics["stop_reason"])
    assert chosen == ("last_weights", 2, "max_evals")
    assert metrics["best_val_slide_auc"] is None and metrics["n_val_slides"] == 0
    assert set(history["lr"]) == {settings.learning_rate}
