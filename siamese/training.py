"""Compile and fit a pair model; the caller owns seeding, devices and tracking callbacks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras

from siamese.config import Task, TrainingConfig
from siamese.data.sequences import PairSet


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
    train: PairSet,
    validation: PairSet,
    training: TrainingConfig,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: str | int = "auto",
) -> TrainingResult:
    """Train a compiled model on `train`, validating on `validation` after every epoch."""
    started = time.perf_counter()
    history = model.fit(
        train.inputs(),
        train.labels,
        validation_data=(validation.inputs(), validation.labels) if len(validation) else None,
        epochs=training.epochs,
        batch_size=training.batch_size,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    return TrainingResult(
        history={key: [float(value) for value in values] for key, values in history.history.items()},
        seconds=seconds,
        pairs_per_second=len(train) * training.epochs / seconds,
    )
