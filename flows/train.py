"""The training flow: data -> shared model -> training -> sharing verification -> evaluation.

Every stage is a Prefect task, so the flow run's page shows them in order; everything is
recorded in one MLflow run, and the model is registered only after sharing is verified.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect import flow

from siamese.config import Config
from tasks.data import generate_pairs
from tasks.model import build_model, choose_devices, evaluate_model, train_model, verify_sharing
from tasks.reporting import publish_summary
from tasks.tracking import (
    end_run,
    log_and_register_model,
    log_evaluation,
    log_sharing_report,
    log_training,
    start_run,
    tracking_uri,
)


class WeightSharingError(RuntimeError):
    """The trained model's branches do not share one encoder; it must not be registered."""


@flow(name="train-siamese-text")
def train_flow(config: Config = Config(), work_dir: Path | None = None) -> dict[str, object]:
    """Train, verify, evaluate and register the Siamese text model.

    Args:
        config: the whole run configuration (validated when built).
        work_dir: where the run's data splits and `.keras` files go; a temporary directory,
            removed at the end, when None.

    Returns:
        The MLflow run id, the registered model version and the test metrics.

    Raises:
        WeightSharingError: verification failed; the MLflow run is marked FAILED and nothing
            is registered.
    """
    run_id = start_run(config)
    succeeded = False
    try:
        with _run_directory(work_dir) as directory:
            plan = choose_devices(config.training)
            data = generate_pairs(config.data, config.seed, directory)
            initial = build_model(config.model, config.data.features, plan, config.seed, directory)
            trained = train_model(initial, data.paths, config.training, plan, config.seed, run_id)
            log_training(run_id, plan, trained.seconds, trained.pairs_per_second, data.sizes)

            report = verify_sharing(trained.path, data.paths["test"])
            log_sharing_report(run_id, report)
            if not report.passed:
                publish_summary(run_id, report, None, None)
                raise WeightSharingError("weight-sharing verification failed: " + "; ".join(report.failures()))

            evaluation = evaluate_model(trained.path, data.paths["test"], directory)
            log_evaluation(run_id, evaluation.metrics, evaluation.confusion_matrix, evaluation.plots)
            registered = log_and_register_model(run_id, trained.path, data.paths["test"])
            publish_summary(run_id, report, evaluation.metrics, registered)
        succeeded = True
    finally:
        end_run(run_id, succeeded)
    return {"run_id": run_id, "tracking_uri": tracking_uri(), "registered": registered, "test_metrics": evaluation.metrics}


@contextmanager
def _run_directory(work_dir: Path | None) -> Iterator[Path]:
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        yield work_dir
        return
    with tempfile.TemporaryDirectory(prefix="siamese-train-") as directory:
        yield Path(directory)
