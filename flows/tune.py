"""The sweep flow: search space -> trials on a Dask cluster -> best config -> train, test, gate.

prepare the splits once -> open the study and the sweep's MLflow run -> keep `parallel` trials
running on a Dask task runner (a local cluster of worker processes, or the cluster at
`dask_address`), asking the study for the next trial as each one ends -> record each trial (complete,
pruned or failed) -> log the counts, the study's figures and the best config -> train the best
config again in the retraining flow: tested on the test split (untouched until then), registered
as `challenger`, and gated against the champion as `siamese retrain` is.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import dask
import distributed
import optuna
from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect_dask import DaskTaskRunner

from flows.retrain import retrain_flow
from flows.train import ConfigParameter, run_directory
from siamese.config import Config, ConfigError, config_toml
from siamese.tuning import SearchSpace, check_judgeable, check_sweep_size, search_space_for, trial_config
from tasks.data import prepare_pairs
from tasks.store import tracking_uri
from tasks.tracking import check_tracking_store, ended_run
from tasks.tuning import (
    STUDY_JOURNAL,
    TrialOutcome,
    TrialSpec,
    TrialState,
    create_study,
    end_trial_run,
    link_final_run,
    log_sweep_results,
    open_sweep_run,
    open_trial_run,
    run_trial,
    write_config,
)

BEST_CONFIG = "best.toml"
# Trials at once on a local cluster, by default: one per core, at most 4 (more trials at once make
# the sampler's later trials learn from fewer finished ones).
MAX_LOCAL_WORKERS = 4
# A trial whose worker was lost (killed, out of memory, its machine gone) is run again by Dask on
# another worker, under the same Prefect task run and MLflow run, this many times; lost once more,
# it is recorded as failed. A cluster given by address retries as its scheduler is configured
# (`distributed.scheduler.allowed-failures`, Dask's default 3).
LOCAL_ALLOWED_FAILURES = 1
_OPTUNA_STATES = {
    TrialState.COMPLETE: optuna.trial.TrialState.COMPLETE,
    TrialState.PRUNED: optuna.trial.TrialState.PRUNED,
    TrialState.FAILED: optuna.trial.TrialState.FAIL,
}


class NoTrialCompletedError(RuntimeError):
    """Every trial of the sweep failed or was pruned: there is no best config to train."""


@flow(name="tune-siamese")
def tune_flow(
    config: ConfigParameter = Config(),
    space: dict[str, Any] | None = None,
    trials: int = 24,
    parallel: int | None = None,
    dask_address: str | None = None,
    study_storage: str | None = None,
    best_config_path: Path | None = None,
    work_dir: Path | None = None,
) -> dict[str, object]:
    """Search `space` (a `[tune]` table; None: the family's) for the config with the best validation metric, then ship it.

    Args:
        config: the base config; each trial sets the space's keys on it.
        trials: how many trials the study asks for; the base config's own values are the first.
        parallel: trials running at once; on the local cluster, also its number of worker processes. None:
            the CPU cores, at most MAX_LOCAL_WORKERS; with `dask_address`, the cluster's worker threads.
        dask_address: an existing Dask scheduler (`tcp://host:8786`); None starts a local cluster.
        study_storage: where the Optuna study lives, reached by every worker: an RDB URL, or None
            for a journal file in the sweep's folder (workers on other machines need that folder on a disk they share).
        best_config_path: where the best config is written as TOML (it is also logged on the sweep's run).
        work_dir: the sweep's folder (splits, study journal, model files); a temporary one when None.

    Returns:
        The retraining flow's result for the best config (run id, registered version, test metrics,
        gate, outcome), plus the sweep's run id, the best config as TOML, its validation value and
        the trials' outcomes.

    Raises:
        ConfigError: the space or the sweep's size is invalid (before any work; the key or argument is named).
        NoTrialCompletedError: every trial failed or was pruned; nothing is trained or registered.
        Whatever the retraining flow raises for the best config.
    """
    check_sweep_size(trials, parallel)
    search = search_space_for(config, space)
    check_tracking_store()
    logger = get_run_logger()
    with run_directory(work_dir) as directory:
        prepared = prepare_pairs(config, directory)  # once: every trial is judged on the same pairs
        check_judgeable(prepared.sizes["validation"])
        splits = prepared.paths
        storage = study_storage or str(directory / STUDY_JOURNAL)
        study = create_study(f"sweep-{flow_run.id}", storage, config, trials)
        first = search.values_of(config)
        if first is not None:  # the base config is a trial too: the sweep's best is never worse on validation
            study.enqueue_trial(first)
        local_workers = None if dask_address else parallel or min(MAX_LOCAL_WORKERS, os.cpu_count() or 1)
        with _dask_runner(local_workers, dask_address) as runner:
            parallel = parallel or local_workers or _worker_threads(runner)
            cluster = dask_address or f"local cluster of {local_workers} worker processes"
            with ended_run(open_sweep_run(config, search, trials, parallel, cluster, storage)) as sweep_run:
                outcomes = _TrialWork(study, search, config, splits, sweep_run, storage, directory).run(runner, trials, parallel)
                best = _best_config(study, search, config, outcomes)
                log_sweep_results(sweep_run, study, outcomes, best, directory / BEST_CONFIG)
        if best_config_path is not None:
            write_config(best, best_config_path)
        best_trial = study.best_trial
        logger.info("best of %d trials: trial %d, %s", len(outcomes), best_trial.number, best_trial.params)
        result = retrain_flow(config=best, work_dir=directory / "final")
        link_final_run(sweep_run, result["run_id"])
    return result | {
        "sweep_run_id": sweep_run,
        "best_config": config_toml(best),
        "best_value": best_trial.value,
        "best_trial": best_trial.number,
        "best_config_path": best_config_path,
        "trials": outcomes,
    }


class _TrialWork:
    """Keeps `parallel` trials running on a task runner, and records each as it ends."""

    def __init__(
        self, study: optuna.Study, search: SearchSpace, config: Config, splits: dict[str, Path], sweep_run: str, storage: str, directory: Path
    ) -> None:
        self.study, self.search, self.config, self.sweep_run = study, search, config, sweep_run
        self.storage, self.directory = storage, directory
        self.splits = {name: path for name, path in splits.items() if name != "test"}  # trials never see the test split
        self.tracking_uri = tracking_uri()
        self.outcomes: list[TrialOutcome] = []

    def run(self, runner: DaskTaskRunner, trials: int, parallel: int) -> list[TrialOutcome]:
        running: dict[Any, TrialSpec] = {}  # future -> its trial
        asked = 0
        try:
            while asked < trials or running:
                while asked < trials and len(running) < parallel:
                    asked += 1
                    spec = self._next_trial()
                    if spec is not None:
                        running[runner.submit(run_trial, {"spec": spec})] = spec
                if running:
                    future = next(as_completed(list(running)))
                    spec = running.pop(future)
                    self._record(spec.run_id, spec.values, _outcome_of(future, spec.number))
        finally:  # interrupted, or the cluster failed: no trial is left RUNNING in the study or in MLflow
            for spec in running.values():
                self._record(spec.run_id, spec.values, _failed(spec.number, "the sweep stopped before the trial ended"))
        return self.outcomes

    def _next_trial(self) -> TrialSpec | None:
        """Ask the study for a trial and open its run; a combination of values the config refuses is recorded failed at once."""
        trial = self.study.ask()
        values = self.search.sample(trial)
        try:
            config = trial_config(self.config, values)
        except ConfigError as error:
            run_id = open_trial_run(self.sweep_run, self.config, trial.number, values)
            self._record(run_id, values, _failed(trial.number, f"invalid combination: {error}"))
            return None
        run_id = open_trial_run(self.sweep_run, config, trial.number, values)
        directory = self.directory / f"trial-{trial.number}"
        # Optuna's id of the trial in the storage: what a worker's `optuna.trial.Trial` reports to.
        trial_id = trial._trial_id
        storage, study_name = self.storage, self.study.study_name
        return TrialSpec(trial.number, trial_id, values, config, self.splits, run_id, self.tracking_uri, study_name, storage, directory)

    def _record(self, run_id: str, values: dict[str, Any], outcome: TrialOutcome) -> None:
        state = _OPTUNA_STATES[outcome.state]
        self.study.tell(outcome.number, outcome.value if state is optuna.trial.TrialState.COMPLETE else None, state=state)
        end_trial_run(run_id, outcome)
        self.outcomes.append(outcome)
        logger = get_run_logger()
        if outcome.state is TrialState.FAILED:
            logger.warning("trial %d failed: %s", outcome.number, outcome.error)
        else:
            logger.info("trial %d %s: %.4g after %d epochs (%s)", outcome.number, outcome.state, outcome.value, outcome.epochs, values)


def _outcome_of(future: Any, number: int) -> TrialOutcome:
    """The trial's outcome, complete or pruned; failed with the reason when it raised or its workers were lost."""
    try:
        return future.result()
    except distributed.KilledWorker as lost:
        return _failed(number, f"its worker was lost each time it ran (Dask retried it on another worker): {lost}")
    except Exception as error:
        return _failed(number, f"{type(error).__name__}: {error}")


def _failed(number: int, reason: str) -> TrialOutcome:
    return TrialOutcome(number, TrialState.FAILED, None, 0, 0.0, error=reason)


def _best_config(study: optuna.Study, search: SearchSpace, config: Config, outcomes: list[TrialOutcome]) -> Config:
    if not any(outcome.state is TrialState.COMPLETE for outcome in outcomes):
        failures = "; ".join(f"trial {outcome.number}: {outcome.error or outcome.state}" for outcome in outcomes[:5])
        raise NoTrialCompletedError(f"none of the {len(outcomes)} trials completed, so there is no best config ({failures})")
    return trial_config(config, {key: study.best_trial.params[key] for key in search.keys})


@contextmanager
def _dask_runner(local_workers: int | None, address: str | None) -> Iterator[DaskTaskRunner]:
    """The cluster at `address`, or a local one of `local_workers` single-threaded worker processes (one trial each)."""
    if address is not None:
        with DaskTaskRunner(address=address) as runner:
            yield runner
        return
    local = {"n_workers": local_workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    with dask.config.set({"distributed.scheduler.allowed-failures": LOCAL_ALLOWED_FAILURES}):
        with DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=local) as runner:
            yield runner


def _worker_threads(runner: DaskTaskRunner) -> int:
    """How many trials a cluster runs at once: its workers' threads (one trial each)."""
    return max(1, sum(runner.client.nthreads().values()))
