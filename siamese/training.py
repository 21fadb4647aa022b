"""Compile, fit and score a pair model; the caller owns seeding, devices and tracking callbacks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from siamese.config import Task, TrainingConfig
from siamese.data.image_pairs import ImagePairFiles
from siamese.data.sources import Pairs


@dataclass(frozen=True)
class TrainingResult:
    history: dict[str, list[float]]  # Keras' per-epoch history: loss, val_loss, accuracy, ...
    seconds: float  # wall time of `fit`, tracing and validation included
    pairs_per_second: float  # training pairs processed per second of that wall time


def compile_for_training(model: keras.Model, training: TrainingConfig, task: Task | str = Task.SIMILARITY) -> None:
    """RMSprop, as the reference script, with the task's loss and metrics.

    Similarity: binary cross-entropy, accuracy and AUC. Regression: mean squared error, MAE and RMSE.
    """
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=training.learning_rate),
        loss=task_loss(task),
        metrics=_METRICS[Task(task)](),
    )


def task_loss(task: Task | str) -> str:
    """The loss a model for `task` is trained with (also used by the sharing check's one step)."""
    return "mean_squared_error" if Task(task) is Task.REGRESSION else "binary_crossentropy"


_METRICS = {
    Task.SIMILARITY: lambda: ["accuracy", keras.metrics.AUC(name="auc")],
    Task.REGRESSION: lambda: [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")],
}


def fit(
    model: keras.Model,
    train: Pairs,
    validation: Pairs,
    training: TrainingConfig,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: str | int = "auto",
    seed: int = 0,
) -> TrainingResult:
    """Train a compiled model on `train`, validating on `validation` after every epoch.

    Pairs in memory go to Keras as arrays; image files are streamed (`tf.data`), shuffled with
    `seed` each epoch, so a folder larger than memory trains too.
    """
    batch_size = training.batch_size
    started = time.perf_counter()
    history = model.fit(
        **_keras_data(model, train, batch_size, shuffle=True, seed=seed),
        validation_data=_validation_data(model, validation, batch_size) if len(validation) else None,
        epochs=training.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    return TrainingResult(
        history={key: [float(value) for value in values] for key, values in history.history.items()},
        seconds=seconds,
        pairs_per_second=len(train) * training.epochs / seconds,
    )


def predict(model: keras.Model, pairs: Pairs, batch_size: int = 256) -> np.ndarray:
    """The model's output for every pair, in order: shape `(len(pairs), 1)`."""
    data = _keras_data(model, pairs, batch_size, shuffle=False)
    return model.predict(data["x"], batch_size=data.get("batch_size"), verbose=0)


def _keras_data(model: keras.Model, pairs: Pairs, batch_size: int, shuffle: bool, seed: int = 0) -> dict[str, Any]:
    """Keras data arguments (`x`, `y`, `batch_size`, `shuffle`): arrays, or a `tf.data` stream.

    Pairs kept on disk stream: image files as decoded image batches, and anything with a
    `stream(batch_size, shuffle, seed)` method (sharded sequence pairs) as the dataset it returns.
    """
    if hasattr(pairs, "stream"):
        return {"x": pairs.stream(batch_size, shuffle=shuffle, seed=seed), "shuffle": False}
    if isinstance(pairs, ImagePairFiles):
        image_size, _, channels = model.inputs[0].shape[1:]
        # The stream shuffles its file list itself; Keras cannot shuffle a dataset.
        return {"x": pairs.dataset(image_size, channels, batch_size, shuffle=shuffle, seed=seed), "shuffle": False}
    return {"x": pairs.inputs(), "y": pairs.labels, "batch_size": batch_size, "shuffle": shuffle}


def _validation_data(model: keras.Model, pairs: Pairs, batch_size: int) -> Any:
    data = _keras_data(model, pairs, batch_size, shuffle=False)
    return (data["x"], data["y"]) if "y" in data else data["x"]
