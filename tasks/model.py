"""Model tasks: choose devices, build the shared model, train it, verify sharing, evaluate.

They hand each other `.keras` paths (`tasks.model_files`), never live models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
from matplotlib.figure import Figure
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config, Task, TrainingConfig
from siamese.devices import DevicePlan, distribution_scope, plan_devices
from siamese.evaluation import report_test_split
from siamese.families import family_of
from siamese.sharing import SharingReport, verify_weight_sharing
from siamese.training import compile_for_training, fit, predict
from tasks.model_files import load_model_file, save_model_file
from tasks.tracking import epoch_metrics_logger

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
    baselines: dict[str, float]  # the family's baselines on the same test split (text pairs: majority, TF-IDF)


@task(name="choose-devices", cache_policy=NO_CACHE)
def choose_devices(training: TrainingConfig) -> DevicePlan:
    """Pick GPUs when visible (else the CPU) and the dtype policy."""
    plan = plan_devices(training.devices, training.precision)
    get_run_logger().info("training on %s (%s, %s)", ", ".join(plan.devices), plan.strategy, plan.dtype_policy)
    return plan


@task(name="build-model", cache_policy=NO_CACHE)
def build_model(config: Config, plan: DevicePlan, train_path: Path, work_dir: Path) -> Path:
    """Build the run's Siamese model with seeded initial weights, on the plan's devices; save it as `initial.keras`.

    The one place the run seeds Keras: initial weights follow `config.seed`, and training's
    shuffling takes the seed explicitly.
    """
    keras.utils.set_random_seed(config.seed)
    family = family_of(config.kind)
    with distribution_scope(plan):
        model = family.build(config, family.load_split(config, train_path), plan.dtype_policy)
    get_run_logger().info("built %s: %s parameters", model.name, f"{model.count_params():,}")
    return save_model_file(model, work_dir / "initial.keras")


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(
    model_path: Path, splits: dict[str, Path], config: Config, plan: DevicePlan, run_id: str, work_dir: Path
) -> TrainedModel:
    """Fit under the device plan's strategy, logging every epoch to the MLflow run; save the result as `trained.keras`."""
    family = family_of(config.kind)
    train, validation = (family.load_split(config, splits[name]) for name in ("train", "validation"))
    with distribution_scope(plan):
        model = load_model_file(model_path, to_change=True)
        compile_for_training(model, config.training, config.task)
        result = fit(model, train, validation, config.training, callbacks=[epoch_metrics_logger(run_id)], seed=config.seed)
    get_run_logger().info("trained in %.1f s (%.0f pairs/s)", result.seconds, result.pairs_per_second)
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
    """Score the held-out test split beside the family's baselines; write the task's plots as PNGs."""
    family = family_of(config.kind)
    train, test = (family.load_split(config, splits[name]) for name in ("train", "test"))
    predictions = predict(load_model_file(model_path), test)
    training_mean = float(train.labels.mean()) if config.task is Task.REGRESSION else None  # the trivial predictor
    report = report_test_split(config.task, test.labels, predictions, training_mean, family.example_pairs(test))
    plots = [_save_figure(figure, work_dir / f"{name}.png") for name, figure in report.figures.items()]
    logger = get_run_logger()
    logger.info("test metrics: %s", _rounded(report.metrics))
    baselines = family.baselines(config, train, test)
    if baselines:
        logger.info("baselines on the test split: %s", _rounded(baselines))
    confusion = None if report.confusion_matrix is None else report.confusion_matrix.tolist()
    return EvaluationResult(report.metrics, confusion, plots, baselines)


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 4) for key, value in metrics.items()}


def _save_figure(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path
