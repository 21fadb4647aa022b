"""The project trains with the original script's math, through the path `fit` actually takes.

The original (bench/original_script.py): a shared `LSTM(32)` on two `(None, 128)` inputs,
concatenate, `Dense(1, sigmoid)`, RMSprop at its default rate, binary cross-entropy, batch 64.
The project at those settings: `build_text_model(head="concat")`, `compile_for_training`, and
`fit`, which trains through `training_model` (one encoder call on the stacked left and right
batch; the encoder's Masking layer left out when no timestep is padded), or, with every speed-up
off (`FitOptions.plain()`), Keras' `model.fit` on the canonical model. For the same weights and
the same batch, parameter count, loss, gradients and one RMSprop step must match the original's.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.layers import LSTM, Dense, Input, concatenate
from keras.models import Model

from siamese.config import SequenceDataConfig, TrainingConfig
from siamese.data.sequences import PairSet, generate_sequence_pairs
from siamese.models.text import build_text_model
from siamese.training import FitOptions, StackedSiamese, compile_for_training, fit, training_model

ORIGINAL_SETTINGS = TrainingConfig(epochs=1, batch_size=64, learning_rate=1e-3)  # RMSprop's default rate
BATCH, TIMESTEPS, FEATURES = 64, 10, 128
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}  # float32 sums in another order


def original_model() -> keras.Model:
    """Built and compiled line for line as in the original script."""
    left_input = Input(shape=(None, 128))
    right_input = Input(shape=(None, 128))
    shared_lstm = LSTM(32)
    merged = concatenate([shared_lstm(left_input), shared_lstm(right_input)], axis=-1)
    predictions = Dense(1, activation="sigmoid")(merged)
    model = Model([left_input, right_input], predictions)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture
def batch() -> PairSet:
    """One batch of the original's data: random normal sequences (no padded timestep), 0/1 labels."""
    rng = np.random.default_rng(0)
    return PairSet(
        rng.normal(size=(BATCH, TIMESTEPS, FEATURES)).astype(np.float32),
        rng.normal(size=(BATCH, TIMESTEPS, FEATURES)).astype(np.float32),
        rng.integers(0, 2, size=BATCH).astype(np.float32),
    )


@pytest.fixture
def models() -> tuple[keras.Model, keras.Model]:
    """The original and the project's model, compiled, holding the same weights."""
    keras.utils.set_random_seed(0)
    original = original_model()
    project = build_text_model(features=FEATURES, units=32, head="concat")
    compile_for_training(project, ORIGINAL_SETTINGS)
    assert [w.shape for w in project.get_weights()] == [w.shape for w in original.get_weights()]
    project.set_weights(original.get_weights())
    return original, project


def padded_pairs() -> PairSet:
    """Pairs with zero-padded timesteps: training on them keeps the Masking layer."""
    pairs = generate_sequence_pairs(SequenceDataConfig(num_pairs=16, timesteps=6), np.random.default_rng(1))
    assert np.all(pairs.left == 0, axis=-1).any()
    return pairs


def loss_and_gradients(model, inputs, labels: np.ndarray, variables) -> tuple[float, list[np.ndarray]]:
    with tf.GradientTape() as tape:
        loss = keras.losses.binary_crossentropy(labels[:, None], model(inputs, training=True))
        loss = tf.reduce_mean(loss)
    return float(loss), [gradient.numpy() for gradient in tape.gradient(loss, variables)]


def test_same_parameter_count(models):
    original, project = models
    assert original.count_params() == project.count_params() == 20_673


@pytest.mark.parametrize("masking", ["left out (no padded timestep)", "kept (padded data)"])
def test_same_loss_and_gradients_through_the_stacked_training_path(models, batch, masking):
    original, project = models
    pairs = [batch] if masking.startswith("left out") else [batch, padded_pairs()]
    trainer = training_model(project, pairs)
    assert isinstance(trainer, StackedSiamese)
    masks = [layer for layer in trainer.encoder.layers if isinstance(layer, keras.layers.Masking)]
    assert len(masks) == (0 if masking.startswith("left out") else 1)

    original_loss, original_gradients = loss_and_gradients(
        original, [batch.left, batch.right], batch.labels, original.trainable_variables
    )
    project_loss, project_gradients = loss_and_gradients(trainer, batch.inputs(), batch.labels, project.trainable_variables)

    assert project_loss == pytest.approx(original_loss, rel=1e-6)
    assert len(project_gradients) == len(original_gradients) == 5  # LSTM kernel, recurrent kernel, bias; Dense kernel, bias
    for project_gradient, original_gradient in zip(project_gradients, original_gradients):
        assert np.abs(original_gradient).max() > 0
        np.testing.assert_allclose(project_gradient, original_gradient, **TOLERANCE)


@pytest.mark.parametrize("options", [FitOptions(), FitOptions.plain()], ids=["every speed-up", "plain keras fit"])
def test_one_fit_step_gives_the_original_loss_and_weights(models, batch, options):
    """`fit` on one batch of 64 is one RMSprop step: the same step as the original's `train_on_batch`.

    With the speed-ups (stacked encoder, Masking left out) and without them (`model.fit` on the
    canonical model): both equal the original, so they equal each other.
    """
    original, project = models
    before = [weights.copy() for weights in original.get_weights()]
    original_loss = float(original.train_on_batch([batch.left, batch.right], batch.labels[:, None])[0])

    empty = batch.take(np.arange(0))
    result = fit(project, batch, empty, ORIGINAL_SETTINGS, verbose=0, options=options)

    assert result.history["loss"][0] == pytest.approx(original_loss, rel=1e-6)
    for project_weights, original_weights, initial in zip(project.get_weights(), original.get_weights(), before):
        assert not np.array_equal(original_weights, initial)
        np.testing.assert_allclose(project_weights, original_weights, **TOLERANCE)
    assert int(project.optimizer.iterations.numpy()) == int(original.optimizer.iterations.numpy()) == 1
