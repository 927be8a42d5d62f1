"""What differs between the two model families for the one training loop (`train.train_model`): their feeds.

A feed holds the training and validation indexes of a run and gives the loop
- `build_model()`: the family's untrained model under the active dtype policy (also the float32 export model);
- `training_batches(global_batch, seed, start_step)`: the endless training stream from batch start_step on, the same
  stream positions for both families (`tiledata`), so a resumed run sees the batches an uninterrupted one would;
- `scoring_batches(index, batch_size)`: an index's examples in index order (the last batch may be short);
- `run_key()`: what it adds to the checkpoint run key (a changed head cannot resume an old checkpoint) and
  `metrics()`: what it adds to metrics.json (`run_outputs.FAMILY_KEYS`).

`TileFeed` is Inception v3 on uint8 tiles decoded from tile stores (input_px, bn_momentum and decoding workers from
the training settings); it adds nothing to the run key, so checkpoints of earlier versions still resume.
`FeatureFeed` is a head (`heads`) on tile features held in memory (`featuredata`); its train and validation stores
must share one encoder, weights and width.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from functools import cached_property

import keras
import numpy as np

from workflow_scripts.learning.featuredata import (
    FeatureIndex,
    FeatureSource,
    common_source,
    feature_batches,
    ordered_feature_batches,
)
from workflow_scripts.learning.heads import HeadSettings, build_head
from workflow_scripts.learning.model import build_model
from workflow_scripts.learning.settings import TrainingSettings
from workflow_scripts.learning.tiledata import TileIndex, ordered_batches, training_batches

INCEPTION_FAMILY = "inception_v3"
FEATURES_FAMILY = "features"


class TileFeed:
    """Inception v3 trained on the tiles of tile stores."""

    family = INCEPTION_FAMILY

    def __init__(self, train_index: TileIndex, val_index: TileIndex, settings: TrainingSettings) -> None:
        self.train_index = train_index
        self.val_index = val_index
        self.settings = settings

    def build_model(self) -> keras.Model:
        """The untrained Inception v3 classifier."""
        return build_model(self.settings.input_px, bn_momentum=self.settings.bn_momentum)

    def training_batches(self, global_batch: int, seed: int, start_step: int) -> Iterator[tuple]:
        """Decoded, flipped uint8 tile batches of the training stream."""
        return training_batches(
            self.train_index, global_batch, self.settings.input_px, seed, start_step=start_step,
            workers=self.settings.workers,
        )

    def scoring_batches(self, index: TileIndex, batch_size: int) -> Iterator[np.ndarray]:
        """An index's tiles, decoded in index order."""
        return ordered_batches(index, batch_size, self.settings.input_px, workers=self.settings.workers)

    def run_key(self) -> dict:
        """Nothing beyond the loop's own run key (checkpoints written before feeds existed stay valid)."""
        return {}

    def metrics(self) -> dict:
        """The family, for metrics.json."""
        return {"model_family": self.family}


class FeatureFeed:
    """A per-trait head trained on tile features of feature stores."""

    family = FEATURES_FAMILY

    def __init__(self, train_index: FeatureIndex, val_index: FeatureIndex, head: HeadSettings) -> None:
        head.validate()
        self.train_index = train_index
        self.val_index = val_index
        self.head = head

    @cached_property
    def source(self) -> FeatureSource:
        """The one encoder, weights and width of the training and validation features (else an error naming slides)."""
        named = [
            (path.stem, source)
            for index in (self.train_index, self.val_index)
            for path, source in zip(index.stores, index.sources)
        ]
        return common_source(named)

    def build_model(self) -> keras.Model:
        """The untrained head for the features' width."""
        return build_head(self.source.dim, self.head)

    def training_batches(self, global_batch: int, seed: int, start_step: int) -> Iterator[tuple]:
        """Float16 feature batches of the training stream."""
        return feature_batches(self.train_index, global_batch, seed, start_step=start_step)

    def scoring_batches(self, index: FeatureIndex, batch_size: int) -> Iterator[np.ndarray]:
        """An index's features in index order."""
        return ordered_feature_batches(index, batch_size)

    def run_key(self) -> dict:
        """The family, the head's settings and the features' source: any change refuses an old checkpoint."""
        return {"model_family": self.family, "head": asdict(self.head), **self._source_entries()}

    def metrics(self) -> dict:
        """The family, head kind and feature source, for metrics.json."""
        return {"model_family": self.family, "head_kind": self.head.kind, **self._source_entries()}

    def _source_entries(self) -> dict:
        """The features' width, encoder and weights hash."""
        return {
            "feature_dim": self.source.dim, "encoder": self.source.encoder,
            "weights_sha256": self.source.weights_sha256,
        }
