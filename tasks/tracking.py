"""All MLflow code: where the store is, the run's life cycle, what is logged and registered.

Every call names its run id explicitly (through `MlflowClient`): MLflow's active run is
thread-local, and a Prefect task may run in another thread than the one that started the run.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import httpx
import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    RunStatus,
)
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_RUN_NOTE
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

import siamese
from siamese.config import Config, ModelKind, SequenceDataConfig, Task, TextFileDataConfig
from siamese.data.sources import Pairs, in_memory, load_split
from siamese.data.text_pairs import TextPairs
from siamese.devices import DevicePlan
from siamese.gate import Decision, GateResult, judge_challenger, judge_first_model
from siamese.sharing import SharingReport
from tasks.data import SourceFile
from tasks.store import tracking_uri

EXAMPLE_PAIRS = 2  # pairs saved with the model as its input example
MAX_TAG_LENGTH = 5000  # MLflow's limit on a tag value
DATASET_DIGEST_LENGTH = 36  # MLflow stores at most 36 characters of a dataset digest
CHAMPION, CHALLENGER = "champion", "challenger"  # registry aliases
TEXT_PAIR_SCORER = Path(__file__).with_name("text_pair_scorer.py")  # the pyfunc of text pair models, logged as code


def model_name(kind: ModelKind | str) -> str:
    """The experiment of a model kind: `siamese-text`, `siamese-vision`."""
    return f"siamese-{ModelKind(kind)}"


def registered_model_name(config: Config) -> str:
    """The registered model a run's version joins: one name per input contract.

    Every version of a name takes the same inputs, so `models:/siamese-text@champion` always
    scores raw text pairs: `siamese-text` (text pair files), `siamese-text-sequences`
    (generated float sequences, the reference input), `siamese-vision` (image pairs).
    """
    if config.kind is ModelKind.TEXT and not isinstance(config.data, TextFileDataConfig):
        return f"{model_name(config.kind)}-sequences"
    return model_name(config.kind)


def ui_command() -> str:
    """The command that opens the MLflow UI on this run's store."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    # The mlflow beside this interpreter: it works without activating the virtual environment.
    installed = Path(sys.executable).with_name("mlflow")
    program = os.path.relpath(installed) if installed.exists() else "mlflow"
    return f"{program} ui --backend-store-uri {uri}"


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server does not answer; the message names its URI."""


@task(name="check-tracking-store", cache_policy=NO_CACHE)
def check_tracking_store(attempts: int = 3, delay_seconds: float = 2.0) -> str:
    """Fail fast, before any work, when a tracking server does not answer `/health`.

    MLflow's own client retries a dead server for minutes; this bounded check (a few seconds)
    stops the flow first, so nothing is half-logged and the registry's aliases stay untouched.
    A local SQLite store needs no check.

    Raises:
        TrackingUnavailableError: naming the URI and the last error.
    """
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return uri
    last_error = ""
    for attempt in range(attempts):
        try:
            response = httpx.get(f"{uri.rstrip('/')}/health", timeout=5)
            if response.status_code == 200:
                return uri
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last_error = f"{type(error).__name__}: {error}"
        if attempt + 1 < attempts:
            time.sleep(delay_seconds)
    raise TrackingUnavailableError(
        f"MLflow tracking server {uri} is unreachable after {attempts} attempts ({last_error}); "
        "check MLFLOW_TRACKING_URI and that the server is running"
    )


@task(name="start-mlflow-run", cache_policy=NO_CACHE)
def start_run(config: Config) -> str:
    """Create the MLflow run, in the kind's experiment, with the whole config as params and links to Prefect and git."""
    client = _client()
    tags = {
        "prefect.flow_run_id": flow_run.id,
        "prefect.flow_run_name": flow_run.name,
        "mlflow.source.git.commit": _git_commit(),
        MLFLOW_RUN_NOTE: _run_description(config),
    }
    run = client.create_run(
        _experiment_id(client, model_name(config.kind)),
        run_name=_run_name(config),
        tags={key: value for key, value in tags.items() if value},
    )
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(key, value) for key, value in config.to_params().items()])
    client.log_dict(run_id, config.to_dict(), "config.json")
    return run_id


def _run_name(config: Config) -> str:
    """What a run is, at a glance in the runs table: `text questions.csv symmetric seed 0`."""
    return f"{config.kind} {_data_source(config)} {config.model.head} seed {config.seed}"


def _data_source(config: Config) -> str:
    data = config.data
    if getattr(data, "path", ""):
        return Path(data.path).name
    return str(data.mode) if isinstance(data, SequenceDataConfig) else str(data.source)


def _run_description(config: Config) -> str:
    """The run page's description: what was trained on what, and where its Prefect flow run is."""
    training = config.training
    return (
        f"A {config.kind} Siamese model ({config.model.head} head, {config.task}) trained on "
        f"{_data_source(config)} for {training.epochs} epochs (batch {training.batch_size}, learning "
        f"rate {training.learning_rate:g}), seed {config.seed}. Prefect flow run: {flow_run.name} ({flow_run.id})."
    )


@task(name="log-training", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def log_training(run_id: str, plan: DevicePlan, seconds: float, pairs_per_second: float, split_sizes: dict[str, int]) -> None:
    """Record which devices trained, how fast, and on how many pairs."""
    params = {f"devices.{key}": ",".join(value) if isinstance(value, tuple) else value for key, value in plan.to_dict().items()}
    params |= {f"data.{name}_pairs": size for name, size in split_sizes.items()}
    metrics = {"train/seconds": seconds, "train/pairs_per_second": pairs_per_second}
    _log(run_id, params=params, metrics=metrics)


@task(name="log-dataset", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def log_dataset(run_id: str, source: SourceFile, split_sizes: dict[str, int]) -> None:
    """Log the pair file as the run's MLflow dataset input: path, content hash, rows per split.

    The run page's Datasets panel then traces the model to the exact file it learned from.
    """
    profile = {"file_rows": source.total_rows, "dropped_rows": source.dropped_rows} | {
        f"{name}_rows": size for name, size in split_sizes.items()
    }
    columns = source.columns
    dataset = Dataset(
        name=Path(source.path).name,
        digest=source.content_hash[:DATASET_DIGEST_LENGTH],
        # What mlflow.data records for a local file: the UI shows the path as the source.
        source_type="local",
        source=json.dumps({"uri": source.path}),
        profile=json.dumps(profile),
    )
    client = _client()
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])])
    params = {
        "data.sha256": source.content_hash,
        "data.columns": f"{columns.left}, {columns.right}, {columns.label}",
        "data.file_rows": source.total_rows,
        "data.dropped_rows": source.dropped_rows,
    }
    _log(run_id, params=params, metrics={"data/dropped_rows": source.dropped_rows}, client=client)
    if source.dropped:
        client.log_dict(run_id, source.dropped, "data/dropped_rows.json")


@task(name="log-sharing-report", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def log_sharing_report(run_id: str, report: SharingReport) -> None:
    """The full report as JSON, its headline numbers as `sharing/...` metrics."""
    _client().log_dict(run_id, report.to_dict(), "sharing/report.json")
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


@task(name="log-evaluation", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def log_evaluation(
    run_id: str,
    metrics: dict[str, float],
    confusion_matrix: list[list[int]] | None,
    plots: list[Path],
    baselines: dict[str, float],
) -> None:
    """Test metrics as `test/...`, baselines on the same split as `baseline/...`, the
    confusion matrix (if any) as JSON, the plots as PNG artifacts."""
    client = _client()
    logged = {f"test/{key}": value for key, value in metrics.items()}
    _log(run_id, metrics=logged | {f"baseline/{key}": value for key, value in baselines.items()})
    if confusion_matrix is not None:
        labels = ["different (0)", "same (1)"]
        matrix = {"rows_true": labels, "columns_predicted": labels, "counts": confusion_matrix}
        client.log_dict(run_id, matrix, "evaluation/confusion_matrix.json")
    for plot in plots:
        client.log_artifact(run_id, str(plot), "evaluation")


@task(name="log-and-register-model", cache_policy=NO_CACHE)
def log_and_register_model(
    run_id: str, model: keras.Model, model_path: Path, example_path: Path, config: Config
) -> dict[str, object]:
    """Log the model with signature and input example; register it as a new version.

    Image and sequence models are logged in MLflow's Keras flavour. A text pair model is
    logged as a pyfunc that takes a DataFrame of raw `left` and `right` strings. The version
    gets the alias `challenger`; only the gate (`gate_challenger`) moves `champion`.

    Args:
        model: the trained model, in memory (the Keras flavour saves it).
        model_path: the `.keras` file it was saved to (the text pair pyfunc ships that file).
    """
    example = in_memory(load_split(example_path), EXAMPLE_PAIRS, model.inputs[0].shape)
    client = _client()
    client.log_text(run_id, _summary(model), "model_summary.txt")
    experiment_id = client.get_run(run_id).info.experiment_id  # else MLflow files it under "Default"
    logged = mlflow.initialize_logged_model(name="model", source_run_id=run_id, experiment_id=experiment_id)
    with tempfile.TemporaryDirectory(prefix="mlflow-model-") as directory:
        # Saved into an existing directory, then uploaded: mlflow.keras.log_model (3.17) writes the
        # input example before it creates its directory and fails (FileNotFoundError).
        if isinstance(example, TextPairs):
            _save_text_pair_model(model_path, directory, example)
        else:
            _save_keras_model(model, directory, example.inputs(), config.task)
        client.log_model_artifacts(logged.model_id, directory)
    mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    model_uri = f"models:/{logged.model_id}"
    registered = mlflow.register_model(model_uri, registered_model_name(config), tags={"run_id": run_id})
    client.set_registered_model_alias(registered.name, CHALLENGER, str(registered.version))
    return {"model_uri": model_uri, "name": registered.name, "version": str(registered.version), "aliases": [CHALLENGER]}


def _save_keras_model(model: keras.Model, directory: str, example: dict[str, np.ndarray], task: Task) -> None:
    mlflow.keras.save_model(
        model,
        directory,
        signature=_tensor_signature(model, task),
        input_example={side: array.astype(np.float32) for side, array in example.items()},
        pip_requirements=_requirements(),
    )


def _save_text_pair_model(model_path: Path, directory: str, example: TextPairs) -> None:
    """A pyfunc over the `.keras` file, logged as code with the `siamese` package it imports."""
    mlflow.pyfunc.save_model(
        directory,
        python_model=str(TEXT_PAIR_SCORER),
        artifacts={"keras_model": str(model_path)},
        code_paths=[str(Path(siamese.__file__).parent)],
        signature=ModelSignature(
            inputs=Schema([ColSpec("string", "left"), ColSpec("string", "right")]),
            outputs=Schema([ColSpec("double", "similarity")]),
        ),
        input_example=pd.DataFrame({"left": example.left, "right": example.right}),
        pip_requirements=_requirements() + [f"pandas=={version('pandas')}"],
    )


def _requirements() -> list[str]:
    # Explicit requirements: letting MLflow infer them costs seconds per run.
    return [f"tensorflow=={version('tensorflow')}", f"keras=={version('keras')}"]


class ScoringModelError(ValueError):
    """A model that cannot score raw text pairs; the message says which model to use instead."""


@task(name="load-text-pair-model", cache_policy=NO_CACHE)  # MLflow's HTTP client retries network errors itself
def load_text_pair_scorer(model_uri: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Load a registered text pair model; its `predict` takes a DataFrame of `left`, `right` strings.

    Raises:
        ScoringModelError: the model's signature takes something else (sequence tensors or
            images): the error names what it takes and which model scores raw text.
    """
    _client()  # points MLflow at the project's store, so `models:/...` resolves there
    model = mlflow.pyfunc.load_model(model_uri)
    inputs = model.metadata.get_input_schema()
    takes = {(spec.name, spec.type.name) for spec in inputs.inputs} if inputs is not None else set()
    if takes != {("left", "string"), ("right", "string")}:
        described = ", ".join(str(spec) for spec in inputs.inputs) if inputs is not None else "no signature"
        raise ScoringModelError(
            f"{model_uri} does not take raw text pairs (it takes {described}): score with a model "
            f"trained on a text pair file (`siamese train --data pairs.csv`), e.g. models:/{model_name('text')}@{CHAMPION}"
        )
    return model.predict


@task(name="gate-challenger", cache_policy=NO_CACHE)
def gate_challenger(
    run_id: str, registered: dict[str, object], test_path: Path, config: Config, against_champion: bool
) -> GateResult | None:
    """Decide whether the new version becomes `champion`, on its run's held-out test pairs.

    With no champion yet, the version must reach the quality bar (`gate.min_quality`). With a
    champion, `against_champion` compares both versions, loaded from the registry, on the same
    pairs (paired bootstrap, `siamese.gate`); without it (plain training) the champion is left
    alone and None is returned. A version that fails to load is never promoted. The decision is
    recorded on both versions (tags, description) and on the run.
    """
    client = _client()
    name, version = str(registered["name"]), str(registered["version"])
    champion_version = client.get_registered_model(name).aliases.get(CHAMPION)  # an int
    champion = None if champion_version is None else str(champion_version)
    if champion is not None and not against_champion:
        return None
    test = load_split(test_path)
    metric = config.gate.metric_for(config.task)
    challenger_scores = _registry_scores(f"models:/{name}/{version}", test)
    if champion is None:
        bar = config.gate.quality_bar(config.task)
        result = judge_first_model(test.labels, challenger_scores, metric=metric, min_quality=bar)
    else:
        gate = config.gate
        result = judge_challenger(
            test.labels,
            challenger_scores,
            _registry_scores(f"models:/{name}/{champion}", test),
            metric=metric,
            min_improvement=gate.min_improvement,
            bootstrap_samples=gate.bootstrap_samples,
            confidence=gate.confidence,
            seed=config.seed,
        )
    _record_gate(client, run_id, name, version, champion, result)
    if result.decision is Decision.PROMOTE:
        client.set_registered_model_alias(name, CHAMPION, version)
    return result


def _registry_scores(model_uri: str, test: Pairs, chunk_bytes: int = 64 << 20) -> np.ndarray:
    """A registered version's scores on a test split, through its pyfunc: what serving would return.

    Tensor inputs are read and scored about `chunk_bytes` of float32 at a time, so a test split
    larger than memory (shards, image files) is never held whole: only its scores are.
    """
    model = mlflow.pyfunc.load_model(model_uri)
    if isinstance(test, TextPairs):
        return model.predict(pd.DataFrame({"left": test.left, "right": test.right}))["similarity"].to_numpy()
    shape = model.metadata.get_input_schema().inputs[0].shape
    if not len(test):
        return np.zeros(0, np.float32)
    # One pair read (not scored: each new batch shape traces Keras' predict again) gives its size.
    pair_bytes = sum(4 * array[0].size for array in in_memory(test, 1, shape).inputs().values())
    chunk_pairs = max(1, chunk_bytes // pair_bytes)
    scores = []
    for start in range(0, len(test), chunk_pairs):
        chunk = in_memory(test.take(slice(start, start + chunk_pairs)), chunk_pairs, shape)
        inputs = {side: array.astype(np.float32) for side, array in chunk.inputs().items()}
        scores.append(np.asarray(model.predict(inputs)).reshape(-1))
    return np.concatenate(scores)


def _record_gate(
    client: MlflowClient, run_id: str, name: str, version: str, champion: str | None, result: GateResult
) -> None:
    """The decision and its numbers as `gate.*` tags on the challenger (and its run), a note on the champion."""
    tags = {f"gate.{key}": "" if value is None else str(value) for key, value in result.to_dict().items()}
    tags["gate.champion_version"] = champion or ""
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(run_id, key, value[:MAX_TAG_LENGTH])
    client.update_model_version(name, version, description=f"Gate: {result.decision} - {result.reason}")
    if champion is not None:
        client.set_model_version_tag(name, champion, "gate.last_challenge", f"version {version}: {result.decision} - {result.reason}"[:MAX_TAG_LENGTH])


@task(name="end-mlflow-run", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def end_run(run_id: str, failure: str | None) -> None:
    """Mark the run FINISHED, or FAILED with the reason as its `failure` tag.

    The UI then never shows a half-done run as complete, and says why it failed.
    """
    client = _client()
    if failure is not None:
        client.set_tag(run_id, "failure", failure[:MAX_TAG_LENGTH])
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED if failure else RunStatus.FINISHED))


def epoch_metrics_logger(run_id: str) -> keras.callbacks.Callback:
    """A Keras callback logging each epoch's `train/...` and `val/...` metrics to `run_id`."""
    return _EpochMetricsLogger(run_id)


class _EpochMetricsLogger(keras.callbacks.Callback):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self._run_id = run_id
        self._client = _client()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {_metric_key(name): value for name, value in (logs or {}).items()}
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
    (client or _client()).log_batch(
        run_id,
        metrics=[Metric(key, float(value), timestamp, step) for key, value in (metrics or {}).items()],
        params=[Param(key, str(value)) for key, value in (params or {}).items()],
    )


def _client() -> MlflowClient:
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    database = _sqlite_database(uri)
    if database is None or uri in _READY_STORES:
        return MlflowClient(uri)
    client = _open_sqlite_store(uri, database)
    _READY_STORES.add(uri)
    return client


_READY_STORES: set[str] = set()  # SQLite stores this process has opened (and created or migrated)


def _open_sqlite_store(uri: str, database: Path) -> MlflowClient:
    """Open a SQLite store for tracking and the registry under a file lock.

    Opening a store creates or migrates its schema. Two runs starting at once on a new store
    would both migrate it, and one would fail; the lock makes the second wait and then find
    the store up to date. MLflow caches the opened stores for the rest of the process.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f"{database.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = MlflowClient(uri)
            client.search_registered_models(max_results=1)  # opens the registry's store too
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return client


def _sqlite_database(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    database = _sqlite_database(tracking_uri())
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


def _tensor_signature(model: keras.Model, task: Task) -> ModelSignature:
    """float32 `left` and `right` in the model's input shapes (sequences or pixels), one number per pair out."""
    float32 = np.dtype("float32")
    inputs = [TensorSpec(float32, tuple(-1 if size is None else size for size in tensor.shape), tensor.name) for tensor in model.inputs]
    output = "similarity" if task is Task.SIMILARITY else "prediction"
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([TensorSpec(float32, (-1, 1), output)]))


def _summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), expand_nested=True)
    return "\n".join(lines)


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None
