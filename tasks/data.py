"""Data task: generate or load the pairs and write the splits as files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config, Task, TextFileDataConfig
from siamese.data.shards import PairShards
from siamese.data.sources import Pairs, prepare_splits, save_split, split_text_file
from siamese.data.text_pairs import LoadedPairs, PairColumns


@dataclass(frozen=True)
class SourceFile:
    """Where a run's text pairs came from: enough to trace the run to its data."""

    path: str
    content_hash: str  # sha256 of the file's bytes
    total_rows: int
    dropped: dict[str, int]  # reason -> rows dropped as invalid
    columns: PairColumns

    @classmethod
    def of(cls, loaded: LoadedPairs) -> SourceFile:
        return cls(loaded.source, loaded.content_hash, loaded.total_rows, loaded.dropped, loaded.columns)

    @property
    def dropped_rows(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True)
class DataSplits:
    # train / validation / test -> .shards (generated sequences), .npz (arrays), .csv (image files) or .parquet (text)
    paths: dict[str, Path]
    sizes: dict[str, int]
    source_file: SourceFile | None = None  # text pairs from a file


@task(name="prepare-pairs", cache_policy=NO_CACHE)
def prepare_pairs(config: Config, work_dir: Path) -> DataSplits:
    """Generate or load pairs as `config.data` says; write train/validation/test splits.

    Generated sequences are written shard by shard while they are generated, never all in memory.
    """
    logger = get_run_logger()
    source_file = None
    if isinstance(config.data, TextFileDataConfig):
        splits, loaded = split_text_file(config.data, config.seed)
        source_file = SourceFile.of(loaded)
        logger.info("%s: %d rows, %d dropped as invalid", source_file.path, source_file.total_rows, source_file.dropped_rows)
        for reason, count in source_file.dropped.items():
            logger.warning("dropped %d rows: %s", count, reason)
    else:
        splits = prepare_splits(config.data, np.random.default_rng(config.seed), work_dir)
    paths, sizes = {}, {}
    for name in ("train", "validation", "test"):
        pairs = getattr(splits, name)
        paths[name] = save_split(pairs, work_dir, name)
        sizes[name] = len(pairs)
        logger.info("%s: %d pairs, %s", name, len(pairs), _describe_labels(pairs, config.task))
    return DataSplits(paths, sizes, source_file)


def _describe_labels(pairs: Pairs, task: Task) -> str:
    if isinstance(pairs, PairShards):  # counted while writing: the labels stay on disk
        return f"{pairs.positive_pairs} positive, {len(pairs.shard_sizes)} shards in {pairs.path.name}"
    labels = pairs.labels
    if task is Task.REGRESSION:
        return f"targets {labels.min():.3g}..{labels.max():.3g} (mean {labels.mean():.3g})" if len(labels) else "no targets"
    return f"{int(labels.sum())} positive"
