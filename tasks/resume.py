"""What an interrupted run leaves for the next run of the same command: its prepared pairs and its training's state.

One folder per config and data (`siamese.resume.resume_key`) under `checkpoint_root()`:

- `splits/`: the prepared pairs (`tasks.data.prepare_pairs` writes them there and reads them back);
- `training/`: the state saved after every epoch (`siamese.training.TrainingCheckpoint`);
- `run_id`: the last run that used the folder, named by the run that resumes it;
- `lock`: held by the one command that uses the folder.

A command that succeeds removes its folder. One that fails or is interrupted keeps it, so that
rerunning the command (after kill -9, a lost machine, a full disk) neither prepares its data nor
trains its completed epochs again; `--fresh` empties it first.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config
from siamese.locks import FileLock
from siamese.resume import resume_key
from siamese.training import TrainingCheckpoint
from tasks.store import LOCAL_STORE
from tasks.tracking import log_derived_params


@dataclass(frozen=True)
class ResumableState:
    """The folder a run keeps for a rerun of its command (see the module docstring)."""

    directory: Path

    @property
    def splits(self) -> Path:
        return self.directory / "splits"

    @property
    def training(self) -> Path:
        return self.directory / "training"

    @property
    def owner(self) -> Path:
        return self.directory / "run_id"

    def previous_run(self) -> str | None:
        """The run that last used the folder: the interrupted run a new one continues."""
        return self.owner.read_text().strip() if self.owner.exists() else None


def checkpoint_root() -> Path:
    """Where resumable states are kept: `SIAMESE_CHECKPOINTS`, else `mlruns/checkpoints` beside the local store."""
    return Path(os.environ.get("SIAMESE_CHECKPOINTS") or LOCAL_STORE / "checkpoints")


@contextmanager
def resumable_state(config: Config, fresh: bool = False) -> Iterator[ResumableState | None]:
    """The folder of `config`'s run on its data, held for this command; None while another command holds it.

    Two identical commands at once must not resume, or overwrite, each other's state: the
    second runs without one (it prepares its data in its work directory and saves no training
    state) and says so. The folder is removed when the command succeeds, and kept when it fails
    with something to resume (prepared pairs). `fresh` empties it first.
    """
    state = ResumableState(checkpoint_root() / resume_key(config))
    lock = FileLock(state.directory / "lock")
    if not lock.acquire(timeout=0):
        get_run_logger().warning(
            "another siamese command is running this config on this data (%s): this one neither resumes its state nor keeps its own",
            state.directory,
        )
        yield None
        return
    try:
        if fresh:
            _empty(state.directory, keep=lock.path)
        yield state
    except BaseException:
        if not state.splits.exists():  # nothing a rerun could reuse
            shutil.rmtree(state.directory, ignore_errors=True)
        raise
    else:
        shutil.rmtree(state.directory, ignore_errors=True)
    finally:
        lock.release()


@task(name="find-checkpoint", cache_policy=NO_CACHE)
def find_checkpoint(state: ResumableState | None, run_id: str) -> Path | None:
    """Where this run's training saves its state each epoch; None when it keeps none (`resumable_state`).

    State left there by an interrupted run is resumed by `train_model`; this run's params then
    name that run and the epochs it had completed.
    """
    if state is None:
        return None
    completed, previous = TrainingCheckpoint.completed_epochs(state.training), state.previous_run()
    if completed and previous:
        log_derived_params(run_id, {"training.resumed_from_run": previous, "training.resumed_after_epoch": completed})
        get_run_logger().info("resuming the training of run %s after its epoch %d (--fresh starts over)", previous, completed)
    state.owner.write_text(run_id)
    return state.training


def _empty(directory: Path, keep: Path) -> None:
    for entry in directory.iterdir():
        if entry != keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
