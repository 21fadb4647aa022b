"""Model tasks: choose devices, build the shared model, train it, verify sharing, evaluate.

They hand each other `.keras` paths (`tasks.model_files`), never live models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from matplotlib.figure import Figure
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config, Task, TrainingConfig
from siamese.devices import DevicePlan, distribution_scope, plan_devices
from siamese.data.pairs import Pairs
from siamese.evaluation import DEFAULT_THRESHOLD, Calibration, calibrate_threshold, report_test_split
from siamese.families import family_of
from siamese.sharing import SharingReport, verify_weight_sharing
from siamese.training import compile_for_training, fit, predict
from tasks.model_files import load_model_file, save_model_file
from tasks.tracking import epoch_metrics_logger, log_derived_params, log_stopping

SHARING_PROBE_PAIRS = 16  # pairs of the test split used for the behavioural sharing checks


@dataclass(frozen=True)
class TrainedModel:
    path: Path  # the trained model's `.keras` file
    seconds: float
    pairs_per_second: float


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, float]
    confusion_matrix: list[list[int]] | None  # similarity only
    plots: list[Path]
    baselines: dict[str, float]  # the family's baselines on the same test split (text pairs: majority, TF-IDF; images: pixels)
    calibration: Calibration | None  # the decision threshold chosen on the validation split; None: regression, or uncalibrated


@task(name="choose-devices", cache_policy=NO_CACHE)
def choose_devices(training: TrainingConfig) -> DevicePlan:
    """Pick GPUs when visible (else the CPU) and the dtype policy."""
    plan = plan_devices(training.devices, training.precision)
    get_run_logger().info("training on %s (%s, %s)", ", ".join(plan.devices), plan.strategy, plan.dtype_policy)
    return plan


@task(name="build-model", cache_policy=NO_CACHE)
def build_model(config: Config, plan: DevicePlan, train_path: Path, run_id: str, work_dir: Path) -> Path:
    """Build the run's Siamese model with seeded initial weights, on the plan's devices; save it as `initial.keras`.

    The one place the run seeds Keras: initial weights follow `config.seed`, and training's
    shuffling takes the seed explicitly. What the build learned from the data (word-vector
    coverage) goes to the run's params.
    """
    keras.utils.set_random_seed(config.seed)
    family = family_of(config.kind)
    with distribution_scope(plan):
        built = family.build_with_params(config, family.load_split(config, train_path), plan.dtype_policy)
    log_derived_params(run_id, built.params)
    get_run_logger().info("built %s: %s parameters", built.model.name, f"{built.model.count_params():,}")
    return save_model_file(built.model, work_dir / "initial.keras")


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(
    model_path: Path,
    splits: dict[str, Path],
    config: Config,
    plan: DevicePlan,
    run_id: str,
    work_dir: Path,
    checkpoint: Path | None = None,
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> TrainedModel:
    """Fit under the device plan's strategy, logging every epoch and where training stopped to the MLflow run.

    The family's `trainer` is fitted (real images: through random transforms; class folders: on
    every pair of class-balanced batches); the model, with the weights of its best validation
    epoch, is saved as `trained.keras`. With a `checkpoint` directory (`find_checkpoint`), the
    state is saved there after each epoch and an interrupted run's state is resumed. `callbacks`
    run after the epoch's metrics are logged (a sweep's trial reports them to its tuner).
    """
    family = family_of(config.kind)
    train, validation = (family.load_split(config, splits[name]) for name in ("train", "validation"))
    with distribution_scope(plan):
        model = load_model_file(model_path, to_change=True)
        trainer, train = family.trainer(config, model, train)  # shares model's variables: training it trains model
        compile_for_training(trainer, config.training, config.task, family.loss(config))
        result = fit(
            trainer, train, validation, config.training, callbacks=[epoch_metrics_logger(run_id), *callbacks], seed=config.seed, checkpoint=checkpoint
        )
    log_stopping(run_id, result.stopped_epoch, result.best_epoch)
    get_run_logger().info(
        "trained %d of at most %d epochs in %.1f s (%.0f pairs/s); kept epoch %s",
        result.stopped_epoch,
        config.training.epochs,
        result.seconds,
        result.pairs_per_second,
        result.best_epoch or "the last (no validation pairs)",
    )
    return TrainedModel(save_model_file(model, work_dir / "trained.keras"), result.seconds, result.pairs_per_second)


@task(name="verify-weight-sharing", cache_policy=NO_CACHE)
def verify_sharing(model_path: Path, probe_path: Path, config: Config) -> SharingReport:
    """Check the trained model's branches share one encoder, in memory and in its saved file (see `siamese.sharing`)."""
    family = family_of(config.kind)
    probe = family.load_split(config, probe_path).head(SHARING_PROBE_PAIRS)
    model = load_model_file(model_path)
    report = verify_weight_sharing(model, probe.left, probe.right, probe.labels, loss=family.loss(config), saved_path=model_path)
    get_run_logger().info("weight sharing %s", "verified" if report.passed else f"FAILED: {report.failures()}")
    return report


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(model_path: Path, splits: dict[str, Path], config: Config, work_dir: Path) -> EvaluationResult:
    """Score the held-out test split beside the family's baselines; write the task's plots as PNGs.

    Similarity models decide at the threshold calibrated on the validation split (max F1), so
    the test split judges the decision the registered model will make; every family takes
    this one path. The family's own test metrics (class folders: one-shot accuracy) join the
    task's.
    """
    family = family_of(config.kind)
    train, validation, test = (family.load_split(config, splits[name]) for name in ("train", "validation", "test"))
    model = load_model_file(model_path)
    predictions = predict(model, test)
    regression = config.task is Task.REGRESSION
    training_mean = float(train.labels.mean()) if regression else None  # the trivial predictor
    calibration = None if regression else _calibrate(model, validation)
    threshold = DEFAULT_THRESHOLD if calibration is None else calibration.threshold
    report = report_test_split(config.task, test.labels, predictions, training_mean, family.example_pairs(test), threshold)
    plots = [_save_figure(figure, work_dir / f"{name}.png") for name, figure in report.figures.items()]
    metrics = report.metrics | family.extra_test_metrics(config, model, test)
    logger = get_run_logger()
    logger.info("test metrics%s: %s", "" if regression else f" at threshold {threshold:.4g}", _rounded(metrics))
    baselines = family.baselines(config, train, validation, test)
    if baselines:
        logger.info("baselines on the test split: %s", _rounded(baselines))
    confusion = None if report.confusion_matrix is None else report.confusion_matrix.tolist()
    return EvaluationResult(metrics, confusion, plots, baselines, calibration)


def _calibrate(model: keras.Model, validation: Pairs) -> Calibration | None:
    """The threshold of maximum F1 on the validation split, or None (decide at 0.5) when it lacks a class.

    A split without validation pairs (`data.validation_fraction = 0`) has nothing to calibrate on.
    """
    logger = get_run_logger()
    if len(np.unique(validation.labels)) < 2:
        logger.warning(
            "the validation split (%d pairs) lacks a class to calibrate on: deciding at the default threshold %g",
            len(validation),
            DEFAULT_THRESHOLD,
        )
        return None
    calibration = calibrate_threshold(validation.labels, predict(model, validation))
    logger.info(
        "threshold %.4g (max F1 %.4f on %d validation pairs); equal-error rate %.4f at %.4g",
        calibration.threshold,
        calibration.f1,
        len(validation),
        calibration.equal_error_rate,
        calibration.equal_error_threshold,
    )
    return calibration


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 4) for key, value in metrics.items()}


def _save_figure(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path
