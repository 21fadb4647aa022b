"""Held-out evaluation: similarity scores (classification) or numeric predictions (regression).

Pure numpy, so the numbers do not depend on which backend produced the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from siamese.config import Task
from siamese.data.sequences import PairSet

LOG_LOSS_EPSILON = 1e-7  # clip scores so a confident mistake costs a large, finite loss


@dataclass(frozen=True)
class Evaluation:
    """Binary-classification metrics of scores in 0..1 against 0/1 labels at `threshold`."""

    metrics: dict[str, float]
    confusion_matrix: np.ndarray  # [[true negatives, false positives], [false negatives, true positives]]
    threshold: float


@dataclass(frozen=True)
class TestReport:
    """What a reviewer sees of the held-out split: metrics, confusion matrix, figures by name."""

    metrics: dict[str, float]
    confusion_matrix: np.ndarray | None  # similarity only
    figures: dict[str, Figure]


def report_test_split(
    task: Task, labels: np.ndarray, predictions: np.ndarray, training_mean: float | None, examples: PairSet | None
) -> TestReport:
    """Metrics and figures of a model's predictions on the test split, as suits its task.

    Similarity: classification metrics (`evaluate_scores`), ROC curve and score histogram.
    Regression: MAE, RMSE and R² beside the predictor that always says `training_mean`, and
    predicted against true targets. `examples` (the first test pairs, for image models) are
    drawn with their labels and predictions.

    Raises:
        ValueError: `training_mean` is missing for regression, or the labels do not suit the task.
    """
    if task is Task.REGRESSION:
        if training_mean is None:
            raise ValueError("regression is reported against the training targets' mean: pass training_mean")
        metrics, confusion = evaluate_regression(labels, predictions, training_mean), None
        figures = {"predictions": plot_predictions(labels, predictions)}
    else:
        evaluation = evaluate_scores(labels, predictions)
        metrics, confusion = evaluation.metrics, evaluation.confusion_matrix
        figures = {"roc_curve": plot_roc_curve(labels, predictions), "score_histogram": plot_score_histogram(labels, predictions)}
    if examples is not None:
        shown = predictions[: len(examples)]
        figures["example_pairs"] = plot_example_pairs(examples.left, examples.right, examples.labels, shown)
    return TestReport(metrics, confusion, figures)


def evaluate_scores(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> Evaluation:
    """Accuracy, ROC AUC, precision, recall, F1 and log loss of `scores` for `labels`.

    Raises:
        ValueError: shapes differ, or the labels do not contain both classes (AUC undefined).
    """
    labels, scores = _validated(labels, scores)
    predicted = scores >= threshold
    positive = labels == 1
    true_positives = int(np.sum(predicted & positive))
    false_positives = int(np.sum(predicted & ~positive))
    false_negatives = int(np.sum(~predicted & positive))
    true_negatives = int(np.sum(~predicted & ~positive))
    precision = _ratio(true_positives, true_positives + false_positives)
    recall = _ratio(true_positives, true_positives + false_negatives)
    clipped = np.clip(scores, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    metrics = {
        "accuracy": (true_positives + true_negatives) / len(labels),
        "roc_auc": roc_auc(labels, scores),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "log_loss": float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))),
    }
    confusion = np.array([[true_negatives, false_positives], [false_negatives, true_positives]])
    return Evaluation({key: float(value) for key, value in metrics.items()}, confusion, threshold)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative (ties half)."""
    labels, scores = _validated(labels, scores)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    num_positive = int(np.sum(labels == 1))
    num_negative = len(labels) - num_positive
    rank_sum = float(np.sum(average_rank[labels == 1]))
    return (rank_sum - num_positive * (num_positive + 1) / 2) / (num_positive * num_negative)


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    labels, scores = _validated(labels, scores)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_each_score]
    false_positives = (last_of_each_score + 1) - true_positives
    fpr = np.r_[0.0, false_positives / false_positives[-1]]
    tpr = np.r_[0.0, true_positives / true_positives[-1]]
    return fpr, tpr


def plot_roc_curve(labels: np.ndarray, scores: np.ndarray) -> Figure:
    fpr, tpr = roc_curve(labels, scores)
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    axes.plot(fpr, tpr, label=f"model (AUC {roc_auc(labels, scores):.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test split)")
    axes.legend(loc="lower right")
    return figure


def plot_score_histogram(labels: np.ndarray, scores: np.ndarray) -> Figure:
    labels, scores = _validated(labels, scores)
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    bins = np.linspace(0, 1, 26)
    axes.hist(scores[labels == 0], bins=bins, alpha=0.6, label="different (label 0)")
    axes.hist(scores[labels == 1], bins=bins, alpha=0.6, label="same (label 1)")
    axes.set(xlabel="similarity score", ylabel="pairs", title="Scores by label (test split)")
    axes.legend()
    return figure


def evaluate_regression(targets: np.ndarray, predictions: np.ndarray, baseline: float) -> dict[str, float]:
    """MAE, RMSE and R² of `predictions`, beside the trivial predictor that always says `baseline`.

    `baseline` is the training targets' mean: a model that does not beat it has learned nothing
    from the images, and reviewers see that next to the model's own numbers.

    Raises:
        ValueError: lengths differ or there are no targets.
    """
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if targets.shape != predictions.shape or not len(targets):
        raise ValueError(f"need as many predictions as targets (> 0), got {len(predictions)} and {len(targets)}")
    errors = predictions - targets
    baseline_errors = baseline - targets
    variance = float(np.var(targets))
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "r2": 1 - float(np.mean(errors**2)) / variance if variance else 0.0,
        "baseline_mae": float(np.mean(np.abs(baseline_errors))),
        "baseline_rmse": float(np.sqrt(np.mean(baseline_errors**2))),
    }


def plot_predictions(targets: np.ndarray, predictions: np.ndarray) -> Figure:
    """Predicted against true targets; points on the diagonal are exact."""
    targets, predictions = np.ravel(targets), np.ravel(predictions)
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    axes.scatter(targets, predictions, s=8, alpha=0.5)
    low, high = float(min(targets.min(), predictions.min())), float(max(targets.max(), predictions.max()))
    axes.plot([low, high], [low, high], linestyle="--", color="grey", label="exact")
    axes.set(xlabel="target", ylabel="prediction", title="Predictions (test split)")
    axes.legend(loc="upper left")
    return figure


def plot_example_pairs(left: np.ndarray, right: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> Figure:
    """One row per pair: left image, right image, and the label against the prediction.

    Images are `(n, height, width, channels)` pixels 0..255 (grayscale with one channel).
    """
    count = len(labels)
    figure = Figure(figsize=(4.4, 2.2 * count))
    axes = figure.subplots(count, 2, squeeze=False)
    for row in range(count):
        for column, (side, images) in enumerate((("left", left), ("right", right))):
            image = np.asarray(images[row]).astype(np.uint8)
            axes[row, column].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
            axes[row, column].set_axis_off()
            axes[row, column].set_title(side, fontsize=8)
        axes[row, 0].text(
            0, -0.12, f"label {labels[row]:.3g}   prediction {float(np.ravel(predictions)[row]):.3g}",
            transform=axes[row, 0].transAxes, fontsize=8, va="top",
        )
    figure.tight_layout()
    return figure


def _validated(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length: {labels.shape[0]} vs {scores.shape[0]}")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    if labels.min() == labels.max():
        raise ValueError(f"labels hold one class only ({labels[0]:g}); evaluation needs both")
    return labels, scores


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0
