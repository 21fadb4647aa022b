"""Model tasks: choose devices, build the shared model, train it, verify sharing, evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import TextModelConfig, TrainingConfig
from siamese.data.sequences import PairSet
from siamese.devices import DevicePlan, distribution_scope, plan_devices
from siamese.evaluation import evaluate_scores, plot_roc_curve, plot_score_histogram
from siamese.models.text import build_text_model
from siamese.sharing import SharingReport, verify_weight_sharing
from siamese.training import compile_for_training, fit
from tasks.tracking import epoch_metrics_logger

SHARING_PROBE_PAIRS = 16  # pairs of the test split used for the behavioural sharing checks


@dataclass(frozen=True)
class TrainedModel:
    path: Path
    seconds: float
    pairs_per_second: float


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    plots: list[Path]


@task(name="choose-devices", cache_policy=NO_CACHE)
def choose_devices(training: TrainingConfig) -> DevicePlan:
    """Pick GPUs when visible (else the CPU) and the dtype policy."""
    plan = plan_devices(training.devices, training.precision)
    get_run_logger().info("training on %s (%s, %s)", ", ".join(plan.devices), plan.strategy, plan.dtype_policy)
    return plan


@task(name="build-model", cache_policy=NO_CACHE)
def build_model(model: TextModelConfig, features: int, plan: DevicePlan, seed: int, work_dir: Path) -> Path:
    """Build the Siamese text model with seeded initial weights and save it as `.keras`."""
    keras.utils.set_random_seed(seed)
    built = build_text_model(features=features, units=model.units, head=model.head, dtype_policy=plan.dtype_policy)
    get_run_logger().info("built %s: %s parameters", built.name, f"{built.count_params():,}")
    return _save(built, work_dir / "initial.keras")


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(
    model_path: Path, splits: dict[str, Path], training: TrainingConfig, plan: DevicePlan, seed: int, run_id: str
) -> TrainedModel:
    """Fit under the device plan's strategy, logging every epoch to the MLflow run."""
    keras.utils.set_random_seed(seed)
    train, validation = PairSet.load(splits["train"]), PairSet.load(splits["validation"])
    with distribution_scope(plan):
        model = keras.saving.load_model(model_path)
        compile_for_training(model, training)
        result = fit(model, train, validation, training, callbacks=[epoch_metrics_logger(run_id)])
    get_run_logger().info("trained in %.1f s (%.0f pairs/s)", result.seconds, result.pairs_per_second)
    return TrainedModel(_save(model, model_path.with_name("trained.keras")), result.seconds, result.pairs_per_second)


@task(name="verify-weight-sharing", cache_policy=NO_CACHE)
def verify_sharing(model_path: Path, probe_path: Path) -> SharingReport:
    """Check the trained model's branches share one encoder (see `siamese.sharing`)."""
    probe = PairSet.load(probe_path).take(slice(0, SHARING_PROBE_PAIRS))
    report = verify_weight_sharing(keras.saving.load_model(model_path), probe.left, probe.right, probe.labels)
    get_run_logger().info("weight sharing %s", "verified" if report.passed else f"FAILED: {report.failures()}")
    return report


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(model_path: Path, test_path: Path, work_dir: Path) -> EvaluationResult:
    """Score the held-out test split; write the ROC curve and score histogram as PNGs."""
    test = PairSet.load(test_path)
    scores = keras.saving.load_model(model_path).predict(test.inputs(), verbose=0)
    evaluation = evaluate_scores(test.labels, scores)
    plots = []
    for name, figure in (("roc_curve", plot_roc_curve), ("score_histogram", plot_score_histogram)):
        path = work_dir / f"{name}.png"
        figure(test.labels, scores).savefig(path, dpi=100)
        plots.append(path)
    get_run_logger().info("test metrics: %s", {key: round(value, 4) for key, value in evaluation.metrics.items()})
    return EvaluationResult(evaluation.metrics, evaluation.confusion_matrix.tolist(), plots)


def _save(model: keras.Model, path: Path) -> Path:
    model.save(path)
    return path
