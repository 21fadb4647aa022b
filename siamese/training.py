"""Compile, fit and score a pair model; the caller owns seeding, devices and tracking callbacks.

Training is Keras' own, as in the keras.io Siamese examples: `model.fit` on the pairs' `tf.data`
view (`Pairs.dataset`), validating after every epoch. With every speed-up off
(`FitOptions.plain()`) `fit` is exactly that call on the canonical model, plus the callbacks that
make training stop by itself (`stopping_callbacks`): `training.epochs` is a maximum, training ends
after `training.patience` epochs without a better validation metric (`MONITORED`), the learning
rate can drop on a plateau, and the model keeps the weights of its best validation epoch.

By default `fit` runs the same math faster (BENCHMARKS.md, "Training throughput"); each speed-up
is a `FitOptions` field:

- `stacked_encoder`: when the shared encoder treats each example on its own (no batch
  statistics), training runs through `StackedSiamese`: one encoder call on the left and right
  batches stacked along the batch axis instead of two calls. Same layers, same variables, same
  loss and gradients; half the recurrent-loop iterations per step and half the graph to trace.
  The saved model stays the canonical two-call graph, which is the one that was trained.
- `skip_unused_masking`: a `Masking` layer on the encoder's input is left out of that path when
  no training or validation pair has a timestep it would mask (`Pairs.pairs_with_timestep_equal_to`):
  it would only multiply by one and select every step (about a fifth of a step's time on a CPU).
- `steps_per_execution`, `compiled_metrics`: long runs (at least `min_steps_for_long_run` steps)
  on TensorFlow execute several steps per call of the compiled function, so Python and the
  callbacks are visited once per call, and reset and read the metrics through compiled
  functions rather than op by op.
- `validation_batch_multiple`: validation keeps no activations for gradients, so it runs in
  larger batches.
- `tf_data_autotuning`: the pipelines of arrays and shards run without `tf.data`'s autotuning,
  whose background threads would compete with training for the cores.
- `jit_compile`: XLA for the stacked model's steps; off by default: compiling adds 3-4 s to the
  first epoch on a CPU, more than it saves unless a run has thousands of steps.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np

from siamese.config import PATIENCE, Task, TrainingConfig
from siamese.data.class_batches import ClassBatches
from siamese.data.pairs import Pairs
from siamese.sharing import layer_calls, shared_encoder

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
    keras.layers.Bidirectional,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.Dropout,
    keras.layers.Rescaling,
    keras.layers.UnitNormalization,
    keras.layers.Concatenate,
    keras.layers.Reshape,
    keras.layers.DepthwiseConv1D,
    keras.layers.Flatten,
    keras.layers.ReLU,
    keras.layers.Add,
)


@dataclass(frozen=True)
class FitOptions:
    """The speed-ups `fit` applies, one field each (see the module docstring); the defaults are the fast path.

    None of them changes the math: weights, losses and metrics stay those of `model.fit` on the
    canonical model, up to float rounding. The ones marked "stacked" apply to the training model
    that `fit` compiles itself (`StackedSiamese`); a model trained as it is (this option off, or
    a model whose encoder is not per-example, such as one with batch normalisation) keeps the
    compile settings it was given.
    """

    stacked_encoder: bool = True  # one encoder call on [left; right] where the encoder allows it
    skip_unused_masking: bool = True  # stacked: leave out an input Masking layer that would mask nothing
    steps_per_execution: int = STEPS_PER_EXECUTION  # stacked, long runs on TensorFlow; 1 is Keras' own
    min_steps_for_long_run: int = MIN_STEPS_FOR_LONG_RUN  # a run of this many steps or more is a long run
    compiled_metrics: bool = True  # stacked, long runs on TensorFlow: reset and read metrics in one compiled call each
    validation_batch_multiple: int = VALIDATION_BATCH_MULTIPLE  # validation batch = training batch x this
    # True or False: tf.data's autotuning on or off for every pipeline. None: each container's own
    # choice, off for arrays and shards (fixed sizes: 1.25-1.4x on 2 cores), on for decoding images.
    tf_data_autotuning: bool | None = None
    jit_compile: bool = False  # stacked: XLA for the train and validation steps (off: the model's own setting)

    def __post_init__(self) -> None:
        for name in ("steps_per_execution", "min_steps_for_long_run", "validation_batch_multiple"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FitOptions.{name} must be an integer >= 1, got {value!r}")
        for name in ("stacked_encoder", "skip_unused_masking", "compiled_metrics", "jit_compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"FitOptions.{name} must be True or False, got {getattr(self, name)!r}")
        if not (self.tf_data_autotuning is None or isinstance(self.tf_data_autotuning, bool)):
            raise ValueError(f"FitOptions.tf_data_autotuning must be True, False or None, got {self.tf_data_autotuning!r}")

    @classmethod
    def plain(cls) -> FitOptions:
        """Every speed-up off: `fit` is `model.fit` on the canonical model, as in the keras.io examples."""
        return cls(
            stacked_encoder=False,
            skip_unused_masking=False,
            steps_per_execution=1,
            compiled_metrics=False,
            validation_batch_multiple=1,
            tf_data_autotuning=True,
            jit_compile=False,
        )


# The validation metric that early stopping and the learning-rate schedule watch, per task, and
# whether higher is better: the task's headline metric, the one the registry gate compares by default.
MONITORED = {
    Task.SIMILARITY: ("val_auc", "max"),
    Task.REGRESSION: ("val_mae", "min"),
}
# The smallest rise of validation AUC that counts as better. Late epochs that add less than a
# thousandth cost as much as early ones: on 10,000 Quora pairs they made the run 1.5-1.8x longer
# for 0.002 test AUC (BENCHMARKS.md, "Model quality").
MIN_AUC_IMPROVEMENT = 1e-3


@dataclass(frozen=True)
class TrainingResult:
    history: dict[str, list[float]]  # Keras' per-epoch history: loss, val_loss, accuracy, ..., learning_rate
    seconds: float  # wall time of `fit`, tracing and validation included
    pairs_per_second: float  # training pairs (of `ClassBatches`: the drawn pairs an epoch stands for) per second
    # The epoch (1-based) whose weights the model ends with, the best on the monitored validation
    # metric; None when nothing was monitored (no validation pairs).
    best_epoch: int | None = None
    resumed_after: int = 0  # epochs an earlier, interrupted attempt had completed (`TrainingCheckpoint`)

    @property
    def stopped_epoch(self) -> int:
        """Epochs run, an interrupted attempt's included: `training.epochs`, or fewer when early stopping ended training."""
        return self.resumed_after + len(self.history["loss"])


def compile_for_training(
    model: keras.Model, training: TrainingConfig, task: Task | str = Task.SIMILARITY, loss: str | keras.losses.Loss | None = None
) -> None:
    """RMSprop, as the reference script, with the task's loss (or `loss`, a family's choice) and metrics.

    Similarity: binary cross-entropy, accuracy and AUC. Regression: mean squared error, MAE and RMSE.
    """
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=training.learning_rate),
        loss=loss or task_loss(task),
        metrics=_METRICS[Task(task)](),
    )


def task_loss(task: Task | str) -> str:
    """The loss a model for `task` is trained with by default (also used by the sharing check's one step)."""
    return "mean_squared_error" if Task(task) is Task.REGRESSION else "binary_crossentropy"


@keras.saving.register_keras_serializable(package="siamese")
class ContrastiveLoss(keras.losses.Loss):
    """Contrastive loss (Hadsell, Chopra & LeCun, 2006) on the distance `d = 1 - score`.

    Similar pairs pay `d**2`; dissimilar ones pay `max(margin - d, 0)**2`, so they are pushed
    apart only until `margin`, not forever: the model spends its capacity on the pairs it
    confuses. Scores stay in 0..1, so AUC, the threshold and the gate read them as before.
    """

    def __init__(self, margin: float = 0.5, name: str = "contrastive", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def call(self, y_true, y_pred):
        distance = 1.0 - keras.ops.cast(y_pred, "float32")
        y_true = keras.ops.cast(keras.ops.reshape(y_true, keras.ops.shape(distance)), "float32")
        apart = keras.ops.maximum(self.margin - distance, 0.0)
        return keras.ops.mean(y_true * distance**2 + (1.0 - y_true) * apart**2, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "margin": self.margin}


_METRICS = {
    Task.SIMILARITY: lambda: ["accuracy", keras.metrics.AUC(name="auc")],
    Task.REGRESSION: lambda: [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")],
}


def fit(
    model: keras.Model,
    train: Pairs | ClassBatches,
    validation: Pairs,
    training: TrainingConfig,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: str | int = "auto",
    seed: int = 0,
    options: FitOptions = FitOptions(),
    checkpoint: Path | None = None,
) -> TrainingResult:
    """Train a compiled model on `train`, validating on `validation` after every epoch, for at most `training.epochs`.

    Both go to Keras as their `tf.data` views (`Pairs.dataset`: arrays in memory, shards and
    image files streamed from disk, so data larger than memory trains too): training pairs
    reshuffled from `seed` every epoch, validation pairs in order, in batches
    `options.validation_batch_multiple` times larger. The model is trained through
    `training_model`; callbacks therefore see that model, whose variables are `model`'s: save
    `model`, not the callbacks' `self.model`. `train` may instead be `ClassBatches`, for an
    `AllPairsTrainer`: every pair of class-balanced batches of images, drawn anew each epoch.

    With validation pairs, training stops by itself and `model` ends with the weights of its best
    epoch on the validation metric of the task it was compiled for (`stopping_callbacks`);
    `callbacks` run after those, so their logs include the epoch's `learning_rate` when the rate
    can drop. Without validation pairs there is nothing to judge an epoch by: every epoch runs at
    the configured rate and the last epoch's weights are kept (`best_epoch` is None).

    With a `checkpoint` directory, training's state is saved there after every epoch and an
    interrupted attempt's state found there is resumed (`TrainingCheckpoint`).
    """
    batch_size = training.batch_size
    steps = training.epochs * math.ceil(len(train) / batch_size)
    trainer = training_model(model, [train, validation], long_run=steps >= options.min_steps_for_long_run, options=options)
    autotune = options.tf_data_autotuning
    stopping = stopping_callbacks(model, training) if len(validation) else []
    saving = [TrainingCheckpoint(checkpoint, stopping)] if checkpoint is not None else []
    started = time.perf_counter()
    history = trainer.fit(
        train.dataset(batch_size, shuffle=True, seed=seed, autotune=autotune),
        shuffle=False,  # the dataset reshuffles itself every epoch; Keras cannot shuffle a dataset
        validation_data=(
            validation.dataset(batch_size * options.validation_batch_multiple, autotune=autotune) if len(validation) else None
        ),
        epochs=training.epochs,
        callbacks=[*stopping, *saving, *(callbacks or [])],
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    epochs_run = len(history.epoch)
    return TrainingResult(
        history={key: [float(value) for value in values] for key, values in history.history.items()},
        seconds=seconds,
        pairs_per_second=len(train) * epochs_run / seconds,
        best_epoch=_best_epoch(stopping[0]) if stopping else None,
        resumed_after=saving[0].resumed_after if saving else 0,
    )


STATE_FILE = "training_state.npz"


class TrainingCheckpoint(keras.callbacks.Callback):
    """Training's state, saved after every epoch into `directory`; restored when training begins with one there.

    Keras' `BackupAndRestore` keeps the weights and the epoch. This also keeps the optimizer's
    state (moments, step count, a lowered learning rate) and the counters of early stopping and
    reduce-on-plateau (`COUNTERS`: the best value, the epochs waited; early stopping's best epoch
    and weights too), so a resumed run continues as the interrupted one would have, and still ends
    with the best epoch's weights. Each save replaces the last atomically: a crash while saving
    leaves the previous epoch's state. Removed when training ends.
    """

    COUNTERS: ClassVar[dict[type, tuple[str, ...]]] = {
        keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch"),
        keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
    }

    def __init__(self, directory: Path, stopping: Sequence[keras.callbacks.Callback] = ()) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.stopping = [callback for callback in stopping if type(callback) in self.COUNTERS]
        self.resumed_after = 0

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_FILE

    @staticmethod
    def completed_epochs(directory: Path) -> int:
        """Epochs the state saved in `directory` has completed; 0 when there is none."""
        state = Path(directory) / STATE_FILE
        if not state.exists():
            return 0
        with np.load(state, allow_pickle=False) as saved:
            return int(json.loads(str(saved["meta"]))["epoch"])

    def on_train_begin(self, logs: dict | None = None) -> None:
        """After the stoppers' own `on_train_begin` (they reset themselves): restore what was saved."""
        if not self.state_file.exists():
            return
        with np.load(self.state_file, allow_pickle=False) as saved:
            state = json.loads(str(saved["meta"]))
            self.model.set_weights([saved[f"weight_{index}"] for index in range(state["weights"])])
            optimizer = self.model.optimizer
            if not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            for index, variable in enumerate(optimizer.variables):
                variable.assign(saved[f"optimizer_{index}"])
            for index, (stopper, kept) in enumerate(zip(self.stopping, state["stopping"])):
                for name in self.COUNTERS[type(stopper)]:
                    setattr(stopper, name, kept[name])
                if kept["best_weights"]:
                    stopper.best_weights = [saved[f"best_{index}_{number}"] for number in range(kept["best_weights"])]
        self.resumed_after = state["epoch"]
        self.model._initial_epoch = state["epoch"]  # what `BackupAndRestore` sets: `fit` starts at this epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        arrays = {f"weight_{index}": weight for index, weight in enumerate(self.model.get_weights())}
        arrays |= {f"optimizer_{index}": keras.ops.convert_to_numpy(v) for index, v in enumerate(self.model.optimizer.variables)}
        stopping = []
        for index, stopper in enumerate(self.stopping):
            best_weights = getattr(stopper, "best_weights", None) or []
            arrays |= {f"best_{index}_{number}": weight for number, weight in enumerate(best_weights)}
            counters = {name: _plain_number(getattr(stopper, name)) for name in self.COUNTERS[type(stopper)]}
            stopping.append(counters | {"best_weights": len(best_weights)})
        meta = {"epoch": epoch + 1, "weights": len(self.model.get_weights()), "stopping": stopping}
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / "training_state.partial.npz"
        np.savez(partial, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(partial, self.state_file)

    def on_train_end(self, logs: dict | None = None) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _plain_number(value: Any) -> int | float | None:
    """A callback's counter as JSON holds it: counts stay ints, best values (NumPy or backend scalars) become floats."""
    return value if value is None or isinstance(value, int) else float(value)


def monitored_metric(model: keras.Model) -> tuple[str, str]:
    """The validation metric that `fit` judges `model`'s epochs by, and its mode (`max`: higher is better).

    For a model compiled by `compile_for_training`, its task's (`MONITORED`), told by the loss it
    was compiled with, so that it always names a metric the model reports; for any other loss,
    the validation loss.
    """
    task = Task.SIMILARITY if isinstance(model.loss, ContrastiveLoss) else next((task for task in Task if model.loss == task_loss(task)), None)
    return MONITORED[task] if task is not None else ("val_loss", "min")


def stopping_callbacks(model: keras.Model, training: TrainingConfig) -> list[keras.callbacks.Callback]:
    """Early stopping that keeps the best epoch's weights, then reduce-on-plateau; both watch `monitored_metric(model)`.

    Keras' `EarlyStopping(restore_best_weights=True)` restores the best epoch's weights at the end
    of training whether or not it stopped early (Keras 3), through the trained model's
    `set_weights`: for a `StackedSiamese` those are the canonical model's own variables. With
    `training.patience` 0 it stays to restore the best weights but never stops: a wait of
    `training.epochs` cannot be reached, since the first epoch always counts as an improvement.
    A rise of validation AUC below `MIN_AUC_IMPROVEMENT` is no improvement. `ReduceLROnPlateau`
    (left out when `training.reduce_lr_patience` is 0) also adds the epoch's rate to the logs as
    `learning_rate`.
    """
    monitor, mode = monitored_metric(model)
    patience = (PATIENCE if training.patience is None else training.patience) or training.epochs
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor, mode=mode, patience=patience, restore_best_weights=True, min_delta=MIN_AUC_IMPROVEMENT if monitor == "val_auc" else 0.0
        )
    ]
    if training.reduce_lr_patience:
        factor, wait = training.reduce_lr_factor, training.reduce_lr_patience
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor, mode=mode, factor=factor, patience=wait))
    return callbacks


def _best_epoch(stopper: keras.callbacks.EarlyStopping) -> int | None:
    """The 1-based epoch whose weights the stopper restored; None if the monitored metric never appeared."""
    return stopper.best_epoch + 1 if stopper.best_weights is not None else None


def training_model(
    model: keras.Model, pairs: Sequence[Pairs] = (), long_run: bool = False, options: FitOptions = FitOptions()
) -> keras.Model:
    """The model `fit` trains: a compiled `StackedSiamese` over `model`'s layers, or `model` itself.

    The stacked form is used when `options.stacked_encoder` is on and `model` is a compiled
    two-input functional model whose inputs each feed one shared encoder sub-model directly
    (`siamese.sharing.shared_encoder`), whose encoder holds only `PER_EXAMPLE_LAYERS`, and whose
    head depends on the two encodings alone. It is compiled with `model`'s own compile arguments
    and optimizer object (so the optimizer state is `model`'s, saved with it in `model`'s
    variable order). A `long_run` on TensorFlow executes `options.steps_per_execution` steps per
    call and, with `options.compiled_metrics`, compiles its metric functions. With
    `options.skip_unused_masking`, a `Masking` layer on the encoder's input is left out when
    `pairs` are known to have no timestep it would mask.
    """
    parts = encoder_and_head(model) if options.stacked_encoder and model.compiled else None
    if parts is None:
        return model
    encoder, head = parts
    skipped = [
        layer
        for layer in _input_masking_layers(encoder)
        if options.skip_unused_masking and not any(_masks_a_timestep(p, layer.mask_value) for p in pairs)
    ]
    if skipped:
        # Same layer objects (so the same variables), with the skipped masks replaced by identities.
        encoder = keras.models.clone_model(
            encoder, clone_function=lambda layer: keras.layers.Identity(name=f"{layer.name}_unused") if layer in skipped else layer
        )
    if not model.optimizer.built:  # build on model's variable order: its saved optimizer state is read in that order
        model.optimizer.build(model.trainable_variables)
    compiled = {key: value for key, value in model.get_compile_config().items() if key not in ("optimizer", "steps_per_execution")}
    if options.jit_compile:
        compiled["jit_compile"] = True
    long_run = long_run and keras.backend.backend() == "tensorflow"  # both speed-ups are TensorFlow's
    trainer = StackedSiamese(
        encoder,
        head,
        (model.inputs[0].name, model.inputs[1].name),
        compile_metric_functions=long_run and options.compiled_metrics,
        name=f"{model.name}_stacked",
    )
    trainer.compile(
        optimizer=model.optimizer,
        steps_per_execution=options.steps_per_execution if long_run else 1,
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


class AllPairsTrainer(keras.Model):
    """Training-time view of a Siamese model that scores every pair of a batch of images.

    Takes `ClassBatches` batches, `{"images", "left_index", "right_index"}`: the shared encoder
    runs once per image (after `augmentation`, when given) and the head scores the encodings at
    each (left, right) index pair. Anything else, such as validation's `{"left", "right"}`
    pairs, goes to `model` itself. Holds `model`'s encoder and head (the same layer and variable
    objects), so training it trains `model`; never saved.
    """

    def __init__(self, model: keras.Model, augmentation: keras.Model | None = None, **kwargs: Any) -> None:
        super().__init__(name=kwargs.pop("name", f"{model.name}_all_pairs"), **kwargs)
        parts = encoder_and_head(model, per_example=False)
        if parts is None:
            raise ValueError(f"{model.name} has no shared encoder sub-model whose two encodings alone feed its head")
        self.model, (self.encoder, self.head), self.augmentation = model, parts, augmentation

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not (isinstance(inputs, dict) and "images" in inputs):
            return self.model(inputs, training=training)
        images = inputs["images"]
        if self.augmentation is not None:
            images = self.augmentation(images, training=training)
        encodings = self.encoder(images, training=training)
        sides = [keras.ops.take(encodings, inputs[index], axis=0) for index in ("left_index", "right_index")]
        return self.head(sides, training=training)


def encoder_and_head(model: keras.Model, per_example: bool = True) -> tuple[keras.Model, keras.Model] | None:
    """The shared encoder and a head model from its two encodings to the output, if `model` has that shape.

    With `per_example`, only an encoder of `PER_EXAMPLE_LAYERS`: one whose output for an example
    does not depend on the rest of its batch.
    """
    found = shared_encoder(model)
    if found is None or not isinstance(found.layer, keras.Model) or len(model.outputs) != 1:
        return None
    if per_example and not all(isinstance(leaf, PER_EXAMPLE_LAYERS) for leaf in _leaf_layers(found.layer)):
        return None
    try:
        head = keras.Model(list(found.encodings), model.outputs[0], name=f"{model.name}_head")
    except ValueError:  # the head also reads a model input: it cannot take the encodings alone
        return None
    return found.layer, head


def _leaf_layers(model: keras.Model) -> list[keras.Layer]:
    leaves = []
    for layer in model.layers:
        leaves.extend(_leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return leaves


def _input_masking_layers(encoder: keras.Model) -> list[keras.layers.Masking]:
    """`Masking` layers called once, directly on the encoder's input: what they mask can be read off the data."""
    calls = layer_calls(encoder)
    return [
        call.layer
        for call in calls
        if isinstance(call.layer, keras.layers.Masking)
        and len(call.inputs) == 1
        and call.inputs[0] is encoder.inputs[0]
        and sum(other.layer is call.layer for other in calls) == 1
    ]


def _masks_a_timestep(pairs: Pairs, mask_value: float) -> bool:
    """Whether `Masking(mask_value)` would mask any timestep of `pairs`; True when that is not known.

    Sequence arrays in memory are read; shards answer from their manifest (the count of padded
    pairs kept while writing them); other containers cannot tell (`None`).
    """
    found = pairs.pairs_with_timestep_equal_to(mask_value)
    return found is None or found > 0


def predict(model: keras.Model, pairs: Pairs, batch_size: int = 256) -> np.ndarray:
    """The model's output for every pair, in order: shape `(len(pairs), 1)`."""
    return model.predict(pairs.dataset(batch_size), verbose=0)
