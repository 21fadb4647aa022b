"""MLflow tracking: the run's life cycle and what is logged to it (params, metrics, artifacts).

Every call names its run id explicitly (through `MlflowClient`): MLflow's active run is
thread-local, and a Prefect task may run in another thread than the one that started the run.
Models and the registry are `tasks.registry`'s job.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, ParamSpec, TypeVar

import httpx
import keras
import requests
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus
from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_RUN_NOTE
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.runtime import flow_run, task_run

from siamese.config import Config
from siamese.devices import DevicePlan
from siamese.evaluation import Calibration
from siamese.families import SourceFile, family_of
from siamese.sharing import SharingReport
from tasks.store import is_server, mask_credentials, mlflow_client, sqlite_database, tracking_uri

MAX_TAG_LENGTH = 5000  # MLflow's limit on a tag value
FAILURE_TAG = "failure"  # why a run failed
HOST_TAG, PID_TAG, PROCESS_TAG = "siamese.host", "siamese.pid", "siamese.process"  # the process that owns a run
DATASET_DIGEST_LENGTH = 36  # MLflow stores at most 36 characters of a dataset digest

P = ParamSpec("P")
R = TypeVar("R")


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server does not answer; the message names its URI."""


def retry_on_local_store(*_: object) -> bool:
    """Whether Prefect retries a failed logging task: only on a local store (`retry_condition_fn`).

    A local SQLite store fails transiently (another run holding its lock). A tracking server's
    requests were already retried by MLflow's HTTP client (`tasks.store.HTTP_REQUEST_DEFAULTS`):
    retrying the task too multiplied the wait, and a dead server hung a command for 17 minutes.
    """
    return not is_server(tracking_uri())


# A logging task: retried on a local store only (`retry_on_local_store`), never cached.
LOGGING_TASK = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": retry_on_local_store, "cache_policy": NO_CACHE}


def reports_a_silent_server(function: Callable[P, R]) -> Callable[P, R]:
    """`function`, its calls to a tracking server that stops answering failing with a message naming its step (`_server_answering`).

    The step is the Prefect task running it (or, called without one, the function's name).
    """

    @functools.wraps(function)
    def answered(*args: P.args, **kwargs: P.kwargs) -> R:
        with _server_answering(task_run.task_name or function.__name__.replace("_", "-")):
            return function(*args, **kwargs)

    return answered


@contextmanager
def _server_answering(step: str) -> Iterator[None]:
    """Turn MLflow's error for a tracking server that stopped answering into a `TrackingUnavailableError` naming `step`.

    MLflow raises it once its own bounded retries are spent, quoting the whole urllib3 chain and
    not what was being done. The command's one message should say which server, during which
    step (the Prefect task), and why: "tracking server http://host:5000 stopped answering during
    log-evaluation (POST /api/2.0/mlflow/runs/log-batch: [Errno 111] Connection refused, 3 tries)".
    """
    try:
        yield
    except MlflowException as error:
        request = _unanswered_request(error)
        if request is None:
            raise
        shown = mask_credentials(tracking_uri())
        raise TrackingUnavailableError(f"tracking server {shown} stopped answering during {step} ({request})") from error


def _unanswered_request(error: BaseException) -> str | None:
    """The request a server did not answer and what it met (`POST /api/...: timed out, 3 tries`); None for other errors."""
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    unanswered = next((cause for cause in chain if isinstance(cause, (requests.ConnectionError, requests.Timeout))), None)
    if unanswered is None:
        return None
    request = f"{unanswered.request.method} {unanswered.request.path_url}: " if unanswered.request is not None else ""
    met = str(chain[-1]) or type(chain[-1]).__name__  # the socket's own words: "[Errno 111] Connection refused", "timed out"
    return f"{request}{met}, {MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() + 1} tries"


@task(name="check-tracking-store", cache_policy=NO_CACHE)
def check_tracking_store(attempts: int = 3, delay_seconds: float = 2.0) -> str:
    """Fail fast, before any work, when a tracking server does not answer `/health`; return its URI, password masked.

    MLflow's own client retries a dead server for minutes; this bounded check (a few seconds)
    stops the flow first, so nothing is half-logged and the registry's aliases stay untouched.
    A local SQLite store needs no check.

    Raises:
        TrackingUnavailableError: naming the URI and the last error.
    """
    uri = tracking_uri()
    if not is_server(uri):
        return uri
    shown = mask_credentials(uri)  # the URI may carry a password: never print or store it
    last_error = ""
    for attempt in range(attempts):
        try:
            response = httpx.get(f"{uri.rstrip('/')}/health", timeout=5)
            if response.status_code == 200:
                return shown
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last_error = f"{type(error).__name__}: {error}"
        if attempt + 1 < attempts:
            time.sleep(delay_seconds)
    raise TrackingUnavailableError(
        mask_credentials(
            f"MLflow tracking server {shown} is unreachable after {attempts} attempts ({last_error}); "
            "check MLFLOW_TRACKING_URI and that the server is running"
        )
    )


@task(name="start-mlflow-run", cache_policy=NO_CACHE)
@reports_a_silent_server
def start_run(config: Config) -> str:
    """Create the MLflow run, in the kind's experiment, with the whole config as params and links to Prefect and git."""
    run_id = open_run.fn(family_of(config.kind).experiment, _run_name(config), _run_description(config), config.to_params())
    mlflow_client().log_dict(run_id, config.to_dict(), "config.json")
    return run_id


@task(name="open-mlflow-run", cache_policy=NO_CACHE)
@reports_a_silent_server
def open_run(
    experiment: str, run_name: str, description: str, params: dict[str, object], tags: dict[str, str] | None = None
) -> str:
    """Create a RUNNING run in `experiment` that names its Prefect flow run, git commit and owning process; log `params`.

    `tags` add to those (a sweep's trial: `mlflow.parentRunId`, which nests it under the sweep's run).
    """
    client = mlflow_client()
    tags = {
        "prefect.flow_run_id": flow_run.id,
        "prefect.flow_run_name": flow_run.name,
        "mlflow.source.git.commit": _git_commit(),
        MLFLOW_RUN_NOTE: description,
    } | (tags or {})
    run = client.create_run(
        _experiment_id(client, experiment), run_name=run_name, tags={key: value for key, value in (tags | owner_tags()).items() if value}
    )
    client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in params.items()])
    return run.info.run_id


def _run_name(config: Config) -> str:
    """What a run is, at a glance in the runs table: `text questions.csv symmetric seed 0`."""
    return f"{config.kind} {family_of(config.kind).data_name(config)} {config.model.head} seed {config.seed}"


def _run_description(config: Config) -> str:
    """The run page's description: what was trained on what, and where its Prefect flow run is."""
    training = config.training
    return (
        f"A {config.kind} Siamese model ({config.model.head} head, {config.task}) trained on "
        f"{family_of(config.kind).data_name(config)} for up to {training.epochs} epochs (batch {training.batch_size}, learning "
        f"rate {training.learning_rate:g}), seed {config.seed}. Prefect flow run: {flow_run.name} ({flow_run.id})."
    )


@task(name="log-training", **LOGGING_TASK)
@reports_a_silent_server
def log_training(run_id: str, plan: DevicePlan, seconds: float, pairs_per_second: float, split_sizes: dict[str, int]) -> None:
    """Record which devices trained, how fast, and on how many pairs."""
    params = {f"devices.{key}": ",".join(value) if isinstance(value, tuple) else value for key, value in plan.to_dict().items()}
    params |= {f"data.{name}_pairs": size for name, size in split_sizes.items()}
    metrics = {"train/seconds": seconds, "train/pairs_per_second": pairs_per_second}
    _log(run_id, params=params, metrics=metrics)


@task(name="log-dataset", **LOGGING_TASK)
@reports_a_silent_server
def log_dataset(run_id: str, source: SourceFile, split_sizes: dict[str, int]) -> None:
    """Log the pair file as the run's MLflow dataset input: path, content hash, rows per split.

    The run page's Datasets panel then traces the model to the exact file it learned from.
    """
    profile = {"file_rows": source.total_rows, "dropped_rows": source.dropped_rows} | {
        f"{name}_rows": size for name, size in split_sizes.items()
    }
    dataset = Dataset(
        name=Path(source.path).name,
        digest=source.content_hash[:DATASET_DIGEST_LENGTH],
        # What mlflow.data records for a local file: the UI shows the path as the source.
        source_type="local",
        source=json.dumps({"uri": source.path}),
        profile=json.dumps(profile),
    )
    client = mlflow_client()
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])])
    params = {
        "data.sha256": source.content_hash,
        "data.columns": ", ".join(source.columns),
        "data.file_rows": source.total_rows,
        "data.dropped_rows": source.dropped_rows,
    }
    _log(run_id, params=params, metrics={"data/dropped_rows": source.dropped_rows}, client=client)
    if source.dropped:
        client.log_dict(run_id, source.dropped, "data/dropped_rows.json")


@task(name="log-sharing-report", **LOGGING_TASK)
@reports_a_silent_server
def log_sharing_report(run_id: str, report: SharingReport) -> None:
    """The full report as JSON, its headline numbers as `sharing/...` metrics."""
    mlflow_client().log_dict(run_id, report.to_dict(), "sharing/report.json")
    metrics = {
        "sharing/passed": float(report.passed),
        "sharing/failed_checks": float(len(report.failures())),
        "sharing/encoder_params": report.encoder_params,
        "sharing/head_params": report.head_params,
        "sharing/total_params": report.total_params,
        "sharing/unshared_params": report.unshared_params,
        "sharing/params_saved": report.params_saved,
        "sharing/max_encoding_difference": report.max_encoding_difference,
    }
    _log(run_id, metrics=metrics)


@task(name="log-evaluation", **LOGGING_TASK)
@reports_a_silent_server
def log_evaluation(
    run_id: str,
    metrics: dict[str, float],
    confusion_matrix: list[list[int]] | None,
    plots: list[Path],
    baselines: dict[str, float],
    calibration: Calibration | None = None,
) -> None:
    """Test metrics as `test/...`, baselines on the same split as `baseline/...`, the decision
    threshold chosen on the validation split as `calibration/...` (`threshold`, `f1`,
    `equal_error_rate`, `equal_error_threshold`), the confusion matrix (if any) as JSON, the
    plots as PNG artifacts."""
    client = mlflow_client()
    logged = {f"test/{key}": value for key, value in metrics.items()}
    logged |= {f"baseline/{key}": value for key, value in baselines.items()}
    if calibration is not None:
        logged |= {f"calibration/{key}": value for key, value in dataclasses.asdict(calibration).items()}
    _log(run_id, metrics=logged)
    if confusion_matrix is not None:
        labels = ["different (0)", "same (1)"]
        matrix = {"rows_true": labels, "columns_predicted": labels, "counts": confusion_matrix}
        client.log_dict(run_id, matrix, "evaluation/confusion_matrix.json")
    for plot in plots:
        client.log_artifact(run_id, str(plot), "evaluation")


@task(name="end-mlflow-run", **LOGGING_TASK)
def end_run(run_id: str, failure: str | None) -> None:
    """Mark the run FINISHED, or FAILED with the reason as its `failure` tag.

    The UI then never shows a half-done run as complete, and says why it failed. A failed run's
    tracking server gets one look first (`check_tracking_store`, 5 s at most): when the run failed
    because the server stopped answering, waiting out MLflow's retries again would only delay the
    message. A run that cannot be marked stays RUNNING until the next `siamese train` or `retrain`
    on this host fails it (`fail_orphaned_runs`: the run names its process).

    Raises:
        TrackingUnavailableError: the server does not answer; a failed run's message starts with `failure`.
    """
    client = mlflow_client()
    try:
        with _server_answering(task_run.task_name or "end-mlflow-run"):
            if failure is not None:
                check_tracking_store.fn(attempts=1)
            # The status first: if the store then fails (a full disk), the run is at least not left RUNNING.
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED if failure else RunStatus.FINISHED))
    except TrackingUnavailableError as error:
        if failure is None:
            raise
        raise TrackingUnavailableError(_left_running(run_id, failure)) from error
    if failure is not None:
        client.set_tag(run_id, FAILURE_TAG, mask_credentials(failure)[:MAX_TAG_LENGTH])


@contextmanager
def ended_run(run_id: str) -> Iterator[str]:
    """Yield `run_id`; end the run FINISHED, or FAILED with the error or interruption that stopped the block.

    An interrupted run (Ctrl-C, SIGTERM) is ended by the MLflow client directly, not by a task:
    the process is on its way out, and one status write must not wait on Prefect's API.
    """
    try:
        yield run_id
    except (KeyboardInterrupt, TerminationSignal) as interruption:
        end_run.fn(run_id, interrupted(interruption))
        raise
    except BaseException as error:
        end_run(run_id, f"{type(error).__name__}: {error}")
        raise
    end_run(run_id, None)


def interrupted(interruption: KeyboardInterrupt | TerminationSignal) -> str:
    """The failure reason of an interrupted run: `interrupted (SIGINT)`, `interrupted (SIGTERM)`."""
    if isinstance(interruption, TerminationSignal):
        return f"interrupted ({signal.Signals(interruption.signal).name})"
    return f"interrupted ({str(interruption) or 'SIGINT'})"  # the command line's `Interrupted` names its signal


def _left_running(run_id: str, failure: str) -> str:
    """The message of a failed run its server would not let us mark: why it failed, then what becomes of it."""
    reason = mask_credentials(failure.removeprefix(f"{TrackingUnavailableError.__name__}: "))
    return (
        f"{reason}; the server does not answer now either, so run {run_id} stays RUNNING until the next "
        "siamese train or retrain on this host marks it FAILED"
    )


@task(name="fail-orphaned-runs", cache_policy=NO_CACHE)
def fail_orphaned_runs() -> list[str]:
    """Mark FAILED the store's RUNNING runs whose process on this machine has died; return their ids.

    A run killed with SIGKILL, or whose machine lost power, never ends itself. Each run records
    the host, PID and start of the process that owns it (`owner_tags`); the next command on that
    host to use the store finds runs whose process is gone and fails them, saying why. Runs of
    other hosts are left to their own host's next command: their processes cannot be seen here.
    """
    client = mlflow_client()
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    if not experiments:
        return []
    running = client.search_runs(
        experiments, f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{socket.gethostname()}'", max_results=1000
    )
    orphans = [run for run in running if not _owner_alive(run.data.tags)]
    for run in orphans:
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
        owner = f"pid {run.data.tags.get(PID_TAG)} on {run.data.tags.get(HOST_TAG)}"
        found = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        client.set_tag(run.info.run_id, FAILURE_TAG, f"its process ({owner}) ended without ending the run: killed or lost; found {found}")
    return [run.info.run_id for run in orphans]


def owner_tags() -> dict[str, str]:
    """Tags naming the process that owns a run: host, PID and, on Linux, which process had that PID."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), PROCESS_TAG: _process_identity(os.getpid()) or ""}


def _owner_alive(tags: dict[str, str]) -> bool:
    """Whether the process named by a run's `owner_tags` still runs (True when that cannot be known)."""
    try:
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return True
    if tags.get(PROCESS_TAG):  # a reused PID belongs to a process started at another time (or boot)
        return _process_identity(pid) == tags[PROCESS_TAG]
    return process_exists(pid)


def process_exists(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (another user's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _process_identity(pid: int) -> str | None:
    """The boot and start time of process `pid` (Linux `/proc`); None when it is gone or there is no `/proc`."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    started = stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime; the command name before it may hold spaces
    return f"{boot}:{started}"


def epoch_metrics_logger(run_id: str) -> keras.callbacks.Callback:
    """A Keras callback logging each epoch's `train/...` and `val/...` metrics to `run_id`.

    Keras' `learning_rate` (in the logs when the rate can drop on a plateau) becomes `train/learning_rate`.
    """
    return _EpochMetricsLogger(run_id)


@reports_a_silent_server
def log_derived_params(run_id: str, params: dict[str, object]) -> None:
    """Run params the config left to the data: the split a folder got (`PreparedSplits.params`), word-vector coverage (`BuiltModel.params`)."""
    if params:
        _log(run_id, params=params)


@task(name="log-metrics", **LOGGING_TASK)
@reports_a_silent_server
def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    """A run's final counts and timings (a collection's dedupe), as MLflow metrics."""
    _log(run_id, metrics=metrics)


@reports_a_silent_server
def log_stopping(run_id: str, stopped_epoch: int, best_epoch: int | None) -> None:
    """Where training stopped (`train/stopped_epoch`, epochs run) and which epoch's weights it kept (`train/best_epoch`).

    Both 1-based. `train/best_epoch` is absent when no validation metric chose one.
    """
    metrics = {"train/stopped_epoch": stopped_epoch} | ({} if best_epoch is None else {"train/best_epoch": best_epoch})
    _log(run_id, metrics=metrics)


class _EpochMetricsLogger(keras.callbacks.Callback):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self._run_id = run_id
        self._client = mlflow_client()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {_metric_key(name): value for name, value in (logs or {}).items()}
        # A dead server stops training within seconds (bounded HTTP retries), naming this step.
        step = f"{task_run.task_name}'s per-epoch metric logging" if task_run.task_name else "per-epoch metric logging"
        with _server_answering(step):
            _log(self._run_id, metrics=metrics, step=epoch, client=self._client)


def _metric_key(keras_name: str) -> str:
    """`loss` -> `train/loss`, `val_auc` -> `val/auc`."""
    if keras_name.startswith("val_"):
        return f"val/{keras_name.removeprefix('val_')}"
    return f"train/{keras_name}"


def _log(
    run_id: str,
    params: dict[str, object] | None = None,
    metrics: dict[str, float] | None = None,
    step: int = 0,
    client: MlflowClient | None = None,
) -> None:
    timestamp = int(time.time() * 1000)
    (client or mlflow_client()).log_batch(
        run_id,
        metrics=[Metric(key, float(value), timestamp, step) for key, value in (metrics or {}).items()],
        params=[Param(key, str(value)) for key, value in (params or {}).items()],
    )


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    database = sqlite_database(tracking_uri())
    if database is not None:
        # Keep artifacts beside the SQLite database, not in whatever directory MLflow defaults to.
        artifact_location = (database.parent / "artifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # another run created it a moment ago: use theirs
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None
