"""Prefect flows (train) and the `siamese` command line."""
