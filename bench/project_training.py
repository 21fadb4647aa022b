"""The project's training code on exactly the baseline's arrays: the throughput side of the benchmark.

Generates the data with the same calls, in the same order and under the same seed as
`bench/original_script.py` (so the arrays are identical, checked by `data_sha256`), keeps the
same split as `validation_split=0.2` (first 800 pairs train, last 200 validate), and trains with
the project's library: `build_text_model(head="concat")`, `compile_for_training` and `fit` on
`PairSet`s, with the original's settings (3 epochs, batch 64, RMSprop at its default rate).

What still differs is the project's own choice, which is what this measures: the `Masking`
layer in the encoder, the extra AUC metric, float32 `PairSet`s passed as a dict. With
`--strategy plan` training also runs under the device plan's `distribution_scope`, exactly as
the `train-model` task does (on a CPU: a plain `tf.device("/cpu:0")` placement, the plan's
"single-device"; `MirroredStrategy` only over several GPUs); `none` is the plain library call.
MLflow's per-epoch callback is not attached here: it is measured in the `siamese train` run.

Prints the same JSON line as the baseline script (last line of stdout).

Run: .venv/bin/python bench/project_training.py --seed 0 --strategy none
"""

import time

STARTED = time.time()

import argparse
import hashlib
import json
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
from siamese.training import compile_for_training, fit

from epoch_timer import EpochTimer  # bench/ is on sys.path when run as a script

IMPORTED = time.time()

# The original script's sizes and settings.
NUM_PAIRS, TIMESTEPS, FEATURES = 1000, 10, 128
VALIDATION_SPLIT = 0.2
TRAINING = TrainingConfig(epochs=3, batch_size=64, precision=Precision.FLOAT32, devices=DevicePreference.CPU)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--strategy",
        choices=["none", "plan"],
        default="none",
        help="none: the plain library call; plan: under distribution_scope(plan), as the train-model task "
        "(a plain tf.device('/cpu:0') placement on a CPU, 'single-device')",
    )
    args = parser.parse_args()

    np.random.seed(args.seed)
    keras.utils.set_random_seed(args.seed)
    plan = plan_devices(TRAINING.devices, TRAINING.precision)
    scope = distribution_scope(plan) if args.strategy == "plan" else nullcontext()
    with scope:
        model = build_text_model(features=FEATURES, units=32, head=Head.CONCAT, dtype_policy=plan.dtype_policy)
        compile_for_training(model, TRAINING)
        # The baseline's draws, in its order: left, right, then labels.
        left = np.random.normal(size=(NUM_PAIRS, TIMESTEPS, FEATURES))
        right = np.random.normal(size=(NUM_PAIRS, TIMESTEPS, FEATURES))
        targets = np.random.randint(2, size=(NUM_PAIRS, 1))
        pairs = PairSet(left.astype(np.float32), right.astype(np.float32), targets.reshape(-1).astype(np.float32))
        num_train = NUM_PAIRS - int(NUM_PAIRS * VALIDATION_SPLIT)  # Keras' split: the last 20% validate
        train, validation = pairs.take(slice(0, num_train)), pairs.take(slice(num_train, NUM_PAIRS))
        timer = EpochTimer()
        fit_started, fit_cpu_started = time.time(), time.process_time()
        result = fit(model, train, validation, TRAINING, callbacks=[timer])
        fit_ended, fit_cpu_ended = time.time(), time.process_time()

    digest = hashlib.sha256()
    for array in (left, right, targets):
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    epochs = len(timer.seconds)
    print(
        json.dumps(
            {
                "side": f"project (strategy={args.strategy})",
                "seed": args.seed,
                "train_pairs": len(train),
                "validation_pairs": len(validation),
                "epochs": epochs,
                "batch_size": TRAINING.batch_size,
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


if __name__ == "__main__":
    main()
