"""The MLflow model registry: log a run's model, register it, read and move aliases, load versions.

A family's `model_format` decides how its model is logged: the Keras flavour (tensors in) or a
pyfunc over the `.keras` file (raw text in). Either way the logged model holds built-in Keras
layers only, so a registered version loads in a fresh process with nothing of this project
imported. A similarity model carries its decision threshold in its MLflow metadata
(`mlflow.models.get_model_info(uri).metadata["threshold"]`), so deciding needs no run. A model of
graded scores carries the scale it predicts on (`score_min`, `score_max`) there instead.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from prefect import task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config, ModelKind, Task
from siamese.data.pairs import Pairs
from siamese.families import ModelFormat, family_of
from siamese.models.layers import score_scale
from tasks.model_files import load_model_file
from tasks.store import mlflow_client

EXAMPLE_PAIRS = 2  # pairs saved with the model as its input example
CHAMPION, CHALLENGER = "champion", "challenger"  # registry aliases
TEXT_PAIR_SCORER = Path(__file__).with_name("text_pair_scorer.py")  # the pyfunc of raw-text models, logged as code
SCORING_CHUNK_BYTES = 64 << 20  # float32 inputs scored at a time through a pyfunc
THRESHOLD_KEY = "threshold"  # in a similarity model's metadata and version tags: similar when similarity >= it
THRESHOLD_RULE = "similar when similarity >= threshold; the threshold of maximum F1 on the validation split"
SCALE_KEYS = ("score_min", "score_max")  # a graded-score model's scale: metadata, version tags, `data.` run params


class ScoringModelError(ValueError):
    """A model that cannot score raw text pairs; the message says which model to use instead."""


@dataclass(frozen=True)
class TextPairModel:
    """A loaded raw-text model: its scorer, and the decision threshold it was registered with."""

    predict: Callable[[pd.DataFrame], pd.DataFrame]  # DataFrame(left, right) -> DataFrame(similarity, ...)
    threshold: float | None  # None: a version registered before thresholds were stored, or a graded one
    scale: tuple[float, float] | None = None  # a graded-score model's (lowest, highest) score; None: 0..1


@task(name="log-and-register-model", cache_policy=NO_CACHE)
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
    """A pyfunc over the `.keras` file, logged as code (`text_pair_scorer.py`, which imports nothing of the project).

    The threshold also goes into the pyfunc's model config, from which it adds `is_similar`;
    `mlflow.pyfunc.load_model(uri, model_config={"threshold": t})` decides at another one. A model
    of graded scores has no threshold: its `similarity` column is the score on the file's scale.
    """
    outputs = [ColSpec("double", "similarity")] + ([] if threshold is None else [ColSpec("boolean", "is_similar")])
    mlflow.pyfunc.save_model(
        directory,
        python_model=str(TEXT_PAIR_SCORER),
        artifacts={"keras_model": str(model_path)},
        signature=ModelSignature(inputs=Schema([ColSpec("string", "left"), ColSpec("string", "right")]), outputs=Schema(outputs)),
        input_example=pd.DataFrame({"left": example.left, "right": example.right}),
        pip_requirements=_requirements() + [f"pandas=={version('pandas')}"],
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


def set_alias(name: str, alias: str, model_version: str) -> None:
    mlflow_client().set_registered_model_alias(name, alias, model_version)


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
    return TextPairModel(model.predict, _stored_threshold(metadata), scale)
