"""Data task: the run's family generates or loads its pairs and writes the splits as files."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config, check_free_disk
from siamese.families import PreparedSplits, family_of


@task(name="prepare-pairs", cache_policy=NO_CACHE)
def prepare_pairs(config: Config, work_dir: Path) -> PreparedSplits:
    """Generate or load pairs as `config.data` says; write train/validation/test splits to `work_dir`.

    Bad input stops the run here, before an MLflow run exists; the message names the file and what to fix.
    Generated pairs that would not fit the free disk of `work_dir` are refused before any is written.
    """
    check_free_disk(config, work_dir)
    prepared = family_of(config.kind).prepare_splits(config, work_dir)
    logger = get_run_logger()
    source = prepared.source
    if source is not None:
        logger.info("%s: %d rows, %d dropped as invalid", source.path, source.total_rows, source.dropped_rows)
        for reason, count in source.dropped.items():
            logger.warning("dropped %d rows: %s", count, reason)
    for key, value in prepared.params.items():
        logger.info("%s = %s (decided by the data)", key, value)
    for name, path in prepared.paths.items():
        logger.info("%s: %d pairs, %s (%s)", name, prepared.sizes[name], prepared.labels[name], path.name)
    return prepared
