"""Data task: the run's family generates or loads its pairs and writes the splits as files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config, check_free_disk
from siamese.families import PreparedSplits, family_of
from tasks.resume import ResumableState


@task(name="prepare-pairs", cache_policy=NO_CACHE)
def prepare_pairs(config: Config, work_dir: Path, state: ResumableState | None = None) -> PreparedSplits:
    """Generate or load pairs as `config.data` says; write train/validation/test splits to `work_dir`.

    With a resumable `state` (`tasks.resume`), the splits go to its folder instead, complete or
    not at all (written beside it, then renamed into place), and a rerun of an interrupted run
    reads them back instead of preparing them again; its params then name the run that prepared
    them (`data.prepared_by_run`).

    Bad input stops the run here, before an MLflow run exists; the message names the file and what to fix.
    Generated pairs that would not fit the free disk are refused before any is written.
    """
    logger = get_run_logger()
    kept = None if state is None else PreparedSplits.load_manifest(state.splits)
    if kept is not None:
        previous = state.previous_run() or "unknown"
        logger.info("reusing the pairs prepared for run %s (%s; --fresh prepares them again)", previous, state.splits)
        return PreparedSplits(kept.paths, kept.sizes, kept.labels, kept.source, kept.params | {"data.prepared_by_run": previous})
    prepared = _prepare(config, work_dir) if state is None else _prepare_for_resuming(config, state)
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


def _prepare(config: Config, directory: Path) -> PreparedSplits:
    check_free_disk(config, directory)
    return family_of(config.kind).prepare_splits(config, directory)


def _prepare_for_resuming(config: Config, state: ResumableState) -> PreparedSplits:
    """Prepare into `<splits>.partial` (what a killed preparation left there is discarded), then rename it into place."""
    partial = state.splits.with_name(state.splits.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _prepare(config, partial).save_manifest(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(state.splits, ignore_errors=True)
    os.replace(partial, state.splits)
    return PreparedSplits.load_manifest(state.splits)
