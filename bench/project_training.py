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

`--variant` undoes one of `fit`'s speed-ups (or one of the project's model choices) in this
process only, to measure what each is worth (`bench/throughput.py --ablation`):
  two-encoder-calls     train the canonical model itself (the encoder called on left, then right,
                        with its Masking layer), at the same steps per call
  keras-arrays          training pairs given to Keras as arrays (its own slicing), not tf.data
  one-step-per-call     steps_per_execution=1
  validation-batch-1x   validation in training-sized batches
  tf-data-autotuning    tf.data's autotuning left on for the training and validation pipelines
  eager-metrics         metrics reset and read eagerly, op by op (as Keras does), not compiled
  xla                   jit_compile=True (XLA) for the train and validation steps
  keep-masking          the encoder's Masking layer kept although no timestep is padded
  no-auc                accuracy only, no AUC metric (as the original)
  previous-fit          all of fit's speed-ups undone: fit as it was before them (the canonical
                        model, arrays, one step per call, training-sized validation batches)

Prints the same JSON line as the baseline script (last line of stdout).

Run: .venv/bin/python bench/project_training.py --seed 0 [--epochs 20] [--tuned] [--variant xla]
"""

import time

STARTED = time.time()

import argparse
import dataclasses
import hashlib
import json
import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, also when not installed

import keras
import numpy as np

import siamese.training
from siamese.config import DevicePreference, Head, Precision, Task, TrainingConfig
from siamese.data.sequences import PairSet
from siamese.devices import distribution_scope, plan_devices
from siamese.models.text import build_text_model
from siamese.training import compile_for_training, fit

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
    if args.variant:
        apply_variant(args.variant)
    np.random.seed(args.seed)
    keras.utils.set_random_seed(args.seed)
    plan = plan_devices(training.devices, training.precision)
    scope = distribution_scope(plan) if args.strategy == "plan" else nullcontext()
    with scope:
        model = build_text_model(features=FEATURES, units=32, head=Head.CONCAT, dtype_policy=plan.dtype_policy)
        compile_for_training(model, training)
        # The baseline's draws, in its order: left, right, then labels.
        left = np.random.normal(size=(NUM_PAIRS, TIMESTEPS, FEATURES))
        right = np.random.normal(size=(NUM_PAIRS, TIMESTEPS, FEATURES))
        targets = np.random.randint(2, size=(NUM_PAIRS, 1))
        pairs = PairSet(left.astype(np.float32), right.astype(np.float32), targets.reshape(-1).astype(np.float32))
        num_train = NUM_PAIRS - int(NUM_PAIRS * VALIDATION_SPLIT)  # Keras' split: the last 20% validate
        train, validation = pairs.take(slice(0, num_train)), pairs.take(slice(num_train, NUM_PAIRS))
        timer = EpochTimer()
        fit_started, fit_cpu_started = time.time(), time.process_time()
        result = fit(model, train, validation, training, callbacks=[timer], seed=args.seed)
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


def apply_variant(variant: str) -> None:
    """Patch the library in this process only, so that `fit` runs without one of its choices."""
    if variant == "two-encoder-calls":

        def canonical(model, pairs=(), long_run=False):
            steps_per_execution = siamese.training.STEPS_PER_EXECUTION if long_run else 1
            compiled = {key: value for key, value in model.get_compile_config().items() if key not in ("optimizer", "steps_per_execution")}
            model.compile(
                optimizer=model.optimizer, steps_per_execution=steps_per_execution, **keras.saving.deserialize_keras_object(compiled)
            )
            return model

        siamese.training.training_model = canonical
    elif variant == "keras-arrays":
        keras_data = siamese.training._keras_data

        def training_arrays(model, pairs, batch_size, shuffle, seed=0):
            if not (shuffle and isinstance(pairs, PairSet)):  # validation stays a dataset, batched as in fit
                return keras_data(model, pairs, batch_size, shuffle, seed)
            return {"x": pairs.inputs(), "y": pairs.labels, "batch_size": batch_size, "shuffle": True}

        siamese.training._keras_data = training_arrays
    elif variant == "keep-masking":
        siamese.training._masks_a_timestep = lambda pairs, mask_value: True
    elif variant == "one-step-per-call":
        siamese.training.STEPS_PER_EXECUTION = 1
    elif variant == "validation-batch-1x":
        siamese.training.VALIDATION_BATCH_MULTIPLE = 1
    elif variant == "tf-data-autotuning":
        siamese.training.without_autotuning = lambda dataset: dataset
    elif variant == "eager-metrics":
        siamese.training.StackedSiamese._metric_function = lambda self, name, function: function
    elif variant == "xla":
        compile_model = keras.Model.compile
        keras.Model.compile = lambda self, **kwargs: compile_model(self, **(kwargs | {"jit_compile": True}))
    elif variant == "no-auc":
        siamese.training._METRICS[Task.SIMILARITY] = lambda: ["accuracy"]
    elif variant == "previous-fit":
        siamese.training.training_model = lambda model, *args, **kwargs: model

        def arrays(model, pairs, batch_size, shuffle, seed=0):
            # Validation as (inputs, labels), which Keras batches at the training batch size.
            x = pairs.inputs() if shuffle else (pairs.inputs(), pairs.labels)
            return {"x": x, "y": pairs.labels, "batch_size": batch_size, "shuffle": True} if shuffle else {"x": x}

        siamese.training._keras_data = arrays


if __name__ == "__main__":
    main()
