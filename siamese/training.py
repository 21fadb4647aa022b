"""Compile, fit and score a pair model; the caller owns seeding, devices and tracking callbacks.

`fit` trains the canonical Siamese model's own layers and variables, through a faster path that
changes nothing but speed (BENCHMARKS.md, "Training throughput"):

- When the shared encoder treats each example on its own (no batch statistics), training runs
  through `StackedSiamese`: one encoder call on the left and right batches stacked along the
  batch axis instead of two calls. Same layers, same variables, same loss and gradients; half the
  recurrent-loop iterations per step and half the graph to trace. The saved model stays the
  canonical two-call graph, which is the one that was trained.
- A `Masking` layer on the encoder's input is left out of that path when no training or
  validation sequence has a timestep it would mask (arrays in memory are checked, shards say so
  in their manifest): it would only multiply by one and select every step (about a fifth of a
  step's time on a CPU).
- Pairs in memory go to Keras as a `tf.data` pipeline rather than as arrays.
- Long runs (at least `MIN_STEPS_FOR_LONG_RUN` steps) on TensorFlow execute `STEPS_PER_EXECUTION`
  steps per call of the compiled function, so Python and the callbacks are visited once per call,
  and reset and read the metrics through compiled functions rather than op by op.
- The input pipelines run without `tf.data` autotuning, whose background threads would compete
  with training for the cores (`siamese.data.shards.without_autotuning`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from siamese.config import Task, TrainingConfig
from siamese.data.image_pairs import ImagePairFiles
from siamese.data.shards import without_autotuning
from siamese.data.sources import Pairs

# Steps per call of TensorFlow's compiled train step: one epoch of the reference run (13 steps)
# is one call. Tracing the multi-step loop costs about 0.2-0.4 s once and saves about 1-4 ms per
# step on 2 shared CPU cores, so only long runs, of at least MIN_STEPS_FOR_LONG_RUN steps, use it
# (the reference run, 3 epochs of 13 steps, does not); long runs also compile the metric
# functions. The JAX trainer unrolls these steps in its compiled function (compile time grows
# with the count) and dispatches asynchronously anyway, so it keeps one step per call.
STEPS_PER_EXECUTION = 32
MIN_STEPS_FOR_LONG_RUN = 100
# Validation keeps no activations for gradients, so it runs in batches this many times larger
# than training's: fewer, fuller steps for the same metrics.
VALIDATION_BATCH_MULTIPLE = 4
# Encoder layers that compute each example from that example alone (in training too), so one
# call on a stacked batch equals two calls. Batch normalisation is absent on purpose: its
# training-mode statistics would mix the two sides (see siamese/models/vision.py).
PER_EXAMPLE_LAYERS: tuple[type[keras.Layer], ...] = (
    keras.layers.InputLayer,
    keras.layers.Masking,
    keras.layers.TextVectorization,
    keras.layers.Embedding,
    keras.layers.LSTM,
    keras.layers.GRU,
    keras.layers.SimpleRNN,
    keras.layers.Dense,
)


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

    Both go to Keras as `tf.data` streams (arrays in memory, image files decoded as needed so a
    folder larger than memory trains too, sharded pairs): training pairs reshuffled from `seed`
    every epoch, validation pairs in order, in batches `VALIDATION_BATCH_MULTIPLE` times larger.
    The model is trained through `training_model`; callbacks therefore see that model, whose
    variables are `model`'s: save `model`, not the callbacks' `self.model`.
    """
    batch_size = training.batch_size
    steps = training.epochs * math.ceil(len(train) / batch_size)
    trainer = training_model(model, [train, validation], long_run=steps >= MIN_STEPS_FOR_LONG_RUN)
    started = time.perf_counter()
    history = trainer.fit(
        **_keras_data(model, train, batch_size, shuffle=True, seed=seed),
        validation_data=(
            _keras_data(model, validation, batch_size * VALIDATION_BATCH_MULTIPLE, shuffle=False)["x"]
            if len(validation)
            else None
        ),
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


def training_model(model: keras.Model, pairs: Sequence[Pairs] = (), long_run: bool = False) -> keras.Model:
    """The model `fit` trains: a compiled `StackedSiamese` over `model`'s layers, or `model` itself.

    The stacked form is used when `model` is a compiled two-input functional model whose inputs
    each feed one shared encoder sub-model directly, whose encoder holds only
    `PER_EXAMPLE_LAYERS`, and whose head depends on the two encodings alone. It is compiled with
    `model`'s own compile arguments and optimizer object (so the optimizer state is `model`'s,
    saved with it in `model`'s variable order). A `long_run` on TensorFlow executes
    `STEPS_PER_EXECUTION` steps per call and compiles its metric functions. A `Masking` layer on
    the encoder's input is left out when `pairs` are known to have no timestep it would mask.
    """
    parts = _encoder_and_head(model) if model.compiled else None
    if parts is None:
        return model
    encoder, head = parts
    skipped = [layer for layer in _input_masking_layers(encoder) if not any(_masks_a_timestep(p, layer.mask_value) for p in pairs)]
    if skipped:
        # Same layer objects (so the same variables), with the skipped masks replaced by identities.
        encoder = keras.models.clone_model(
            encoder, clone_function=lambda layer: keras.layers.Identity(name=f"{layer.name}_unused") if layer in skipped else layer
        )
    if not model.optimizer.built:  # build on model's variable order: its saved optimizer state is read in that order
        model.optimizer.build(model.trainable_variables)
    compiled = {key: value for key, value in model.get_compile_config().items() if key not in ("optimizer", "steps_per_execution")}
    long_run = long_run and keras.backend.backend() == "tensorflow"  # both speed-ups are TensorFlow's
    trainer = StackedSiamese(
        encoder, head, (model.inputs[0].name, model.inputs[1].name), compile_metric_functions=long_run, name=f"{model.name}_stacked"
    )
    trainer.compile(
        optimizer=model.optimizer,
        steps_per_execution=STEPS_PER_EXECUTION if long_run else 1,
        **keras.saving.deserialize_keras_object(compiled),
    )
    return trainer


class StackedSiamese(keras.Model):
    """Training-time view of a Siamese model: the shared encoder runs once on [left; right].

    Holds the canonical model's encoder and head (the same layer and variable objects), so
    training it trains that model. Equal to `head([encoder(left), encoder(right)])` whenever the
    encoder treats examples independently. Never saved: the saved model is the canonical one.
    """

    def __init__(
        self, encoder: keras.Model, head: keras.Model, input_names: tuple[str, str], compile_metric_functions: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder
        self.head = head
        self.pair_input_names = input_names
        self.compile_metric_functions = compile_metric_functions  # TensorFlow backend only
        self._metric_functions: dict[str, Any] = {}

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if isinstance(inputs, dict):
            left, right = (inputs[name] for name in self.pair_input_names)
        else:
            left, right = inputs
        encodings = self.encoder(keras.ops.concatenate([left, right], axis=0), training=training)
        left_encoding, right_encoding = keras.ops.split(encodings, 2, axis=0)
        return self.head([left_encoding, right_encoding], training=training)

    def reset_metrics(self) -> None:
        """Keras' reset of every metric; one compiled call with `compile_metric_functions` (see below)."""
        self._metric_function("reset", super().reset_metrics)()

    def get_metrics_result(self) -> dict[str, Any]:
        """Keras' metric results; one compiled call with `compile_metric_functions`.

        Keras resets and reads the metrics eagerly, op by op, twice an epoch: about 4 ms an
        epoch for accuracy and AUC on 2 CPU cores, a tenth of a reference epoch at batch 256.
        Compiled (TensorFlow only, once the metrics are built) they take about 0.4 ms, for about
        70 ms of tracing once: worth it only for long runs, hence the flag.
        """
        return self._metric_function("result", super().get_metrics_result)()

    def _metric_function(self, name: str, function: Any) -> Any:
        if not self.compile_metric_functions or not all(getattr(metric, "built", True) for metric in self.metrics):
            return function  # built on the first step: a function traced before would miss their variables
        if name not in self._metric_functions:
            import tensorflow as tf

            self._metric_functions[name] = tf.function(function)
        return self._metric_functions[name]


def _encoder_and_head(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """The shared encoder and a head model from its two encodings to the output, if `model` has that shape."""
    inputs = getattr(model, "inputs", None)  # functional models only
    if not inputs or len(inputs) != 2 or len(model.outputs) != 1:
        return None
    for layer in model.layers:
        calls = layer._inbound_nodes  # Keras' functional graph, also read by siamese.sharing
        if not isinstance(layer, keras.Model) or len(calls) != 2:
            continue
        encodings = {}
        for call in calls:
            arguments = call.input_tensors
            side = next((index for index, tensor in enumerate(inputs) if len(arguments) == 1 and arguments[0] is tensor), None)
            if side is not None:
                encodings[side] = call.output_tensors[0]
        if len(encodings) != 2 or not all(isinstance(leaf, PER_EXAMPLE_LAYERS) for leaf in _leaf_layers(layer)):
            continue
        try:
            head = keras.Model([encodings[0], encodings[1]], model.outputs[0], name=f"{model.name}_head")
        except ValueError:  # the head also reads a model input: it cannot take the encodings alone
            return None
        return layer, head
    return None


def _leaf_layers(model: keras.Model) -> list[keras.Layer]:
    leaves = []
    for layer in model.layers:
        leaves.extend(_leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return leaves


def _input_masking_layers(encoder: keras.Model) -> list[keras.layers.Masking]:
    """`Masking` layers applied directly to the encoder's input: what they mask can be read off the data."""
    return [
        layer
        for layer in encoder.layers
        if isinstance(layer, keras.layers.Masking) and len(layer._inbound_nodes) == 1 and layer.input is encoder.inputs[0]
    ]


def _masks_a_timestep(pairs: Pairs, mask_value: float) -> bool:
    """Whether `Masking(mask_value)` would mask any timestep of `pairs`; True when that is not known.

    Sequence arrays in memory are read; shards answer from their manifest (the count of padded
    pairs kept while writing them); anything else cannot tell without reading a whole stream.
    """
    count = getattr(pairs, "pairs_with_timestep_equal_to", None)
    found = count(mask_value) if count else None
    return found is None or found > 0


def predict(model: keras.Model, pairs: Pairs, batch_size: int = 256) -> np.ndarray:
    """The model's output for every pair, in order: shape `(len(pairs), 1)`."""
    return model.predict(_keras_data(model, pairs, batch_size, shuffle=False)["x"], verbose=0)


def _keras_data(model: keras.Model, pairs: Pairs, batch_size: int, shuffle: bool, seed: int = 0) -> dict[str, Any]:
    """Keras data arguments (`x`, `shuffle`): a `tf.data` stream of `(inputs, labels)` batches.

    Pairs kept on disk stream: image files as decoded image batches, and anything with a
    `stream(batch_size, shuffle, seed)` method (sharded sequence pairs) as the dataset it returns.
    Pairs in memory are sliced from their arrays (`_array_dataset`).
    """
    if hasattr(pairs, "stream"):
        return {"x": pairs.stream(batch_size, shuffle=shuffle, seed=seed), "shuffle": False}
    if isinstance(pairs, ImagePairFiles):
        image_size, _, channels = model.inputs[0].shape[1:]
        # The stream shuffles its file list itself; Keras cannot shuffle a dataset.
        return {"x": pairs.dataset(image_size, channels, batch_size, shuffle=shuffle, seed=seed), "shuffle": False}
    return {"x": _array_dataset(pairs.inputs(), pairs.labels, batch_size, shuffle, seed), "shuffle": False}


def _array_dataset(inputs: dict[str, np.ndarray], labels: np.ndarray, batch_size: int, shuffle: bool, seed: int) -> Any:
    """Batches of arrays in memory, reshuffled each epoch from `seed` (the orders repeat exactly).

    Slicing, not a gather function: Keras makes a new iterator at least once an epoch, and an
    iterator over slices starts in well under a millisecond, one with a gather function in
    several (BENCHMARKS.md, "Training throughput"). The shuffle buffer holds one copy of the training arrays.
    """
    import tensorflow as tf  # here, as in the image stream: only building a dataset needs it

    pairs = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle:
        pairs = pairs.shuffle(max(1, len(labels)), seed=seed, reshuffle_each_iteration=True)
    return without_autotuning(pairs.batch(batch_size).prefetch(1))
