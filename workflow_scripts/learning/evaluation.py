"""Each evaluation of a training: score the validation slides, advance the schedule, write the checkpoint, log.

`EvaluationCallback` runs at the end of every Keras 'epoch' (= one evaluation interval of `train`): it scores the
validation index with the model in its feed's scoring batches (`feeds`; a short last batch is padded to the global
batch), computes the slide AUC (`slide_score`) and tile loss, advances the plateau schedule (`schedule`: lr decay,
early stop, best weights), writes checkpoint eval_<k> (`checkpoint`), appends the history row (`run_outputs`
columns) and logs the evaluation and its throughput line (`throughput`). Both model families share it unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from workflow_scripts.learning.checkpoint import RunRecord, write_checkpoint
from workflow_scripts.learning.schedule import monitored_score, tile_loss, update_schedule
from workflow_scripts.learning.settings import TrainingSettings
from workflow_scripts.learning.slide_score import grouped_slide_scores, slide_auc
from workflow_scripts.learning.throughput import IntervalTiming, evaluations_left
from workflow_scripts.learning.tiledata import TileIndex

if TYPE_CHECKING:
    from workflow_scripts.learning.feeds import FeatureFeed, TileFeed


def predict_probabilities(
    model: keras.Model, feed: TileFeed | FeatureFeed, index: TileIndex, settings: TrainingSettings, n_replicas: int
) -> np.ndarray:
    """Tile probabilities of every indexed tile (or feature row), in index order."""
    if index.n_tiles == 0:
        return np.zeros(0, np.float32)
    global_batch = settings.predict_batch_size * n_replicas
    n_batches = math.ceil(index.n_tiles / global_batch)
    # a short last batch is padded: one shape, one traced function, and JAX DataParallel splits it evenly
    batches = (
        (_padded(batch, global_batch),)
        for batch in feed.scoring_batches(index, global_batch)
    )
    probabilities = model.predict(batches, steps=n_batches, verbose=0)
    return np.asarray(probabilities, np.float32).reshape(-1)[: index.n_tiles]


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """The batch filled up to `size` rows with blank tiles or zero features (their scores are dropped)."""
    if len(batch) >= size:
        return batch
    return np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)])


class EvaluationCallback(keras.callbacks.Callback):
    """At the end of each Keras 'epoch' (= one evaluation interval): score validation, run the schedule, checkpoint.

    The interval's geometry (global batch, steps per evaluation, training tiles) is read from the record's run key.
    """

    def __init__(
        self,
        record: RunRecord,
        feed: TileFeed | FeatureFeed,
        settings: TrainingSettings,
        checkpoint: Path,
        best_weights: Path | None,
        log: Callable[[str], None],
        after_evaluation: Callable[[int], None] | None,
    ) -> None:
        super().__init__()
        self.record = record
        self.feed = feed
        self.val_index = feed.val_index
        self.settings = settings
        self.checkpoint = checkpoint
        self.best_weights = best_weights
        self.log = log
        self.after_evaluation = after_evaluation
        self.scored_slides = self.val_index.tiles_per_store() > 0
        self.started = time.monotonic()

    def score_validation(self) -> tuple[float, float]:
        """Slide AUC and tile loss of the validation slides (NaN, NaN without validation tiles)."""
        if self.val_index.n_tiles == 0:
            return math.nan, math.nan
        n_replicas = self.record.run_key["global_batch"] // self.settings.batch_size
        probabilities = predict_probabilities(self.model, self.feed, self.val_index, self.settings, n_replicas)
        scores = grouped_slide_scores(probabilities, self.val_index.tiles_per_store(), self.settings.threshold)
        auc = slide_auc(self.val_index.slide_labels[self.scored_slides], scores[self.scored_slides])
        val_loss = tile_loss(probabilities, self.val_index.labels) if len(probabilities) else math.nan
        return auc, val_loss

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Evaluate after eval interval `epoch` (0-based) and decide on lr and stopping."""
        eval_step = epoch + 1
        started = time.monotonic()
        auc, val_loss = self.score_validation()
        score = monitored_score(auc, val_loss, eval_step, has_validation=self.val_index.n_tiles > 0)
        lr_used = self.record.schedule.lr
        schedule, improved = update_schedule(self.record.schedule, score, eval_step, self.settings, val_loss)
        if schedule.lr != lr_used:
            self.model.optimizer.learning_rate.assign(schedule.lr)
        now = time.monotonic()
        timing = IntervalTiming(
            self.record.run_key["steps_per_eval"] * self.record.run_key["global_batch"], started - self.started,
            self.val_index.n_tiles, now - started,
        )
        self.record.validation_seconds += now - started
        self.record.seconds += now - self.started
        self.started = now
        self.record.eval_step = eval_step
        self.record.schedule = schedule
        key = self.record.run_key
        self.record.history.append(
            {
                "eval_step": eval_step,
                "epoch_fraction": eval_step * key["steps_per_eval"] * key["global_batch"] / key["n_train_tiles"],
                "train_loss": float((logs or {}).get("loss", math.nan)),
                "val_slide_auc": auc,
                "lr": lr_used,
                "val_loss": val_loss,
            }
        )
        self.best_weights = write_checkpoint(self.checkpoint, self.record, self.model, self.best_weights, improved)
        self.log(
            f"eval {eval_step}: train_loss {self.record.history[-1]['train_loss']:.4f} val_slide_auc {auc:.4f} "
            f"val_loss {val_loss:.4f} lr {lr_used:g}{' (best)' if improved else ''}"
        )
        left = evaluations_left(eval_step, schedule.since_best, self.settings.max_evals, self.settings.stop_patience)
        self.log(f"eval {eval_step}: {timing.progress_line(self.record.seconds, *left)}")
        if schedule.stop_reason is not None:
            self.model.stop_training = True
        if self.after_evaluation is not None:
            self.after_evaluation(eval_step)
