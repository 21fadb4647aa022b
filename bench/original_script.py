"""The original script: the Keras functional-API shared-layer example, kept as the baseline.

The model, data sizes and settings are the original's, unchanged (shared `LSTM(32)` on
`(None, 128)` inputs, concatenate, `Dense(1, sigmoid)`, RMSprop, 1,000 random pairs of 10
timesteps, 3 epochs, batch 64, `validation_split=0.2`, so 800 pairs train). Added around it, and
nowhere inside it: an optional `--seed`, a timing callback, and one JSON line of timings at the
end (the last line of stdout), which `bench/overhead.py` and `bench/throughput.py` read.

Run: .venv/bin/python bench/original_script.py --seed 0
"""

import time

STARTED = time.time()  # before the heavy imports: "imports" below is keras + TensorFlow

import argparse
import hashlib
import json

import keras
import numpy as np
from keras.layers import Input, LSTM, Dense, concatenate
from keras.models import Model

from epoch_timer import EpochTimer  # bench/ is on sys.path when run as a script

IMPORTED = time.time()

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seed", type=int, help="seed numpy, Python and the backend (the original is unseeded)")
parser.add_argument(
    "--extra-epochs",
    type=int,
    default=0,
    help="after the original 3 epochs, continue the same fit for this many epochs (steady-state timing)",
)
args = parser.parse_args()
if args.seed is not None:
    np.random.seed(args.seed)
    keras.utils.set_random_seed(args.seed)  # also seeds numpy's global generator and Python's `random`

# ---- the original script (only `callbacks=[timer]` and the timing marks added) ----
left_input = Input(shape=(None, 128))
right_input = Input(shape=(None, 128))
shared_lstm = LSTM(32)
merged = concatenate([shared_lstm(left_input), shared_lstm(right_input)], axis=-1)
predictions = Dense(1, activation='sigmoid')(merged)
model = Model([left_input, right_input], predictions)
model.compile(optimizer='rmsprop', loss='binary_crossentropy', metrics=['accuracy'])
left_data = np.random.normal(size=(1000, 10, 128))
right_data = np.random.normal(size=(1000, 10, 128))
targets = np.random.randint(2, size=(1000, 1))
timer = EpochTimer()
FIT_STARTED, FIT_CPU_STARTED = time.time(), time.process_time()
model.fit([left_data, right_data], targets, epochs=3, batch_size=64, validation_split=0.2, callbacks=[timer])
# ---- end of the original script ----
if args.extra_epochs:  # the same call, continued: same arrays, split, batch size and callbacks
    model.fit(
        [left_data, right_data],
        targets,
        initial_epoch=3,
        epochs=3 + args.extra_epochs,
        batch_size=64,
        validation_split=0.2,
        callbacks=[timer],
    )
FIT_ENDED, FIT_CPU_ENDED = time.time(), time.process_time()

epochs = len(timer.seconds)
train_pairs = len(targets) - int(len(targets) * 0.2)  # validation_split takes the last 20%
fit_seconds = FIT_ENDED - FIT_STARTED
later_epochs = sum(timer.seconds[1:])
digest = hashlib.sha256()
for array in (left_data, right_data, targets):
    digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
print(
    json.dumps(
        {
            "side": "baseline",
            "seed": args.seed,
            "train_pairs": train_pairs,
            "validation_pairs": len(targets) - train_pairs,
            "epochs": epochs,
            "batch_size": 64,
            "params": model.count_params(),
            "import_seconds": IMPORTED - STARTED,
            "setup_seconds": FIT_STARTED - IMPORTED,  # argument parsing, seeding, model, compile, data
            "fit_seconds": fit_seconds,  # what `siamese.training.fit` reports as `seconds`
            # CPU time of all threads during fit: the work done, much less sensitive than wall
            # time to other jobs taking turns on a shared machine.
            "fit_cpu_seconds": FIT_CPU_ENDED - FIT_CPU_STARTED,
            "epoch_seconds": timer.seconds,
            "pairs_per_second": train_pairs * epochs / fit_seconds,  # tracing and validation included
            # Epochs after the first: no tracing, the steady state a longer run converges to.
            "steady_pairs_per_second": train_pairs * (epochs - 1) / later_epochs if epochs > 1 else None,
            "total_seconds": time.time() - STARTED,  # from this script's first line
            "started": STARTED,
            "imported": IMPORTED,
            "fit_started": FIT_STARTED,
            "fit_ended": FIT_ENDED,
            "data_sha256": digest.hexdigest()[:16],
        }
    )
)
