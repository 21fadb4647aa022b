"""Data tasks: generate the pairs and write the splits as files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import SequenceDataConfig
from siamese.data.sequences import generate_sequence_pairs, split_pairs


@dataclass(frozen=True)
class DataSplits:
    paths: dict[str, Path]  # train / validation / test -> .npz file
    sizes: dict[str, int]


@task(name="generate-pairs", cache_policy=NO_CACHE)
def generate_pairs(data: SequenceDataConfig, seed: int, work_dir: Path) -> DataSplits:
    """Generate sequence pairs and write train/validation/test splits as `.npz` files."""
    rng = np.random.default_rng(seed)
    splits = split_pairs(generate_sequence_pairs(data, rng), data.validation_fraction, data.test_fraction, rng)
    paths, sizes = {}, {}
    for name in ("train", "validation", "test"):
        pairs = getattr(splits, name)
        paths[name] = pairs.save(work_dir / f"{name}.npz")
        sizes[name] = len(pairs)
        get_run_logger().info("%s: %d pairs, %d positive", name, len(pairs), int(pairs.labels.sum()))
    return DataSplits(paths, sizes)
