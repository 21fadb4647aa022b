"""Model tasks: choose devices, build the shared model, train it, verify sharing, evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from matplotlib.figure import Figure
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.baselines import text_baselines
from siamese.config import Config, Task, TextFileDataConfig, TrainingConfig
from siamese.data.sources import in_memory, load_split
from siamese.data.text_pairs import TextPairs
from siamese.devices import DevicePlan, distribution_scope, plan_devices
from siamese.evaluation import report_test_split
from siamese.models import build_siamese_model
from siamese.models.text import build_tokenizer
from siamese.sharing import SharingReport, verify_weight_sharing
from siamese.training import compile_for_training, fit, predict, task_loss
from tasks.tracking import epoch_metrics_logger

SHARING_PROBE_PAIRS = 16  # pairs of the test split used for the behavioural sharing checks
PLOTTED_PAIRS = 6  # test pairs drawn with their predictions for reviewers (image models)


@dataclass(frozen=True)
class TrainedModel:
    """The trained model, in memory for the tasks after training, and the `.keras` file it was saved to once."""

    model: keras.Model
    path: Path
    seconds: float
    pairs_per_second: float


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, float]
    confusion_matrix: list[list[int]] | None  # similarity only
    plots: list[Path]
    baselines: dict[str, float]  # text pairs: majority class and TF-IDF cosine on the same test split


@task(name="choose-devices", cache_policy=NO_CACHE)
def choose_devices(training: TrainingConfig) -> DevicePlan:
    """Pick GPUs when visible (else the CPU) and the dtype policy."""
    plan = plan_devices(training.devices, training.precision)
    get_run_logger().info("training on %s (%s, %s)", ", ".join(plan.devices), plan.strategy, plan.dtype_policy)
    return plan


@task(name="build-model", cache_policy=NO_CACHE)
def build_model(config: Config, plan: DevicePlan, train_path: Path) -> keras.Model:
    """Build the run's Siamese model with seeded initial weights, its variables on the plan's devices.

    A text pair model's tokenizer is adapted here, on the training split only. The model stays
    in memory: the flow hands it from task to task and saves it once, after training.
    """
    keras.utils.set_random_seed(config.seed)
    with distribution_scope(plan):
        tokenizer = None
        if isinstance(config.data, TextFileDataConfig):
            train = load_split(train_path)
            tokenizer = build_tokenizer(
                np.concatenate([train.left, train.right]),
                vocabulary_size=config.model.vocabulary_size,
                sequence_length=config.model.sequence_length,
            )
            get_run_logger().info("tokenizer: %d tokens from the training split", tokenizer.vocabulary_size())
        built = build_siamese_model(config, dtype_policy=plan.dtype_policy, tokenizer=tokenizer)
    get_run_logger().info("built %s: %s parameters", built.name, f"{built.count_params():,}")
    return built


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(
    model: keras.Model, splits: dict[str, Path], config: Config, plan: DevicePlan, run_id: str, work_dir: Path
) -> TrainedModel:
    """Fit under the device plan's strategy, logging every epoch to the MLflow run; save the result once."""
    keras.utils.set_random_seed(config.seed)
    train, validation = load_split(splits["train"]), load_split(splits["validation"])
    with distribution_scope(plan):
        compile_for_training(model, config.training, config.task)
        result = fit(
            model, train, validation, config.training, callbacks=[epoch_metrics_logger(run_id)], seed=config.seed
        )
    get_run_logger().info("trained in %.1f s (%.0f pairs/s)", result.seconds, result.pairs_per_second)
    path = work_dir / "trained.keras"
    model.save(path)
    return TrainedModel(model, path, result.seconds, result.pairs_per_second)


@task(name="verify-weight-sharing", cache_policy=NO_CACHE)
def verify_sharing(trained: TrainedModel, probe_path: Path, task: Task) -> SharingReport:
    """Check the trained model's branches share one encoder, in memory and in its saved file (see `siamese.sharing`)."""
    model = trained.model
    probe = in_memory(load_split(probe_path), SHARING_PROBE_PAIRS, model.inputs[0].shape)
    report = verify_weight_sharing(model, probe.left, probe.right, probe.labels, loss=task_loss(task), saved_path=trained.path)
    get_run_logger().info("weight sharing %s", "verified" if report.passed else f"FAILED: {report.failures()}")
    return report


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(model: keras.Model, splits: dict[str, Path], task: Task, work_dir: Path) -> EvaluationResult:
    """Score the held-out test split; write the task's plots (and example pairs for images) as PNGs."""
    test = load_split(splits["test"])
    predictions = predict(model, test)
    training_mean = float(load_split(splits["train"]).labels.mean()) if task is Task.REGRESSION else None
    takes_images = len(model.inputs[0].shape) == 4
    examples = in_memory(test, PLOTTED_PAIRS, model.inputs[0].shape) if takes_images else None
    report = report_test_split(task, test.labels, predictions, training_mean, examples)
    plots = [_save_figure(figure, work_dir / f"{name}.png") for name, figure in report.figures.items()]
    logger = get_run_logger()
    logger.info("test metrics: %s", _rounded(report.metrics))
    baselines = {}
    if isinstance(test, TextPairs):
        train = load_split(splits["train"])
        baselines = text_baselines(train.left, train.right, train.labels, test.left, test.right, test.labels)
        logger.info("baselines on the test split: %s", _rounded(baselines))
    confusion = None if report.confusion_matrix is None else report.confusion_matrix.tolist()
    return EvaluationResult(report.metrics, confusion, plots, baselines)


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 4) for key, value in metrics.items()}


def _save_figure(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path
