"""Data task: generate or load the pairs and write the splits as files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config, Task
from siamese.data.sources import prepare_splits, save_split


@dataclass(frozen=True)
class DataSplits:
    paths: dict[str, Path]  # train / validation / test -> .npz (arrays) or .csv (image files)
    sizes: dict[str, int]


@task(name="prepare-pairs", cache_policy=NO_CACHE)
def prepare_pairs(config: Config, work_dir: Path) -> DataSplits:
    """Generate or load pairs as `config.data` says; write train/validation/test splits."""
    splits = prepare_splits(config.data, np.random.default_rng(config.seed))
    paths, sizes = {}, {}
    for name in ("train", "validation", "test"):
        pairs = getattr(splits, name)
        paths[name] = save_split(pairs, work_dir, name)
        sizes[name] = len(pairs)
        get_run_logger().info("%s: %d pairs, %s", name, len(pairs), _describe_labels(pairs.labels, config.task))
    return DataSplits(paths, sizes)


def _describe_labels(labels: np.ndarray, task: Task) -> str:
    if task is Task.REGRESSION:
        return f"targets {labels.min():.3g}..{labels.max():.3g} (mean {labels.mean():.3g})" if len(labels) else "no targets"
    return f"{int(labels.sum())} positive"
