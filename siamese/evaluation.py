"""Held-out evaluation: similarity scores (classification) or numeric predictions (regression).

Similarity models decide with a threshold calibrated on the validation split
(`calibrate_threshold`), and the test split is reported at that threshold. Models of classes
(image folders) are also asked the question a verification system answers in use: which of N
references, one per class, shows the query's class (`one_shot_trials`, `one_shot_accuracy`).
Pure numpy, so the numbers do not depend on which backend produced the predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from siamese.config import Task
from siamese.data.sequences import PairSet

LOG_LOSS_EPSILON = 1e-7  # clip scores so a confident mistake costs a large, finite loss
DEFAULT_THRESHOLD = 0.5  # the decision without a calibrated threshold (e.g. versions registered before calibration)


@dataclass(frozen=True)
class Calibration:
    """A decision threshold chosen on held-out (validation) scores, and what it achieves there.

    A pair is called similar when its score is >= the threshold.
    """

    threshold: float  # maximises F1 on the calibration scores
    f1: float  # F1 there, at `threshold`
    equal_error_threshold: float  # where the false-positive and false-negative rates are closest
    equal_error_rate: float  # the mean of those two rates there


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
    task: Task,
    labels: np.ndarray,
    predictions: np.ndarray,
    training_mean: float | None,
    examples: PairSet | None,
    threshold: float = DEFAULT_THRESHOLD,
) -> TestReport:
    """Metrics and figures of a model's predictions on the test split, as suits its task.

    Similarity: classification metrics at `threshold` (`evaluate_scores`; pass the one
    `calibrate_threshold` chose on the validation split) and the equal-error rate; ROC and
    precision-recall curves and the score histogram, each marking where `threshold` decides.
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
        evaluation = evaluate_scores(labels, predictions, threshold)
        metrics = evaluation.metrics | {"equal_error_rate": equal_error_rate(labels, predictions)}
        confusion = evaluation.confusion_matrix
        figures = {
            "roc_curve": plot_roc_curve(labels, predictions, threshold),
            "precision_recall_curve": plot_precision_recall_curve(labels, predictions, threshold),
            "score_histogram": plot_score_histogram(labels, predictions, threshold),
        }
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


def calibrate_threshold(labels: np.ndarray, scores: np.ndarray) -> Calibration:
    """The decision threshold that maximises F1 on these (validation) scores, and the equal-error rate.

    The candidates are the distinct scores `s` (call every pair scoring >= `s` similar). The
    threshold returned lies midway between the winning score and the next lower one, so the
    decision does not hinge on one validation pair's exact score: perfectly separated classes
    get a threshold between them. Ties go to the higher threshold (fewer false positives).
    Splits are stratified, so a validation split always holds both classes; input that does
    not is an error rather than a silent fallback to `DEFAULT_THRESHOLD`.

    Raises:
        ValueError: lengths differ, labels other than 0/1, one class only or no pairs, or
            scores that are not finite.
    """
    if not np.all(np.isfinite(np.asarray(scores, dtype=np.float64))):
        raise ValueError("scores must be finite to calibrate a threshold (the model predicted NaN or infinity)")
    candidates, true_positives, false_positives = _counts_by_threshold(labels, scores)
    f1 = 2 * true_positives / (true_positives + false_positives + true_positives[-1])
    best = int(np.argmax(f1))
    equal_error_index, rate = _equal_error_point(true_positives, false_positives)
    return Calibration(
        threshold=_midway_below(candidates, best),
        f1=float(f1[best]),
        equal_error_threshold=_midway_below(candidates, equal_error_index),
        equal_error_rate=rate,
    )


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The error rate where false-positive and false-negative rates meet: threshold-free, like ROC AUC."""
    _, true_positives, false_positives = _counts_by_threshold(labels, scores)
    return _equal_error_point(true_positives, false_positives)[1]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    _, true_positives, false_positives = _counts_by_threshold(labels, scores)
    fpr = np.r_[0.0, false_positives / false_positives[-1]]
    tpr = np.r_[0.0, true_positives / true_positives[-1]]
    return fpr, tpr


def precision_recall_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct threshold, highest first, from (recall 0, precision 1)."""
    _, true_positives, false_positives = _counts_by_threshold(labels, scores)
    recall = np.r_[0.0, true_positives / true_positives[-1]]
    precision = np.r_[1.0, true_positives / (true_positives + false_positives)]
    return recall, precision


def plot_roc_curve(labels: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> Figure:
    fpr, tpr = roc_curve(labels, scores)
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    axes.plot(fpr, tpr, label=f"model (AUC {roc_auc(labels, scores):.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    if threshold is not None:
        false_positive_rate, recall, _ = _operating_point(labels, scores, threshold)
        axes.plot(false_positive_rate, recall, "o", color="black", label=f"threshold {threshold:.3g}")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test split)")
    axes.legend(loc="lower right")
    return figure


def plot_precision_recall_curve(labels: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> Figure:
    """Precision against recall; with few positives it shows what ROC hides: how many alarms are false."""
    recall, precision = precision_recall_curve(labels, scores)
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    axes.plot(recall, precision, drawstyle="steps-post", label="model")
    base_rate = float(np.mean(_validated(labels, scores)[0]))
    axes.axhline(base_rate, linestyle="--", color="grey", label=f"chance ({base_rate:.2f} similar)")
    if threshold is not None:
        _, point_recall, point_precision = _operating_point(labels, scores, threshold)
        axes.plot(point_recall, point_precision, "o", color="black", label=f"threshold {threshold:.3g}")
    axes.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02), title="Precision-recall curve (test split)")
    axes.legend(loc="lower left")
    return figure


def plot_score_histogram(labels: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> Figure:
    labels, scores = _validated(labels, scores)
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    bins = np.linspace(0, 1, 26)
    axes.hist(scores[labels == 0], bins=bins, alpha=0.6, label="different (label 0)")
    axes.hist(scores[labels == 1], bins=bins, alpha=0.6, label="same (label 1)")
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle=":", label=f"threshold {threshold:.3g}")
    axes.set(xlabel="similarity score", ylabel="pairs", title="Scores by label (test split)")
    axes.legend()
    return figure


def evaluate_regression(targets: np.ndarray, predictions: np.ndarray, baseline: float) -> dict[str, float]:
    """MAE, MSE, RMSE, R² and the Pearson and Spearman correlations of `predictions`, beside always saying `baseline`.

    `baseline` is the training targets' mean: a model that does not beat it has learned nothing
    from its inputs, and reviewers see that next to the model's own numbers. The correlations
    are how graded similarity (0-5 scores) is usually judged; they ignore the scale.

    Raises:
        ValueError: lengths differ or there are no targets.
    """
    targets, predictions = _paired(targets, predictions)
    errors = predictions - targets
    baseline_errors = baseline - targets
    variance = float(np.var(targets))
    return {
        "mae": float(np.mean(np.abs(errors))),
        "mse": float(np.mean(errors**2)),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "r2": 1 - float(np.mean(errors**2)) / variance if variance else 0.0,
        "pearson": pearson(targets, predictions),
        "spearman": spearman(targets, predictions),
        "baseline_mae": float(np.mean(np.abs(baseline_errors))),
        "baseline_rmse": float(np.sqrt(np.mean(baseline_errors**2))),
    }


def pearson(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Pearson's correlation; 0.0 when either side is constant (no relation to show; a NaN would break the gate).

    Raises:
        ValueError: lengths differ or there are no values.
    """
    targets, predictions = _paired(targets, predictions)
    target_deviations, prediction_deviations = targets - targets.mean(), predictions - predictions.mean()
    spread = float(np.sqrt(np.sum(target_deviations**2) * np.sum(prediction_deviations**2)))
    return float(np.sum(target_deviations * prediction_deviations) / spread) if spread > 0 else 0.0


def spearman(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's of the ranks, ties sharing their mean rank (0.0 for a constant side)."""
    targets, predictions = _paired(targets, predictions)
    return pearson(average_ranks(targets), average_ranks(predictions))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


def _paired(targets: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if targets.shape != predictions.shape or not len(targets):
        raise ValueError(f"need as many predictions as targets (> 0), got {len(predictions)} and {len(targets)}")
    return targets, predictions


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


@dataclass(frozen=True)
class OneShotTrials:
    """N-way one-shot trials: in each, a query and one reference of each of `ways` distinct classes.

    Indices point into the caller's list of items (images). The query is a different item of the
    class of the reference at column `answers[t]`; a model passes the trial when that reference
    is the one most similar to the query.
    """

    queries: np.ndarray  # (trials,) int
    references: np.ndarray  # (trials, ways) int, one item per class
    answers: np.ndarray  # (trials,) int: the column of `references` holding the query's class

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (query, reference) pair, trial after trial: left and right indices, `trials * ways` each."""
        return np.repeat(self.queries, self.references.shape[1]), self.references.reshape(-1)

    def labels(self) -> np.ndarray:
        """1 where a pair of `pairs` is of one class, else 0: float32, `trials * ways`."""
        columns = np.arange(self.references.shape[1])
        return (columns == self.answers[:, None]).reshape(-1).astype(np.float32)


def one_shot_trials(classes: Sequence[Sequence[int]], ways: int, trials: int, rng: np.random.Generator) -> OneShotTrials:
    """Draw `trials` N-way one-shot trials from items grouped by class.

    Per trial: the query's class uniformly among classes of 2 or more items, `ways - 1` other
    classes uniformly without replacement, the query's class at a uniform column; the query and
    its class's reference are two different items of it, every other reference one item of its
    class. Deterministic given `rng`'s state.

    Args:
        classes: each class's item indices (at least one each).
        ways: classes per trial (N), at least 2.
        trials: how many trials, at least 1.
        rng: the only source of randomness.

    Raises:
        ValueError: `ways` or `trials` out of range, an empty class, fewer classes than `ways`, or
            no class with 2 items to draw a query and its reference from.
    """
    if isinstance(ways, bool) or not isinstance(ways, (int, np.integer)) or ways < 2:
        raise ValueError(f"ways must be an integer >= 2, got {ways!r}")
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    members = [np.asarray(items, dtype=np.int64).reshape(-1) for items in classes]
    if any(not len(items) for items in members):
        raise ValueError("every class needs at least one item")
    if len(members) < ways:
        raise ValueError(f"{ways}-way trials need {ways} classes, got {len(members)}")
    eligible = np.flatnonzero([len(items) >= 2 for items in members])
    if not len(eligible):
        raise ValueError("no class has 2 items: a query and its reference must be different items of one class")
    everyone = np.arange(len(members))
    queries = np.empty(trials, np.int64)
    references = np.empty((trials, ways), np.int64)
    answers = np.empty(trials, np.int64)
    for trial in range(trials):
        target = int(rng.choice(eligible))
        others = rng.choice(np.delete(everyone, target), size=ways - 1, replace=False)
        answers[trial] = rng.integers(ways)
        chosen = np.insert(others, answers[trial], target)
        reference, queries[trial] = rng.choice(members[target], size=2, replace=False)
        references[trial] = [
            reference if column == answers[trial] else rng.choice(members[label]) for column, label in enumerate(chosen)
        ]
    return OneShotTrials(queries, references, answers)


def one_shot_accuracy(scores: np.ndarray, answers: np.ndarray, rng: np.random.Generator) -> float:
    """The share of trials whose most similar reference is the query's class.

    Ties are broken uniformly at random among the tied references (with `rng`): a tie then
    scores as often as chance does, so a scorer that says the same for every reference gets
    about 1/N, neither the credit of always picking the right one nor a penalty below chance.

    Args:
        scores: `(trials, ways)`: the similarity of each trial's query to each of its references.
        answers: `(trials,)`: the column of the query's class (`OneShotTrials.answers`).
        rng: draws the tie-breaks.

    Raises:
        ValueError: the shapes do not match, there are no trials, or a score is not finite.
    """
    scores = np.asarray(scores, dtype=np.float64)
    answers = np.asarray(answers).reshape(-1)
    if scores.ndim != 2 or not len(scores) or scores.shape[0] != len(answers):
        raise ValueError(f"scores must be (trials, ways), one answer per trial; got {scores.shape} and {len(answers)} answers")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (the model predicted NaN or infinity)")
    tied_best = scores == scores.max(axis=1, keepdims=True)
    picked = np.where(tied_best, rng.random(scores.shape), -1.0).argmax(axis=1)
    return float(np.mean(picked == answers))


def _counts_by_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct scores, highest first, with the true and false positives of calling every pair scoring >= each similar."""
    labels, scores = _validated(labels, scores)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_each_score]
    false_positives = (last_of_each_score + 1) - true_positives
    return sorted_scores[last_of_each_score], true_positives, false_positives


def _equal_error_point(true_positives: np.ndarray, false_positives: np.ndarray) -> tuple[int, float]:
    """The candidate whose false-positive and false-negative rates are closest (the first of ties), and their mean."""
    false_positive_rate = false_positives / false_positives[-1]
    false_negative_rate = 1 - true_positives / true_positives[-1]
    index = int(np.argmin(np.abs(false_positive_rate - false_negative_rate)))
    return index, float((false_positive_rate[index] + false_negative_rate[index]) / 2)


def _midway_below(candidates: np.ndarray, index: int) -> float:
    """Midway between candidate `index` and the next lower distinct score; the lowest score itself when it is the last."""
    if index + 1 == len(candidates):
        return float(candidates[index])
    higher, lower = candidates[index], candidates[index + 1]
    midway = (higher + lower) / 2
    return float(midway if midway > lower else higher)  # adjacent floats: the midpoint rounds onto the lower one


def _operating_point(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """False-positive rate, recall and precision of calling pairs scoring >= `threshold` similar."""
    evaluation = evaluate_scores(labels, scores, threshold)
    (true_negatives, false_positives), _ = evaluation.confusion_matrix
    return false_positives / (true_negatives + false_positives), evaluation.metrics["recall"], evaluation.metrics["precision"]


def _validated(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length: {labels.shape[0]} vs {scores.shape[0]}")
    if not len(labels):
        raise ValueError("no pairs to evaluate; evaluation needs pairs of both classes")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    if labels.min() == labels.max():
        raise ValueError(f"labels hold one class only ({labels[0]:g}); evaluation needs both")
    return labels, scores


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0
