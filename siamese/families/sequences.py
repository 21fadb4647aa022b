"""Generated sequences: the reference model, one `LSTM(32)` shared by a left and a right sequence.

Reads `[data]` as `SequenceDataConfig` (mode, pairs, timesteps, features, noise, fractions) and
`[model]` as `TextModelConfig` (units, head). The pairs are generated split by split and written
as shards while they are made, so `data.num_pairs` may exceed memory (`siamese.data.shards`).
Similarity task, binary cross-entropy. Shipped in MLflow's Keras flavour as
`siamese-text-sequences`: float32 `left` and `right` of shape `(n, None, features)`.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path

import keras
import numpy as np

from siamese.config import Config, ModelKind, SequenceDataConfig
from siamese.data.pairs import SPLIT_NAMES, PairSplits
from siamese.data.sequences import generate_sequence_splits
from siamese.data.shards import PairShards, pairs_per_shard, write_shards
from siamese.families.base import Family, ModelFormat, PreparedSplits
from siamese.models.text import build_text_model


class GeneratedSequences(Family):
    kind = ModelKind.SEQUENCES
    experiment = "siamese-text"
    registered_name = "siamese-text-sequences"
    model_format = ModelFormat.KERAS

    def prepare_splits(self, config: Config, directory: Path) -> PreparedSplits:
        """Generate each split's pairs a shard at a time into `<split>.shards`: no split is ever held in memory."""
        data = config.data
        rng = np.random.default_rng(config.seed)
        item_shape = (data.timesteps, data.features)
        blocks = generate_sequence_splits(data, rng, pairs_per_shard(item_shape))
        metadata = {"generator": "siamese.data.sequences", "data": _plain(data), "seed": config.seed}
        shards = {
            name: write_shards(getattr(blocks, name), directory / f"{name}{PairShards.suffix}", item_shape, metadata)
            for name in SPLIT_NAMES
        }
        return self.write_splits(PairSplits(**shards), directory, config.task)

    def load_split(self, config: Config, path: Path) -> PairShards:
        return PairShards.load(path)

    def build(self, config: Config, train: PairShards, dtype_policy: str) -> keras.Model:
        model = config.model
        return build_text_model(features=config.data.features, units=model.units, head=model.head, dtype_policy=dtype_policy)

    def search_space(self, config: Config) -> dict[str, dict[str, object]]:
        """The rate and batch size, the shared LSTM's units and the head."""
        return super().search_space(config) | {
            "model.units": {"low": 16, "high": 128, "step": 16},
            "model.head": {"choices": ["symmetric", "monotone", "manhattan"]},
        }

    def data_name(self, config: Config) -> str:
        return str(config.data.mode)


def _plain(data: SequenceDataConfig) -> dict[str, object]:
    return {key: str(value) if isinstance(value, Enum) else value for key, value in dataclasses.asdict(data).items()}
