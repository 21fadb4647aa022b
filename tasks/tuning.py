"""Sweep tasks: the study every worker reaches, one trial on a Dask worker, and the sweep's MLflow runs.

A trial is one training run of the family's recipe (`tasks.model.build_model`, `train_model`) on
the sweep's shared splits, judged on the validation split only: its value is the best epoch's
validation metric, the one early stopping keeps. After every epoch it reports that metric to the
Optuna study, whose pruner may stop it (`TrialPruned`); the study lives in a storage every worker
reaches (`study_storage`). Its MLflow run is opened by the flow, nested under the sweep's run,
and written to by the worker: params at the start, metrics every epoch, the outcome at the end.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterator

import keras
import optuna
from mlflow.entities import RunStatus
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config, config_toml
from siamese.devices import plan_devices
from siamese.families import family_of
from siamese.training import MONITORED
from siamese.tuning import SearchSpace
from tasks.model import build_model, train_model
from tasks.store import mlflow_client
from tasks.tracking import FAILURE_TAG, LOGGING_TASK, MAX_TAG_LENGTH, log_derived_params, log_metrics, open_run, reports_a_silent_server

STUDY_JOURNAL = "study.journal"  # the default storage: Optuna's journal file in the sweep's folder
# No trial is pruned before this many have finished, nor in its first epochs: a median of too few
# trials, or of first epochs (where a high learning rate leads and a low one catches up), is noise.
PRUNER_STARTUP_TRIALS, PRUNER_WARMUP_EPOCHS = 4, 2
# Random trials before TPE models the results: a third of the budget, at least 4, at most Optuna's default of 10.
MIN_RANDOM_TRIALS, MAX_RANDOM_TRIALS = 4, 10
STATE_TAG = "trial.state"  # complete, pruned or failed, on each trial's run
MONITORED_MODES = dict(MONITORED.values())  # val_auc -> max, val_mae -> min


class TrialState(StrEnum):
    COMPLETE = "complete"
    PRUNED = "pruned"  # stopped by the pruner: its validation metric trailed the other trials' median
    FAILED = "failed"  # raised (NaN loss, out of memory), or its worker was lost twice


def state_counts(outcomes: list[TrialOutcome]) -> dict[TrialState, int]:
    """How many trials ended in each state, every state named (0 included)."""
    return {state: sum(outcome.state is state for outcome in outcomes) for state in TrialState}


@dataclass(frozen=True)
class TrialSpec:
    """What a worker needs to run one trial: small values and paths, as every task takes."""

    number: int  # the trial's number in the study, from 0
    trial_id: int  # Optuna's id of the trial in its storage
    values: dict[str, Any]  # the sampled `section.field` values
    config: Config  # the base config with `values` set
    splits: dict[str, Path]  # the sweep's train and validation split files (the test split is not given)
    run_id: str  # the trial's MLflow run, nested under the sweep's
    tracking_uri: str  # the workers' processes may run elsewhere: the store is named, not inherited
    study_name: str
    storage: str  # an RDB URL, or the path of a journal file (`study_storage`)
    directory: Path  # the trial's own folder for its model files


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: TrialState
    value: float | None  # the best epoch's validation metric; None when the trial failed before an epoch ended
    epochs: int
    seconds: float
    worker: str = ""  # host and process that ran it
    error: str | None = None


def study_storage(storage: str) -> optuna.storages.BaseStorage | str:
    """An RDB URL as Optuna takes it (`postgresql://...`, `sqlite:///...`), or a journal file's path.

    The journal file is Optuna's storage for processes that share a disk (it locks with files);
    a database server is the one for workers on machines that share nothing.
    """
    if "://" in storage:
        return storage
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))


def create_study(name: str, storage: str, config: Config, trials: int) -> optuna.Study:
    """A new study: TPE (seeded, parallel-aware) and a median pruner, in the direction of the task's validation metric."""
    _, mode = MONITORED[config.task]
    random_trials = min(MAX_RANDOM_TRIALS, max(MIN_RANDOM_TRIALS, trials // 3))
    # constant_liar: a trial still running counts as a poor result, so parallel trials are not sampled alike.
    sampler = optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=random_trials, multivariate=True, constant_liar=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate and constant_liar
        return optuna.create_study(
            study_name=name,
            storage=study_storage(storage),
            sampler=sampler,
            pruner=sweep_pruner(),
            direction="maximize" if mode == "max" else "minimize",
        )


def sweep_pruner() -> optuna.pruners.BasePruner:
    """The median pruner, with its warm-up. A storage keeps a study's trials, not its pruner: each worker makes this one."""
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS)


def worker_trial(study_name: str, storage: str, trial_id: int) -> optuna.trial.Trial:
    """The trial a worker reports to: the sweep's study, from the storage, with the sweep's pruner (a storage has none)."""
    study = optuna.load_study(study_name=study_name, storage=study_storage(storage), pruner=sweep_pruner())
    return optuna.trial.Trial(study, trial_id)


@task(name="run-trial", cache_policy=NO_CACHE, task_run_name="trial-{spec.number}")
def run_trial(spec: TrialSpec) -> TrialOutcome:
    """Train one trial's config on the sweep's splits and report every epoch's validation metric to the study.

    Runs on a Dask worker. A pruned trial returns its outcome; anything else that stops it
    (a NaN loss, memory, an unreachable split file) raises, and the flow records it as failed.
    """
    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with _tracking_at(spec.tracking_uri):
        _require_reachable(spec.splits, worker)
        reporter = ValidationReporter(worker_trial(spec.study_name, spec.storage, spec.trial_id), MONITORED[spec.config.task][0])
        config = spec.config
        spec.directory.mkdir(parents=True, exist_ok=True)
        plan = plan_devices(config.training.devices, config.training.precision)
        initial = build_model.fn(config, plan, spec.splits["train"], spec.run_id, spec.directory)
        try:
            train_model.fn(initial, spec.splits, config, plan, spec.run_id, spec.directory, callbacks=(reporter,))
        except optuna.TrialPruned as pruned:
            get_run_logger().info("trial %d pruned: %s", spec.number, pruned)
            state = TrialState.PRUNED
        else:
            state = TrialState.COMPLETE
    return TrialOutcome(spec.number, state, reporter.best, reporter.epochs, time.perf_counter() - started, worker)


class ValidationReporter(keras.callbacks.Callback):
    """Reports each epoch's validation metric to the trial, raising `TrialPruned` when the pruner says so.

    Keeps the best value (what early stopping restores); a NaN loss or metric stops the trial as
    failed at once rather than training on garbage until patience runs out.
    """

    def __init__(self, trial: optuna.trial.Trial, monitor: str) -> None:
        super().__init__()
        self.trial, self.monitor = trial, monitor
        self.maximise = MONITORED_MODES[monitor] == "max"
        self.best: float | None = None
        self.epochs = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.epochs = epoch + 1
        value, loss = logs.get(self.monitor), logs.get("loss")
        if value is None:
            raise RuntimeError(f"the trial's training reported no {self.monitor}: it needs validation pairs")
        if not (math.isfinite(value) and (loss is None or math.isfinite(loss))):
            raise FloatingPointError(
                f"training diverged at epoch {epoch + 1} (loss {loss}, {self.monitor} {value}): the learning rate is too high"
            )
        if self.best is None or (value > self.best if self.maximise else value < self.best):
            self.best = float(value)
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.monitor} {value:.4f} at epoch {epoch + 1} trails the median of earlier trials")


def _require_reachable(splits: dict[str, Path], worker: str) -> None:
    missing = [str(path) for path in splits.values() if not path.exists()]
    if missing:
        raise FileNotFoundError(
            f"worker {worker} cannot read the sweep's split files ({', '.join(missing)}): workers on other machines "
            "need the sweep's --work-dir on a disk they all mount"
        )


@contextmanager
def _tracking_at(uri: str) -> Iterator[None]:
    """Point this worker's MLflow at the sweep's store for one trial: a worker serves whatever sweep sends it work."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


@task(name="open-sweep-run", cache_policy=NO_CACHE)
@reports_a_silent_server
def open_sweep_run(config: Config, space: SearchSpace, trials: int, parallel: int, cluster: str, storage: str) -> str:
    """The sweep's parent run: the base config, the search space and where the trials run."""
    family = family_of(config.kind)
    params = config.to_params() | {
        "tune.trials": trials,
        "tune.parallel": parallel,
        "tune.cluster": cluster,
        "tune.storage": storage,
        "tune.objective": "{} ({})".format(*MONITORED[config.task]),
    }
    params |= {f"tune.space.{key}": spec for key, spec in space.to_dict().items()}
    description = (
        f"A sweep of {trials} trials over {', '.join(space.keys)} for a {config.kind} model on {family.data_name(config)}, "
        f"each judged on the validation split; its trials are the nested runs. The best config is trained again, "
        "tested and gated in a run of its own (tag tune.final_run_id)."
    )
    run_id = open_run.fn(family.experiment, f"tune {family.data_name(config)} {trials} trials", description, params)
    mlflow_client().log_dict(run_id, space.to_dict(), "tune/space.json")
    return run_id


@task(name="open-trial-run", cache_policy=NO_CACHE, task_run_name="open-trial-run-{number}")
@reports_a_silent_server
def open_trial_run(parent_run_id: str, config: Config, number: int, values: dict[str, Any]) -> str:
    """A trial's run, nested under the sweep's: its whole config as params, the sampled values named."""
    family = family_of(config.kind)
    sampled = ", ".join(f"{key}={value}" for key, value in values.items())
    return open_run.fn(
        family.experiment,
        f"trial {number}",
        f"Trial {number} of a sweep: {sampled}; judged on the validation split.",
        config.to_params() | {"trial.number": number},
        tags={"mlflow.parentRunId": parent_run_id, "trial.values": sampled[:MAX_TAG_LENGTH]},
    )


@task(name="end-trial-run", task_run_name="end-trial-run-{outcome.number}", **LOGGING_TASK)
@reports_a_silent_server
def end_trial_run(run_id: str, outcome: TrialOutcome) -> None:
    """Record the trial's value and state: FINISHED when complete, KILLED when pruned, FAILED with its error."""
    client = mlflow_client()
    metrics = {"trial/epochs": outcome.epochs, "trial/seconds": outcome.seconds}
    if outcome.value is not None:
        metrics["trial/value"] = outcome.value
    log_metrics.fn(run_id, metrics)
    client.set_tag(run_id, STATE_TAG, str(outcome.state))
    if outcome.worker:
        client.set_tag(run_id, "trial.worker", outcome.worker)
    if outcome.error:
        client.set_tag(run_id, FAILURE_TAG, outcome.error[:MAX_TAG_LENGTH])
    status = {TrialState.COMPLETE: RunStatus.FINISHED, TrialState.PRUNED: RunStatus.KILLED, TrialState.FAILED: RunStatus.FAILED}
    client.set_terminated(run_id, RunStatus.to_string(status[outcome.state]))


@task(name="write-config", cache_policy=NO_CACHE)
def write_config(config: Config, path: Path) -> Path:
    """Write `config` as a TOML file whole, or leave what was at `path`: an interrupted write never leaves half a config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(config_toml(config))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


@task(name="log-sweep-results", cache_policy=NO_CACHE)
@reports_a_silent_server
def log_sweep_results(run_id: str, study: optuna.Study, outcomes: list[TrialOutcome], best: Config, best_path: Path) -> None:
    """The sweep's counts and best value, the best config as TOML, and the study's figures, on the parent run."""
    client = mlflow_client()
    metrics = {f"tune/trials_{state}": count for state, count in state_counts(outcomes).items()}
    metrics |= {"tune/best_value": study.best_value, "tune/epochs_run": sum(outcome.epochs for outcome in outcomes)}
    log_metrics.fn(run_id, metrics)
    log_derived_params(run_id, {"tune.best_trial": study.best_trial.number})
    client.log_artifact(run_id, str(write_config.fn(best, best_path)), "tune")
    for name, figure in study_figures(study).items():
        client.log_figure(run_id, figure, f"tune/{name}.png")


def study_figures(study: optuna.Study) -> dict[str, Any]:
    """Optimisation history, parameter importances and parallel coordinates, as matplotlib figures.

    Importances need two completed trials that differ: with fewer, that figure is left out (and said).
    """
    from optuna.visualization import matplotlib as plots

    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, plot in (
            ("optimization_history", plots.plot_optimization_history),
            ("param_importances", plots.plot_param_importances),
            ("parallel_coordinate", plots.plot_parallel_coordinate),
        ):
            try:
                figures[name] = plot(study).figure
            except (RuntimeError, ValueError, ZeroDivisionError) as error:
                get_run_logger().warning("no %s figure: %s", name.replace("_", " "), error)
    return figures


@task(name="link-final-run", **LOGGING_TASK)
@reports_a_silent_server
def link_final_run(sweep_run_id: str, final_run_id: str) -> None:
    """Each of the sweep's run and the best config's training run names the other, for the MLflow UI."""
    client = mlflow_client()
    client.set_tag(sweep_run_id, "tune.final_run_id", final_run_id)
    client.set_tag(final_run_id, "tune.sweep_run_id", sweep_run_id)
