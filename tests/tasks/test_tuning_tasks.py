"""A sweep's study as the workers see it: the pruner they report to, and how a trial's epochs are judged."""

from __future__ import annotations

import math

import optuna
import pytest

from siamese.config import Config
from tasks.tuning import PRUNER_STARTUP_TRIALS, PRUNER_WARMUP_EPOCHS, ValidationReporter, create_study, worker_trial


@pytest.fixture
def study(tmp_path):
    """A sweep's study in its journal file, with enough finished trials for the pruner to judge: 0.9 at every epoch."""
    storage = str(tmp_path / "study.journal")
    study = create_study("sweep", storage, Config(), trials=16)
    for _ in range(PRUNER_STARTUP_TRIALS):
        trial = study.ask()
        for epoch in range(6):
            trial.report(0.9, step=epoch)
        study.tell(trial, 0.9)
    return study, storage


def test_a_worker_prunes_with_the_sweeps_pruner_never_before_its_warm_up(study):
    study, storage = study
    trial = worker_trial("sweep", storage, study.ask()._trial_id)  # loaded from the storage, as on a worker
    for epoch in range(PRUNER_WARMUP_EPOCHS):
        trial.report(0.5, step=epoch)
        assert not trial.should_prune(), f"pruned in warm-up epoch {epoch + 1}"
    trial.report(0.5, step=PRUNER_WARMUP_EPOCHS)
    assert trial.should_prune()  # trailing the others' median once the warm-up is over


def test_the_reporter_keeps_the_best_epoch_and_stops_a_trailing_trial(study):
    study, storage = study
    reporter = ValidationReporter(worker_trial("sweep", storage, study.ask()._trial_id), "val_auc")
    reporter.on_epoch_end(0, {"loss": 0.6, "val_auc": 0.7})
    reporter.on_epoch_end(1, {"loss": 0.5, "val_auc": 0.6})
    with pytest.raises(optuna.TrialPruned, match="val_auc 0.6000 at epoch 3"):
        reporter.on_epoch_end(2, {"loss": 0.5, "val_auc": 0.6})
    assert reporter.best == pytest.approx(0.7) and reporter.epochs == 3


@pytest.mark.parametrize("logs", [{"loss": math.nan, "val_auc": 0.7}, {"loss": 0.5, "val_auc": math.nan}, {"loss": math.inf, "val_auc": 0.7}])
def test_a_diverging_trial_stops_at_once_as_failed(study, logs):
    study, storage = study
    reporter = ValidationReporter(worker_trial("sweep", storage, study.ask()._trial_id), "val_auc")
    with pytest.raises(FloatingPointError, match="diverged at epoch 1 .* the learning rate is too high"):
        reporter.on_epoch_end(0, logs)


def test_a_regression_sweep_minimises_its_validation_error(tmp_path):
    from siamese.config import load_config

    graded = load_config(None, {"kind": "text", "data.path": "scores.csv", "data.task": "regression"})
    assert create_study("graded", str(tmp_path / "study.journal"), graded, trials=4).direction is optuna.study.StudyDirection.MINIMIZE
