"""In-process A/B measurements behind `fit`'s choices, on the original script's shapes (BENCHMARKS.md).

Each part times its variants interleaved, round after round, in one process, so that the load of
a shared machine falls on all of them alike; it prints the median and minimum per variant in ms.

  pipeline  Keras' train function (32 steps per call) at the tuned defaults over one epoch's 800
            pairs: sliced as fit does (tf.data autotuning off, prefetch 1), with autotuning on,
            as before (autotuning on, prefetch AUTOTUNE), and gathered; then over one fixed
            batch 3 times, against those 3 train steps called directly
  metrics   resetting and reading loss, accuracy and AUC: Keras' eager calls against compiled
            ones, and the tracing that compiling costs once
  lstm      the LSTM(32)'s forward and backward pass over 512 sequences: Keras' loop, Keras with
            unroll=True, and the input projection hoisted out of an unstacked recurrence
  step-metrics  the train function with accuracy and AUC, accuracy only, and no metrics

Run: .venv/bin/python bench/micro.py [pipeline|metrics|lstm|step-metrics ...] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, also when not installed

import keras
import numpy as np
import tensorflow as tf

import siamese.training as training
from siamese.config import Head, TrainingConfig
from siamese.data.sequences import PairSet
from siamese.data.pairs import without_autotuning
from siamese.models.text import build_text_model

NUM_PAIRS, NUM_TRAIN, TIMESTEPS, FEATURES, UNITS = 1000, 800, 10, 128, 32
TUNED = TrainingConfig()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", help=f"any of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    for part in args.parts or PARTS:
        print(f"\n## {part}")
        PARTS[part](args.rounds)


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> None:
    """Warm every variant up, then time one call of each per round, in turn; print ms per call."""
    for variant in variants.values():
        variant()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant in variants.items():
            started = time.perf_counter()
            variant()
            times[name].append((time.perf_counter() - started) * 1000)
    for name, values in times.items():
        print(f"{name:55s} median {statistics.median(values):7.2f} ms   min {min(values):7.2f} ms")


def splits() -> tuple[PairSet, PairSet]:
    rng = np.random.default_rng(0)
    shape = (NUM_PAIRS, TIMESTEPS, FEATURES)
    labels = rng.integers(0, 2, NUM_PAIRS).astype(np.float32)
    pairs = PairSet(rng.standard_normal(shape, np.float32), rng.standard_normal(shape, np.float32), labels)
    return pairs.take(slice(0, NUM_TRAIN)), pairs.take(slice(NUM_TRAIN, NUM_PAIRS))


def trainer_for(train: PairSet, validation: PairSet, metrics: list | None = None) -> tuple[keras.Model, tf.data.Dataset]:
    """fit's long-run training model at the tuned defaults, traced; and its training dataset."""
    keras.utils.set_random_seed(0)
    model = build_text_model(features=FEATURES, units=UNITS, head=Head.CONCAT)
    training.compile_for_training(model, TUNED)
    if metrics is not None:
        model.compile(optimizer=model.optimizer, loss=training.task_loss("similarity"), metrics=metrics)
    trainer = training.training_model(model, [train, validation], long_run=True)
    dataset = train.dataset(TUNED.batch_size, shuffle=True)
    trainer.fit(dataset, epochs=1, shuffle=False, verbose=0)
    return trainer, dataset


def pipeline(rounds: int) -> None:
    train, validation = splits()
    trainer, fits = trainer_for(train, validation)
    batch = next(iter(fits))
    step = tf.function(lambda inputs, labels: trainer.train_step((inputs, labels)))
    left, right, labels = (tf.constant(array) for array in (train.left, train.right, train.labels))

    def sliced(prefetch: int) -> tf.data.Dataset:
        """`PairSet.dataset`'s pipeline (what fit trains on), before `without_autotuning`."""
        pairs = tf.data.Dataset.from_tensor_slices(({"left": train.left, "right": train.right}, train.labels))
        return pairs.shuffle(NUM_TRAIN, seed=0, reshuffle_each_iteration=True).batch(TUNED.batch_size).prefetch(prefetch)

    def gather(indices):
        return {"left": tf.gather(left, indices), "right": tf.gather(right, indices)}, tf.gather(labels, indices)

    shuffled = tf.data.Dataset.range(NUM_TRAIN).shuffle(NUM_TRAIN, seed=0, reshuffle_each_iteration=True)
    gathered = without_autotuning(shuffled.batch(TUNED.batch_size).map(gather).prefetch(1))
    fixed = without_autotuning(tf.data.Dataset.from_tensors(batch).repeat(3))
    run = trainer.train_function
    datasets = {
        "sliced, autotuning off, prefetch 1 (fit's)": fits,
        "sliced, autotuning on, prefetch 1": sliced(1),
        "sliced, autotuning on, prefetch AUTOTUNE (before)": sliced(tf.data.AUTOTUNE),
        "gathered batches, autotuning off": gathered,
    }
    interleaved(
        {f"train function, an epoch, {name}": (lambda data=data: run(iter(data))) for name, data in datasets.items()}
        | {
            "train function, one fixed batch 3 times": lambda: run(iter(fixed)),
            "the same 3 train steps called directly": lambda: [step(*batch) for _ in range(3)],
        },
        rounds,
    )


def metrics(rounds: int) -> None:
    trainer, _ = trainer_for(*splits())
    eager_reset, eager_result = partial(keras.Model.reset_metrics, trainer), partial(keras.Model.get_metrics_result, trainer)
    for name, function in (("reset", eager_reset), ("result", eager_result)):
        started = time.perf_counter()
        tf.function(function)()
        print(f"tracing the compiled {name}: {(time.perf_counter() - started) * 1000:.0f} ms")
    interleaved(
        {
            "reset, eager (Keras)": eager_reset,
            "reset, compiled (fit's long runs)": trainer.reset_metrics,
            "result, eager (Keras)": eager_result,
            "result, compiled (fit's long runs)": trainer.get_metrics_result,
        },
        rounds * 10,
    )


def lstm(rounds: int) -> None:
    batch = 2 * TUNED.batch_size  # the stacked left and right sequences of one step
    x = tf.constant(np.random.default_rng(0).standard_normal((batch, TIMESTEPS, FEATURES), np.float32))

    def gradients(layer: keras.layers.Layer, forward: Callable[[], tf.Tensor]) -> Callable[[], object]:
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(forward())
            return tape.gradient(loss, [variable.value for variable in layer.trainable_variables])

        return step

    looped, unrolled = keras.layers.LSTM(UNITS), keras.layers.LSTM(UNITS, unroll=True)
    for layer in (looped, unrolled):
        layer.build((None, TIMESTEPS, FEATURES))
    cell = looped.cell

    def hoisted() -> tf.Tensor:
        """One x @ W for all timesteps, then the recurrence over unstacked (not sliced) timesteps."""
        time_major = tf.reshape(tf.transpose(x, (1, 0, 2)), (-1, FEATURES))
        projected = tf.reshape(tf.matmul(time_major, cell.kernel.value) + cell.bias.value, (TIMESTEPS, batch, 4 * UNITS))
        h = c = tf.zeros((batch, UNITS))
        for step_input in tf.unstack(projected):
            i, f, g, o = tf.split(step_input + tf.matmul(h, cell.recurrent_kernel.value), 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
        return h

    interleaved(
        {
            "Keras LSTM (its loop)": gradients(looped, lambda: looped(x)),
            "Keras LSTM, unroll=True": gradients(unrolled, lambda: unrolled(x)),
            "input projection hoisted, recurrence unstacked": gradients(looped, hoisted),
        },
        rounds,
    )


def step_metrics(rounds: int) -> None:
    train, validation = splits()
    variants = {}
    for name, metric_list in (("accuracy and AUC (the project's)", None), ("accuracy only", ["accuracy"]), ("no metrics", [])):
        trainer, dataset = trainer_for(train, validation, metric_list)
        variants[f"train function, an epoch, {name}"] = lambda run=trainer.train_function, data=dataset: run(iter(data))
    interleaved(variants, rounds)


PARTS = {"pipeline": pipeline, "metrics": metrics, "lstm": lstm, "step-metrics": step_metrics}

if __name__ == "__main__":
    main()
