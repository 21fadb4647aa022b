"""Prefect tasks: thin wrappers of one library call or one piece of I/O each.

Tasks hand each other small values (file paths in a run-scoped work directory, MLflow run ids,
metric dicts), never live models, so retries and remote workers stay possible. Result caching
is off: generation is cheap and every output is a file of this run's work directory.
"""
