"""The project's training code on exactly the baseline's arrays: the throughput side of the benchmarks.

Generates the data with the same calls, in the same order and under the same seed as
`bench/original_script.py` (so the arrays are identical, checked by `data_sha256`), keeps the
same split as `validation_split=0.2` (first 800 pairs train, last 200 validate), and trains with
the project's library: `build_text_model(head="concat")`, `compile_for_training` and `fit` on
`PairSet`s. By default with the original's settings (batch 64, RMSprop at its default rate 1e-3)
for 3 epochs; `--epochs` runs longer (steady state); `--tuned` trains with `TrainingConfig()`'s
batch size and learning rate instead (the project's tuned defaults).

What still differs from the original at its settings is the project's own choice: the extra AUC
metric, the encoder's `Masking` layer (which `fit` leaves out here: these random sequences have no
padded timestep), and how `fit` runs the same math (stacked encoder call, `tf.data` input,
several steps per call). With `--strategy plan` training also runs under
the device plan's `distribution_scope`, exactly as the `train-model` task does (on a CPU: a
plain `tf.device("/cpu:0")` placement); `none` is the plain library call.

`--variant` undoes one of `fit`'s speed-ups (or one of the project's model choices), to measure
what each is worth (`bench/throughput.py --ablation`). A speed-up is undone by the `FitOptions`
field that names it; nothing in the library is patched:
  two-encoder-calls     FitOptions(stacked_encoder=False): the canonical model trained itself (the
                        encoder called on left, then right, with its Masking layer); compiled here
                        at fit's steps per call, since fit leaves a model it trains as is compiled
  one-step-per-call     FitOptions(steps_per_execution=1)
  validation-batch-1x   FitOptions(validation_batch_multiple=1): validation in training-sized batches
  tf-data-autotuning    FitOptions(tf_data_autotuning=True): autotuning on for both pipelines
  eager-metrics         FitOptions(compiled_metrics=False): metrics reset and read op by op, as Keras does
  xla                   FitOptions(jit_compile=True): XLA for the train and validation steps
  keep-masking          FitOptions(skip_unused_masking=False): the Masking layer kept though nothing is padded
  plain-fit             FitOptions.plain(): every speed-up off, `model.fit` on the canonical model
                        with the pairs' tf.data view (autotuning on), as in the keras.io examples
The rest are not fit options, so they are spelled out here with Keras' own calls:
  keras-arrays          fit's training model, but the training pairs given to Keras as arrays (its
                        own slicing) instead of a tf.data view
  no-auc                a model choice: compiled with accuracy only, no AUC metric (as the original)
  previous-fit          fit as it was before its speed-ups: Keras' `model.fit` on the canonical model
                        with arrays, one step per call, validation in training-sized batches

Prints the same JSON line as the baseline script (last line of stdout).

Run: .venv/bin/python bench/project_training.py --seed 0 [--epochs 20] [--tuned] [--variant xla]
"""

import time

STARTED = time.time()

import argparse
import dataclasses
import hashlib
import json
import math
import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, also when not installed

import keras
import numpy as np

from siamese.config import DevicePreference, Head, Precision, TrainingConfig
from siamese.data.sequences import PairSet
from siamese.devices import distribution_scope, plan_devices
from siamese.models.text import build_text_model
from siamese.training import FitOptions, TrainingResult, compile_for_training, fit, training_model

from epoch_timer import EpochTimer  # bench/ is on sys.path when run as a script
from variants import VARIANTS

IMPORTED = time.time()

# The original script's sizes and settings.
NUM_PAIRS, TIMESTEPS, FEATURES = 1000, 10, 128
VALIDATION_SPLIT = 0.2
ORIGINAL = TrainingConfig(epochs=3, batch_size=64, learning_rate=1e-3, precision=Precision.FLOAT32, devices=DevicePreference.CPU)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=ORIGINAL.epochs)
    parser.add_argument("--tuned", action="store_true", help="TrainingConfig()'s batch size and learning rate")
    parser.add_argument(
        "--strategy",
        choices=["none", "plan"],
        default="none",
        help="none: the plain library call; plan: under distribution_scope(plan), as the train-model task "
        "(a plain tf.device('/cpu:0') placement on a CPU, 'single-device')",
    )
    parser.add_argument("--variant", choices=VARIANTS, help="undo one speed-up or model choice (see above)")
    args = parser.parse_args()

    training = dataclasses.replace(ORIGINAL, epochs=args.epochs)
    if args.tuned:
        tuned = TrainingConfig()
        training = dataclasses.replace(training, batch_size=tuned.batch_size, learning_rate=tuned.learning_rate)
    options = FIT_OPTIONS.get(args.variant, FitOptions())
    np.random.seed(args.seed)
    keras.utils.set_random_seed(args.seed)
    plan = plan_devices(training.devices, training.precision)
    scope = distribution_scope(plan) if args.strategy == "plan" else nullcontext()
    with scope:
        model = build_text_model(features=FEATURES, units=32, head=Head.CONCAT, dtype_policy=plan.dtype_policy)
        compile_for_training(model, training)
        if args.variant == "no-auc":
            recompile(model, metrics=["accuracy"])
        # The baseline's draws, in its order: left, right, then labels.
        left = np.random.normal(size=(NUM_PAIRS, TIMESTEPS, FEATURES))
        right = np.random.normal(size=(NUM_PAIRS, TIMESTEPS, FEATURES))
        targets = np.random.randint(2, size=(NUM_PAIRS, 1))
        pairs = PairSet(left.astype(np.float32), right.astype(np.float32), targets.reshape(-1).astype(np.float32))
        num_train = NUM_PAIRS - int(NUM_PAIRS * VALIDATION_SPLIT)  # Keras' split: the last 20% validate
        train, validation = pairs.take(slice(0, num_train)), pairs.take(slice(num_train, NUM_PAIRS))
        timer = EpochTimer()
        fit_started, fit_cpu_started = time.time(), time.process_time()
        result = train_variant(args.variant, model, train, validation, training, options, timer, args.seed)
        fit_ended, fit_cpu_ended = time.time(), time.process_time()

    digest = hashlib.sha256()
    for array in (left, right, targets):
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    epochs = len(timer.seconds)
    print(
        json.dumps(
            {
                "side": f"project (strategy={args.strategy})",
                "variant": args.variant,
                "seed": args.seed,
                "train_pairs": len(train),
                "validation_pairs": len(validation),
                "epochs": epochs,
                "batch_size": training.batch_size,
                "learning_rate": training.learning_rate,
                "params": model.count_params(),
                "import_seconds": IMPORTED - STARTED,
                "setup_seconds": fit_started - IMPORTED,
                "fit_seconds": result.seconds,
                "fit_cpu_seconds": fit_cpu_ended - fit_cpu_started,  # all threads, as in the baseline
                "epoch_seconds": timer.seconds,
                "pairs_per_second": result.pairs_per_second,
                "steady_pairs_per_second": len(train) * (epochs - 1) / sum(timer.seconds[1:]) if epochs > 1 else None,
                "total_seconds": time.time() - STARTED,
                "started": STARTED,
                "imported": IMPORTED,
                "fit_started": fit_started,
                "fit_ended": fit_ended,
                "data_sha256": digest.hexdigest()[:16],
            }
        )
    )


FIT_OPTIONS = {
    "two-encoder-calls": FitOptions(stacked_encoder=False),
    "one-step-per-call": FitOptions(steps_per_execution=1),
    "validation-batch-1x": FitOptions(validation_batch_multiple=1),
    "tf-data-autotuning": FitOptions(tf_data_autotuning=True),
    "eager-metrics": FitOptions(compiled_metrics=False),
    "xla": FitOptions(jit_compile=True),
    "keep-masking": FitOptions(skip_unused_masking=False),
    "plain-fit": FitOptions.plain(),
}


def train_variant(
    variant: str | None,
    model: keras.Model,
    train: PairSet,
    validation: PairSet,
    training: TrainingConfig,
    options: FitOptions,
    timer: EpochTimer,
    seed: int,
) -> TrainingResult:
    """Train as `variant` says (see the module docstring): `fit` with its options, or Keras' own call."""
    batch_size, epochs = training.batch_size, training.epochs
    long_run = epochs * math.ceil(len(train) / batch_size) >= options.min_steps_for_long_run
    if variant == "two-encoder-calls" and long_run:
        recompile(model, steps_per_execution=options.steps_per_execution)  # as fit compiles its stacked model
    if variant not in ("keras-arrays", "previous-fit"):
        return fit(model, train, validation, training, callbacks=[timer], seed=seed, options=options)
    if variant == "keras-arrays":
        trainer = training_model(model, [train, validation], long_run=long_run, options=options)
        validation_data = validation.dataset(batch_size * options.validation_batch_multiple)
    else:
        trainer, validation_data = model, (validation.inputs(), validation.labels)
    started = time.perf_counter()
    history = trainer.fit(
        train.inputs(), train.labels, batch_size=batch_size, shuffle=True, validation_data=validation_data, epochs=epochs, callbacks=[timer]
    )
    seconds = time.perf_counter() - started
    return TrainingResult(history.history, seconds, len(train) * epochs / seconds)


def recompile(model: keras.Model, **changes: object) -> None:
    """Compile `model` again with its own optimizer, loss and metrics, changing only `changes`."""
    config = {key: value for key, value in model.get_compile_config().items() if key not in ("optimizer", *changes)}
    model.compile(optimizer=model.optimizer, **keras.saving.deserialize_keras_object(config), **changes)


if __name__ == "__main__":
    main()
