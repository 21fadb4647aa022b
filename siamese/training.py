"""Compile and fit a pair model; the caller owns seeding, devices and tracking callbacks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras

from siamese.config import TrainingConfig
from siamese.data.sequences import PairSet


@dataclass(frozen=True)
class TrainingResult:
    history: dict[str, list[float]]  # Keras' per-epoch history: loss, val_loss, accuracy, ...
    seconds: float  # wall time of `fit`, tracing and validation included
    pairs_per_second: float  # training pairs processed per second of that wall time


def compile_for_training(model: keras.Model, training: TrainingConfig) -> None:
    """RMSprop + binary cross-entropy, as the reference script; accuracy and AUC as metrics."""
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=training.learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )


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
