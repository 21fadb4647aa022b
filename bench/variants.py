"""The `bench/project_training.py --variant` names, also read by `bench/throughput.py --ablation`.

A module of its own so that the benchmark's parent process lists them without importing Keras.
"""

VARIANTS = (
    "two-encoder-calls",
    "keras-arrays",
    "one-step-per-call",
    "validation-batch-1x",
    "tf-data-autotuning",
    "eager-metrics",
    "xla",
    "keep-masking",
    "no-auc",
    "plain-fit",
    "previous-fit",
)
