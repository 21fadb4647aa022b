"""The MLflow model registry: log a run's model, register it, read and move aliases, load versions.

A family's `model_format` decides how its model is logged: the Keras flavour (tensors in) or a
pyfunc over the `.keras` file (raw text in). Either way the logged model holds built-in Keras
layers only, so a registered version loads in a fresh process with nothing of this project
imported. A similarity model carries its decision threshold in its MLflow metadata
(`mlflow.models.get_model_info(uri).metadata["threshold"]`), so deciding needs no run. A model of
graded scores carries the scale it predicts on (`score_min`, `score_max`) there instead.

Registration and alias moves are transactions against concurrent runs on one store
(`registry_transaction`): a run moves `champion` only if it still points where the gate judged it
did, and a run that fails after registering takes its version back (`retract_version`).
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Iterator

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec
from prefect import task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config, ModelKind, Task
from siamese.data.pairs import Pairs
from siamese.embedding import Embedder
from siamese.families import ModelFormat, family_of
from siamese.locks import FileLock
from siamese.models.layers import score_scale
from tasks.model_files import load_model_file
from tasks.store import mlflow_client, sqlite_database, tracking_uri
from tasks.tracking import MAX_TAG_LENGTH, reports_a_silent_server

EXAMPLE_PAIRS = 2  # pairs saved with the model as its input example
CHAMPION, CHALLENGER = "champion", "challenger"  # registry aliases
TEXT_PAIR_SCORER = Path(__file__).with_name("text_pair_scorer.py")  # the pyfunc of raw-text models, logged as code
SIAMESE_PACKAGE = Path(__file__).resolve().parents[1] / "siamese"  # copied into raw-text models: their embeddings use it
SCORING_CHUNK_BYTES = 64 << 20  # float32 inputs scored at a time through a pyfunc
THRESHOLD_KEY = "threshold"  # in a similarity model's metadata and version tags: similar when similarity >= it
THRESHOLD_RULE = "similar when similarity >= threshold; the threshold of maximum F1 on the validation split"
SCALE_KEYS = ("score_min", "score_max")  # a graded-score model's scale: metadata, version tags, `data.` run params
STATUS_TAG, FAILURE_TAG = "siamese.status", "siamese.failure"  # on a version whose run failed: "failed", and why
PREVIOUS_CHAMPION_TAG = "siamese.previous_champion"  # set when a version takes `champion`: where to return it on failure
REGISTRY_LOCK_TIMEOUT_SECONDS = 60.0  # a registry transaction takes milliseconds; longer means a stuck process holds the lock


class ScoringModelError(ValueError):
    """A model that cannot score raw text pairs; the message says which model to use instead."""


class IncompatibleVersionError(ValueError):
    """A new version takes other inputs than its registered model's champion; the message names both."""


class RegistryLockTimeout(RuntimeError):
    """Another process held the store's registry lock for longer than any transaction takes; the message names the lock file."""


@dataclass(frozen=True)
class TextPairModel:
    """A loaded raw-text model: its scorer, and the decision threshold it was registered with."""

    predict: Callable[[pd.DataFrame], pd.DataFrame]  # DataFrame(left, right) -> DataFrame(similarity, ...)
    threshold: float | None  # None: a version registered before thresholds were stored, or a graded one
    scale: tuple[float, float] | None = None  # a graded-score model's (lowest, highest) score; None: 0..1
    keras_model: keras.Model | None = None  # the Keras model the pyfunc wraps: its encoder and head


@task(name="log-and-register-model", cache_policy=NO_CACHE)
@reports_a_silent_server
def log_and_register_model(
    run_id: str, model_path: Path, example_path: Path, config: Config, threshold: float | None = None
) -> dict[str, object]:
    """Log the model with signature and input example under the run; register it as a new version, alias `challenger`.

    A similarity model's `threshold` (calibrated on the validation split) goes into the model's
    metadata, where `siamese score` reads it, and a `threshold` tag on the version, where the
    registry UI shows it; a raw-text model's pyfunc then adds an `is_similar` column itself.
    A model of graded scores (`on_score_scale`) records the scale it predicts on the same way
    (`score_min`, `score_max`), and as the run's `data.score_min` and `data.score_max` params.
    The registered model is the family's for the config (`Family.registered_model_name`: graded
    text models have their own). Only the gate moves `champion`.
    """
    family = family_of(config.kind)
    model = load_model_file(model_path)
    example = family.load_split(config, example_path).head(EXAMPLE_PAIRS)
    client = mlflow_client()
    client.log_text(run_id, _summary(model), "model_summary.txt")
    scale = _scale_metadata(model)
    for key, value in scale.items():
        client.log_param(run_id, f"data.{key}", value)
    metadata = (_threshold_metadata(threshold) or {}) | scale or None
    experiment_id = client.get_run(run_id).info.experiment_id  # else MLflow files it under "Default"
    logged = mlflow.initialize_logged_model(name="model", source_run_id=run_id, experiment_id=experiment_id)
    with tempfile.TemporaryDirectory(prefix="mlflow-model-") as directory:
        # Saved into an existing directory, then uploaded: mlflow.keras.log_model (3.17) writes the
        # input example before it creates its directory and fails (FileNotFoundError).
        if family.model_format is ModelFormat.RAW_TEXT:
            _save_raw_text_model(model_path, directory, example, threshold, metadata)
        else:
            _save_keras_model(model, directory, example.inputs(), config.task, metadata)
        client.log_model_artifacts(logged.model_id, directory)
    mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    model_uri = f"models:/{logged.model_id}"
    tags = {"run_id": run_id} | {key: str(value) for key, value in (metadata or {}).items() if key != "threshold_rule"}
    with registry_transaction():  # a new registered model and its first versions, created by concurrent runs
        registered = mlflow.register_model(model_uri, family.registered_model_name(config), tags=tags)
        client.set_registered_model_alias(registered.name, CHALLENGER, str(registered.version))
    return {"model_uri": model_uri, "name": registered.name, "version": str(registered.version), "aliases": [CHALLENGER]}


def _save_keras_model(
    model: keras.Model, directory: str, example: dict[str, np.ndarray], task: Task, metadata: dict[str, object] | None
) -> None:
    mlflow.keras.save_model(
        model,
        directory,
        signature=_tensor_signature(model, task),
        input_example={side: array.astype(np.float32) for side, array in example.items()},
        pip_requirements=_requirements(),
        metadata=metadata,
    )


def _save_raw_text_model(
    model_path: Path, directory: str, example, threshold: float | None, metadata: dict[str, object] | None
) -> None:
    """A pyfunc over the `.keras` file, logged as code (`text_pair_scorer.py`), with a copy of the `siamese` package.

    The threshold also goes into the pyfunc's model config, from which it adds `is_similar`;
    `mlflow.pyfunc.load_model(uri, model_config={"threshold": t})` decides at another one. A model
    of graded scores has no threshold: its `similarity` column is the score on the file's scale.
    Scoring similarity imports nothing of the project; the params schema's `output` = "embedding"
    returns each side's embedding instead, computed by the model's copy of `siamese`
    (`code_paths`). The outputs schema describes the default output only: MLflow does not enforce it.
    """
    outputs = [ColSpec("double", "similarity")] + ([] if threshold is None else [ColSpec("boolean", "is_similar")])
    mlflow.pyfunc.save_model(
        directory,
        python_model=str(TEXT_PAIR_SCORER),
        artifacts={"keras_model": str(model_path)},
        code_paths=[str(SIAMESE_PACKAGE)],
        signature=ModelSignature(
            inputs=Schema([ColSpec("string", "left"), ColSpec("string", "right")]),  # the gate compares these: keep them
            outputs=Schema(outputs),
            params=ParamSchema([ParamSpec("output", "string", "similarity")]),  # or "embedding" (text_pair_scorer.OUTPUTS)
        ),
        input_example=pd.DataFrame({"left": example.left, "right": example.right}),
        pip_requirements=_requirements() + [f"{name}=={version(name)}" for name in ("pandas", "scipy", "pillow")],  # scipy, pillow: siamese
        metadata=metadata,
        model_config=None if threshold is None else {THRESHOLD_KEY: threshold},
    )


def _threshold_metadata(threshold: float | None) -> dict[str, object] | None:
    """The model's MLflow metadata: its decision threshold and the rule behind it (None without one)."""
    return None if threshold is None else {THRESHOLD_KEY: threshold, "threshold_rule": THRESHOLD_RULE}


def _scale_metadata(model: keras.Model) -> dict[str, float]:
    """The scale a graded-score model predicts on (`SCALE_KEYS`), empty for a 0..1 model."""
    scale = score_scale(model)
    return {} if scale is None else dict(zip(SCALE_KEYS, scale))


def _stored_threshold(metadata: dict[str, object] | None) -> float | None:
    """The decision threshold in a model's MLflow metadata; None for versions registered before thresholds were stored."""
    value = (metadata or {}).get(THRESHOLD_KEY)
    return None if value is None else float(value)


def _requirements() -> list[str]:
    # Explicit requirements: letting MLflow infer them costs seconds per run.
    return [f"tensorflow=={version('tensorflow')}", f"keras=={version('keras')}"]


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


def champion_version(name: str) -> str | None:
    """The version the `champion` alias points at, or None when there is no champion yet."""
    champion = mlflow_client().get_registered_model(name).aliases.get(CHAMPION)
    return None if champion is None else str(champion)


@contextmanager
def registry_transaction() -> Iterator[MlflowClient]:
    """A client for reads and alias moves that no concurrent run on the same store interleaves with.

    A local SQLite store: an exclusive lock on a file next to the database
    (`mlflow.db.registry-lock`), held for the few milliseconds a transaction takes; every run on
    the machine takes it, so what one reads inside still holds when it writes. A tracking server
    has no lock to share: a transaction is then only a compare-and-set (the caller re-reads an
    alias right before moving it), and two runs can still interleave in the window between that
    read and the move, one request long, instead of the whole gate.

    Not reentrant: a transaction must not open another one.

    Raises:
        RegistryLockTimeout: the lock stayed taken for `REGISTRY_LOCK_TIMEOUT_SECONDS`.
    """
    client = mlflow_client()  # before the lock: creating a new store takes the store's own lock
    database = sqlite_database(tracking_uri())
    if database is None:
        yield client
        return
    lock = FileLock(database.with_name(f"{database.name}.registry-lock"))
    if not lock.acquire(timeout=REGISTRY_LOCK_TIMEOUT_SECONDS):
        raise RegistryLockTimeout(
            f"the registry lock {lock.path} was held for over {REGISTRY_LOCK_TIMEOUT_SECONDS:g} s; "
            "is a siamese process stopped (Ctrl-Z) or hung? End it and rerun"
        )
    try:
        yield client
    finally:
        lock.release()


def claim_champion(name: str, version: str, expected: str | None) -> str | None:
    """Move `champion` to `version` if it still points at `expected` (None: no champion); returns the champion after.

    The gate judged `version` against `expected`; a concurrent run may have moved the alias since.
    Then the alias is left alone, and the caller sees another champion than `version`. The
    version also records `expected` (`PREVIOUS_CHAMPION_TAG`), where `retract_version` returns the
    alias if this run fails after all.
    """
    with registry_transaction() as client:
        current = _alias_version(client, name, CHAMPION)
        if current != expected:
            return current
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, expected or "")
        client.set_registered_model_alias(name, CHAMPION, version)
        return version


def retract_version(registered: dict[str, object], reason: str) -> None:
    """Make a version whose run failed unusable: take its aliases back and tag it `siamese.status = failed`.

    `challenger` is removed if it still points at the version; `champion`, if the version took
    it, returns to the version it replaced (none for a first model). The version itself stays,
    with the reason, for whoever investigates.
    """
    name, version = str(registered["name"]), str(registered["version"])
    with registry_transaction() as client:
        if _alias_version(client, name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        if _alias_version(client, name, CHAMPION) == version:
            previous = client.get_model_version(name, version).tags.get(PREVIOUS_CHAMPION_TAG)
            if previous:
                client.set_registered_model_alias(name, CHAMPION, previous)
            else:
                client.delete_registered_model_alias(name, CHAMPION)
        client.set_model_version_tag(name, version, STATUS_TAG, "failed")
        client.set_model_version_tag(name, version, FAILURE_TAG, reason[:MAX_TAG_LENGTH])


def retract_versions_of_run(run_id: str, reason: str) -> list[str]:
    """Retract (`retract_version`) every version registered from run `run_id`, one found dead; returns them as `name/version`.

    A run killed between registering its version and judging it leaves that version holding
    `challenger`, though nothing verified it was ever judged.
    """
    versions = mlflow_client().search_model_versions(f"run_id = '{run_id}'")
    for version in versions:
        retract_version({"name": version.name, "version": version.version}, reason)
    return [f"{version.name}/{version.version}" for version in versions]


@task(name="read-version-aliases", cache_policy=NO_CACHE)
@reports_a_silent_server
def read_aliases(registered: dict[str, object]) -> list[str]:
    """The version's aliases as the registry holds them now: `challenger`, `champion`, then any others.

    A concurrent run may have registered a newer `challenger` since this one was registered.
    """
    held = set(mlflow_client().get_model_version(str(registered["name"]), str(registered["version"])).aliases)
    return [alias for alias in (CHALLENGER, CHAMPION) if alias in held] + sorted(held - {CHALLENGER, CHAMPION})


def check_same_inputs(name: str, version: str, champion: str) -> None:
    """Refuse a version that takes other inputs (names, types, shapes) than the champion of its registered model.

    One registered model serves one kind of input: a version trained on 16 features cannot
    replace, or be compared on the same pairs with, a champion that takes 128.

    Raises:
        IncompatibleVersionError: naming both versions' inputs.
    """
    mlflow_client()
    new, served = (_input_spec(f"models:/{name}/{number}") for number in (version, champion))
    if new != served:
        raise IncompatibleVersionError(
            f"version {version} of {name} takes {new}, but its champion, version {champion}, takes {served}: "
            "a model of other inputs cannot be judged against or replace it; train it with the champion's input "
            "settings (e.g. the same data.features or data.image_size)"
        )


def _input_spec(model_uri: str) -> str:
    """A model's inputs in words (`left: float32 (-1, -1, 128), right: ...`), read from its MLmodel file alone."""
    signature = mlflow.models.get_model_info(model_uri).signature
    if signature is None:
        return "no signature"
    return ", ".join(_described(spec) for spec in signature.inputs.to_dict())


def _described(spec: dict) -> str:
    tensor = spec.get("tensor-spec")
    kind = spec["type"] if tensor is None else f"{tensor['dtype']} {tuple(tensor['shape'])}"
    return f"{spec.get('name')}: {kind}"


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    version = client.get_registered_model(name).aliases.get(alias)
    return None if version is None else str(version)


def version_scores(model_uri: str, pairs: Pairs, model_format: ModelFormat) -> tuple[np.ndarray, float | None]:
    """A registered version's scores on `pairs`, through its pyfunc (what serving would return), and its threshold.

    The threshold is the decision threshold stored with the version (None: a graded model, or one
    registered before thresholds were stored), read from the loaded model itself. Tensor inputs
    are read and scored about `SCORING_CHUNK_BYTES` of float32 at a time, so a split larger than
    memory (shards, image files) is never held whole: only its scores are. Raw text (a split held
    in memory) is scored as one DataFrame.
    """
    mlflow_client()  # points MLflow at the project's store, so `models:/...` resolves there
    model = mlflow.pyfunc.load_model(model_uri)
    threshold = _stored_threshold(model.metadata.metadata)
    if model_format is ModelFormat.RAW_TEXT:
        return model.predict(pd.DataFrame(pairs.head(len(pairs)).inputs()))["similarity"].to_numpy(), threshold
    if not len(pairs):
        return np.zeros(0, np.float32), threshold
    pair_bytes = sum(4 * array[0].size for array in pairs.head(1).inputs().values())
    chunk_pairs = max(1, SCORING_CHUNK_BYTES // pair_bytes)
    scores = []
    for start in range(0, len(pairs), chunk_pairs):
        chunk = pairs.take(slice(start, start + chunk_pairs)).head(chunk_pairs).inputs()
        scores.append(np.asarray(model.predict({side: array.astype(np.float32) for side, array in chunk.items()})).reshape(-1))
    return np.concatenate(scores), threshold


@task(name="load-text-pair-model", cache_policy=NO_CACHE)  # MLflow's HTTP client retries network errors itself
@reports_a_silent_server
def load_text_pair_scorer(model_uri: str) -> TextPairModel:
    """Load a registered raw-text model (its `predict` takes a DataFrame of `left`, `right` strings) and its threshold.

    The threshold is read from the loaded model itself, so a moving alias cannot pair one
    version's scores with another's threshold.

    Raises:
        ScoringModelError: the model's signature takes something else (sequence tensors or
            images): the error names what it takes and which model scores raw text.
    """
    mlflow_client()
    model = mlflow.pyfunc.load_model(model_uri)
    inputs = model.metadata.get_input_schema()
    takes = {(spec.name, spec.type.name) for spec in inputs.inputs} if inputs is not None else set()
    if takes != {("left", "string"), ("right", "string")}:
        described = ", ".join(str(spec) for spec in inputs.inputs) if inputs is not None else "no signature"
        raise ScoringModelError(
            f"{model_uri} does not take raw text pairs (it takes {described}): score with a model "
            f"trained on a text pair file (`siamese train --data pairs.csv`), e.g. models:/{family_of(ModelKind.TEXT).registered_name}@{CHAMPION}"
        )
    metadata = model.metadata.metadata or {}
    scale = tuple(float(metadata[key]) for key in SCALE_KEYS) if all(key in metadata for key in SCALE_KEYS) else None
    scorer = model.unwrap_python_model()
    keras_model = getattr(scorer, "keras_model", None) or scorer._model  # versions registered before the property held only this
    return TextPairModel(model.predict, _stored_threshold(metadata), scale, keras_model)


@dataclass(frozen=True)
class TextPairEmbedder:
    """A loaded raw-text model as an embedding model (`siamese.embedding.Embedder`), with its decision threshold."""

    embedder: Embedder
    threshold: float | None
    scale: tuple[float, float] | None = None


@task(name="load-text-pair-embedder", cache_policy=NO_CACHE)
@reports_a_silent_server
def load_text_pair_embedder(model_uri: str) -> TextPairEmbedder:
    """Load a registered raw-text model's Keras model as an `Embedder`, and the threshold it was registered with.

    Raises:
        ScoringModelError: as `load_text_pair_scorer`.
        EmbeddingError: the model's head cannot compare encodings (the `concat` head).
    """
    loaded = load_text_pair_scorer.fn(model_uri)
    return TextPairEmbedder(Embedder(loaded.keras_model), loaded.threshold, loaded.scale)
