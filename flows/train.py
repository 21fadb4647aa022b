"""The training flow: data -> shared model -> training -> sharing verification -> evaluation -> gate.

One flow for every model family (`config.kind`: sequences, text or vision); what differs between
families is asked of `siamese.families.family_of(config.kind)` inside the tasks. Every stage is a
Prefect task, and the registry gate a subflow (`flows/gate.py`), so the flow run's page shows
them in order; tasks hand each other paths (split files, `.keras` files) and run ids.
Everything is recorded in one MLflow run, and the model is registered only after sharing is
verified.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator

from prefect import flow, get_run_logger
from pydantic import BeforeValidator

from flows.gate import gate_flow
from siamese.config import Config, config_from_dict
from tasks.data import prepare_pairs
from tasks.model import build_model, choose_devices, evaluate_model, train_model, verify_sharing
from tasks.registry import log_and_register_model, read_aliases, retract_version, retract_versions_of_run
from tasks.reporting import publish_summary
from tasks.resume import find_checkpoint, resumable_state
from tasks.store import mask_credentials, tracking_uri
from tasks.tracking import (
    check_tracking_store,
    ended_run,
    fail_orphaned_runs,
    log_dataset,
    log_derived_params,
    log_evaluation,
    log_sharing_report,
    log_training,
    process_exists,
    start_run,
)

WORK_DIRECTORY_PREFIX = "siamese-train-"  # then the PID of the process that owns it


def _config_from_parameters(value: Any) -> Any:
    """Deployments and the Prefect UI pass the config as JSON: the shape of a TOML config file."""
    return config_from_dict(value, "flow parameters") if isinstance(value, dict) else value


# A `Config` flow parameter that also accepts that JSON, validated with the config's own messages.
ConfigParameter = Annotated[Config, BeforeValidator(_config_from_parameters)]


class WeightSharingError(RuntimeError):
    """The trained model's branches do not share one encoder; it must not be registered."""


@flow(name="train-siamese")
def train_flow(
    config: ConfigParameter = Config(), work_dir: Path | None = None, against_champion: bool = False, fresh: bool = False
) -> dict[str, object]:
    """Train, verify, evaluate and register a Siamese model (text or vision), then gate it.

    Args:
        config: the whole run configuration (validated when built).
        work_dir: where the run's data splits, `.keras` files and plots go; a temporary
            directory, removed at the end, when None (the splits then go to the run's resumable
            state, `tasks.resume`, so that a rerun after a crash does not prepare them again).
        against_champion: compare the new version with the current champion and promote it
            if better (retraining); otherwise it becomes champion only when there is none yet
            and it reaches `gate.min_quality`.
        fresh: prepare the data and train from the start instead of resuming what an
            interrupted run of the same config on the same data left (`tasks.resume`).

    Returns:
        The MLflow run id, the registered model version and its aliases, the test metrics, the
        decision threshold stored with the model (None for regression) and the gate's decision
        (None when plain training left an existing champion alone).

    Raises:
        WeightSharingError: verification failed; the MLflow run is marked FAILED and nothing
            is registered.
        ImageDataError, PairFileError: an image or text pair file, folder or table cannot be
            used (named in the message); no MLflow run is started.
        TrackingUnavailableError: the tracking server does not answer (named in the message).
        IncompatibleVersionError: the new version takes other inputs than the champion; it is
            retracted, as is the version of any run that fails after registering it.
    """
    check_tracking_store()  # a dead tracking server stops the flow here, in seconds
    with run_directory(work_dir) as directory, resumable_state(config, fresh) as resumable:
        plan = choose_devices(config.training)
        # Bad input stops here, before an MLflow run exists. A temporary work directory's splits would be lost in a crash:
        # they go to the resumable state, where a rerun finds them; a work directory the user gave keeps its own.
        data = prepare_pairs(config, directory, resumable if work_dir is None else None)
        splits = data.paths
        with _mlflow_run(config) as run_id:
            if data.source is not None:
                log_dataset(run_id, data.source, data.sizes)
            log_derived_params(run_id, data.params)
            initial = build_model(config, plan, splits["train"], run_id, directory)
            checkpoint = find_checkpoint(resumable, run_id)
            trained = train_model(initial, splits, config, plan, run_id, directory, checkpoint)
            log_training(run_id, plan, trained.seconds, trained.pairs_per_second, data.sizes)

            report = verify_sharing(trained.path, splits["test"], config)
            log_sharing_report(run_id, report)
            if not report.passed:
                publish_summary(run_id, report, None, None)
                raise WeightSharingError("weight-sharing verification failed: " + "; ".join(report.failures()))

            evaluation = evaluate_model(trained.path, splits, config, directory)  # decides at the validation-calibrated threshold
            calibration = evaluation.calibration
            log_evaluation(
                run_id, evaluation.metrics, evaluation.confusion_matrix, evaluation.plots, evaluation.baselines, calibration
            )
            threshold = None if calibration is None else calibration.threshold
            registered = log_and_register_model(run_id, trained.path, splits["test"], config, threshold)
            with _retracted_on_failure(registered):
                gate = gate_flow(run_id, registered, splits["test"], config, against_champion, directory, evaluation.baselines)
                registered["aliases"] = read_aliases(registered)  # as they are, whatever concurrent runs did
                publish_summary(run_id, report, evaluation.metrics, registered, evaluation.baselines, gate, calibration)
    return {
        "run_id": run_id,
        "tracking_uri": mask_credentials(tracking_uri()),
        "registered": registered,
        "test_metrics": evaluation.metrics,
        "threshold": threshold,
        "gate": gate,
    }


@contextmanager
def _mlflow_run(config: Config) -> Iterator[str]:
    """An MLflow run that ends FINISHED, or FAILED with the error that stopped it (`ended_run`).

    Runs of this machine whose process died without ending them are marked FAILED first, and
    the versions they registered retracted.
    """
    orphans = fail_orphaned_runs()
    if orphans:
        get_run_logger().warning("marked %d run(s) FAILED whose process died while running: %s", len(orphans), ", ".join(orphans))
    for orphan in orphans:
        for version in retract_versions_of_run(orphan, f"its run {orphan} died before it ended"):
            get_run_logger().warning("retracted %s: registered by a run that died", version)
    with ended_run(start_run(config)) as run_id:
        yield run_id


@contextmanager
def _retracted_on_failure(registered: dict[str, object]) -> Iterator[None]:
    """A run that fails after registering its version takes it back (`retract_version`): a failed run registers nothing usable.

    Called directly, not as a task: it must also work when what failed is the Prefect API. Should
    the retraction fail too (the store is gone), the run's own error is still the one raised.
    """
    try:
        yield
    except BaseException as error:
        try:
            retract_version(registered, f"{type(error).__name__}: {error}")
        except Exception as retraction:
            get_run_logger().error("could not retract version %s of %s: %s", registered["version"], registered["name"], retraction)
        raise


@contextmanager
def run_directory(work_dir: Path | None) -> Iterator[Path]:
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        yield work_dir
        return
    _remove_abandoned_work_directories()
    with tempfile.TemporaryDirectory(prefix=f"{WORK_DIRECTORY_PREFIX}{os.getpid()}-") as directory:
        yield Path(directory)


def _remove_abandoned_work_directories() -> None:
    """Remove the temporary work directories of runs whose process died (kill -9, a crash): nothing else would.

    Each is named after its process (`siamese-train-<pid>-...`); a directory whose process still
    runs, or whose PID a new process took, is left.
    """
    for directory in Path(tempfile.gettempdir()).glob(f"{WORK_DIRECTORY_PREFIX}*-*"):
        pid = directory.name.removeprefix(WORK_DIRECTORY_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)
