"""Evaluation metrics against hand-computed answers and scikit-learn; one-shot trials; plots render to PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn import metrics as sklearn_metrics

from siamese.config import Task
from siamese.data.sequences import PairSet
from siamese.evaluation import (
    calibrate_threshold,
    equal_error_rate,
    evaluate_regression,
    evaluate_scores,
    one_shot_accuracy,
    one_shot_trials,
    plot_example_pairs,
    plot_precision_recall_curve,
    plot_predictions,
    plot_roc_curve,
    plot_score_histogram,
    precision_recall_curve,
    report_test_split,
    roc_auc,
    roc_curve,
)

# Hand-worked example. At threshold 0.5: TP = 0.9, 0.6, 0.8; FN = 0.4; FP = 0.7, 0.5; TN = 0.2, 0.1.
LABELS = np.array([1, 1, 1, 0, 0, 0, 1, 0])
SCORES = np.array([0.9, 0.6, 0.4, 0.7, 0.2, 0.1, 0.8, 0.5])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def random_labels_and_scores(seed: int, size: int = 200, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=size)
    scores = np.clip(rng.normal(0.5 + 0.2 * (labels - 0.5), 0.25), 0, 1)
    return labels, (np.round(scores, decimals) if decimals is not None else scores)


def test_hand_computed_confusion_matrix_and_metrics():
    evaluation = evaluate_scores(LABELS, SCORES)
    np.testing.assert_array_equal(evaluation.confusion_matrix, [[2, 2], [1, 3]])
    assert evaluation.threshold == 0.5
    assert evaluation.metrics["accuracy"] == pytest.approx(5 / 8)
    assert evaluation.metrics["precision"] == pytest.approx(3 / 5)
    assert evaluation.metrics["recall"] == pytest.approx(3 / 4)
    assert evaluation.metrics["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    # 13 of the 16 (positive, negative) pairs are ordered correctly.
    assert evaluation.metrics["roc_auc"] == pytest.approx(13 / 16)
    expected_log_loss = -np.mean([math.log(p) for p in (0.9, 0.6, 0.4, 0.8)] + [math.log(1 - p) for p in (0.7, 0.2, 0.1, 0.5)])
    assert evaluation.metrics["log_loss"] == pytest.approx(expected_log_loss)
    assert all(isinstance(value, float) for value in evaluation.metrics.values())


def test_threshold_moves_the_decision():
    evaluation = evaluate_scores(LABELS, SCORES, threshold=0.75)
    np.testing.assert_array_equal(evaluation.confusion_matrix, [[4, 0], [2, 2]])
    assert evaluation.metrics["precision"] == 1.0
    assert evaluation.metrics["recall"] == 0.5
    assert evaluation.metrics["roc_auc"] == pytest.approx(13 / 16)  # AUC does not depend on it


def test_perfect_scores():
    labels = np.array([0, 0, 1, 1, 0, 1])
    evaluation = evaluate_scores(labels, labels.astype(float))
    assert evaluation.metrics["accuracy"] == 1.0
    assert evaluation.metrics["roc_auc"] == 1.0
    assert evaluation.metrics["f1"] == 1.0
    assert 0 < evaluation.metrics["log_loss"] < 1e-5  # clipped, so finite and positive


def test_inverted_scores_have_auc_zero_and_a_large_finite_log_loss():
    labels = np.array([0, 0, 1, 1])
    evaluation = evaluate_scores(labels, 1.0 - labels)
    assert evaluation.metrics["roc_auc"] == 0.0
    assert evaluation.metrics["accuracy"] == 0.0
    assert evaluation.metrics["precision"] == evaluation.metrics["recall"] == evaluation.metrics["f1"] == 0.0
    assert 10 < evaluation.metrics["log_loss"] < 20


def test_tied_scores_have_auc_one_half():
    labels = np.array([0, 1, 0, 1, 1])
    assert roc_auc(labels, np.full(5, 0.3)) == 0.5


def test_no_predicted_positives_give_zero_precision_not_an_error():
    evaluation = evaluate_scores(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3]))
    assert evaluation.metrics["precision"] == 0.0
    assert evaluation.metrics["f1"] == 0.0
    assert evaluation.metrics["roc_auc"] == 1.0


@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: many ties
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn(seed, decimals):
    labels, scores = random_labels_and_scores(seed, decimals=decimals)
    assert roc_auc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("decimals", [None, 1])
def test_roc_curve_matches_sklearn_and_its_area_is_the_auc(decimals):
    labels, scores = random_labels_and_scores(3, decimals=decimals)
    fpr, tpr = roc_curve(labels, scores)
    expected_fpr, expected_tpr, _ = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(labels, scores))


def test_roc_curve_runs_from_origin_to_one_one_without_going_back():
    fpr, tpr = roc_curve(LABELS, SCORES)
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1])
    np.testing.assert_allclose(tpr, [0, 0.25, 0.5, 0.5, 0.75, 0.75, 1, 1, 1])


def test_precision_recall_curve_by_hand():
    # Highest first: 0.9 (1), 0.8 (1), 0.7 (0), 0.6 (1), 0.5 (0), 0.4 (1), 0.2 (0), 0.1 (0).
    recall, precision = precision_recall_curve(LABELS, SCORES)
    np.testing.assert_allclose(recall, [0, 0.25, 0.5, 0.5, 0.75, 0.75, 1, 1, 1])
    np.testing.assert_allclose(precision, [1, 1, 1, 2 / 3, 3 / 4, 3 / 5, 4 / 6, 4 / 7, 4 / 8])


@pytest.mark.parametrize("decimals", [None, 1])
def test_precision_recall_curve_matches_sklearn_where_both_define_it(decimals):
    labels, scores = random_labels_and_scores(5, decimals=decimals)
    recall, precision = precision_recall_curve(labels, scores)
    expected_precision, expected_recall, _ = sklearn_metrics.precision_recall_curve(labels, scores)
    # scikit-learn lists thresholds lowest first and stops at the first one reaching full recall.
    shared = len(expected_recall)
    np.testing.assert_allclose(recall[:shared], expected_recall[::-1])
    np.testing.assert_allclose(precision[:shared], expected_precision[::-1])


def test_calibration_by_hand_max_f1_and_equal_error_rate():
    # At each distinct score s (similar when score >= s): F1 = 2TP / (TP + FP + 4).
    # s = 0.4 gives TP 4, FP 2: F1 8/10, the best; the threshold sits midway to the next score, 0.2.
    # s = 0.6 gives TP 3, FP 1: false-positive rate 1/4 = false-negative rate 1/4, the equal-error point.
    calibration = calibrate_threshold(LABELS, SCORES)
    assert calibration.threshold == pytest.approx(0.3)
    assert calibration.f1 == pytest.approx(0.8)
    assert calibration.f1 == pytest.approx(evaluate_scores(LABELS, SCORES, calibration.threshold).metrics["f1"])
    assert calibration.equal_error_threshold == pytest.approx(0.55)
    assert calibration.equal_error_rate == pytest.approx(0.25)
    assert equal_error_rate(LABELS, SCORES) == calibration.equal_error_rate


def test_separable_scores_get_a_threshold_between_the_classes():
    labels = np.array([0, 1, 0, 1, 0, 1])
    scores = np.array([0.05, 0.61, 0.2, 0.9, 0.31, 0.7])
    calibration = calibrate_threshold(labels, scores)
    assert calibration.threshold == pytest.approx((0.31 + 0.61) / 2)
    assert calibration.f1 == 1.0 and calibration.equal_error_rate == 0.0
    assert calibration.equal_error_threshold == calibration.threshold


def test_calibration_is_the_best_f1_of_any_threshold_and_does_not_depend_on_order():
    labels, scores = random_labels_and_scores(6, decimals=2)  # many ties
    calibration = calibrate_threshold(labels, scores)
    best = max(evaluate_scores(labels, scores, candidate).metrics["f1"] for candidate in np.unique(scores))
    assert calibration.f1 == pytest.approx(best)
    assert evaluate_scores(labels, scores, calibration.threshold).metrics["f1"] == pytest.approx(best)
    assert not np.any(scores == calibration.threshold), "between two scores, not on one"
    order = np.random.default_rng(0).permutation(len(labels))
    assert calibrate_threshold(labels[order], scores[order]) == calibration


def test_ties_go_to_the_higher_threshold_and_the_lowest_score_stands_alone():
    # Similar when >= 0.9: TP 1, FP 0, F1 2/3. When >= 0.3: TP 2, FP 2, F1 4/6, the same: the higher one wins.
    labels, scores = np.array([1, 0, 0, 1]), np.array([0.9, 0.7, 0.5, 0.3])
    calibration = calibrate_threshold(labels, scores)
    assert (calibration.threshold, calibration.f1) == (pytest.approx(0.8), pytest.approx(2 / 3))
    # All scores tied: the only candidate calls everything similar, at that score.
    tied = calibrate_threshold(np.array([0, 1, 0, 1]), np.full(4, 0.4))
    assert (tied.threshold, tied.f1, tied.equal_error_rate) == (0.4, pytest.approx(2 / 3), 0.5)


def test_calibration_refuses_scores_that_are_not_finite():
    with pytest.raises(ValueError, match="must be finite"):
        calibrate_threshold(np.array([0, 1]), np.array([0.2, np.nan]))


@pytest.mark.parametrize(
    "function",
    [evaluate_scores, roc_auc, roc_curve, precision_recall_curve, calibrate_threshold, plot_roc_curve, plot_score_histogram],
)
def test_one_class_labels_raise(function):
    with pytest.raises(ValueError, match="one class only"):
        function(np.ones(4), np.array([0.1, 0.5, 0.7, 0.9]))


def test_no_pairs_raise():
    with pytest.raises(ValueError, match="no pairs"):
        calibrate_threshold(np.array([]), np.array([]))


@pytest.mark.parametrize("function", [evaluate_scores, roc_auc, roc_curve])
def test_length_mismatch_raises(function):
    with pytest.raises(ValueError, match="differ in length: 4 vs 3"):
        function(np.array([0, 1, 0, 1]), np.array([0.1, 0.5, 0.7]))


def test_labels_other_than_zero_and_one_raise():
    with pytest.raises(ValueError, match="must be 0 or 1"):
        evaluate_scores(np.array([0, 1, 2]), np.array([0.1, 0.5, 0.7]))


def test_column_of_scores_is_accepted():
    """Keras' predict returns (n, 1): it must score the same as a flat array."""
    flat = evaluate_scores(LABELS, SCORES)
    column = evaluate_scores(LABELS, SCORES.reshape(-1, 1).astype(np.float32))
    assert column.metrics["roc_auc"] == flat.metrics["roc_auc"]
    np.testing.assert_array_equal(column.confusion_matrix, flat.confusion_matrix)


@pytest.mark.parametrize("threshold", [None, 0.4])
@pytest.mark.parametrize("plot", [plot_roc_curve, plot_precision_recall_curve, plot_score_histogram])
def test_plots_render_to_png(plot, threshold, tmp_path):
    labels, scores = random_labels_and_scores(4)
    figure = plot(labels, scores, threshold)
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert ("threshold 0.4" in legend) == (threshold is not None)
    assert isinstance(figure, Figure)
    assert figure.axes and figure.axes[0].get_title()
    path = tmp_path / f"{plot.__name__}.png"
    figure.savefig(path)
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert path.stat().st_size > 1000


def test_regression_metrics_against_hand_computed_values_and_the_baseline():
    targets = np.array([1.0, 2.0, 3.0, 4.0])
    predictions = np.array([1.5, 2.0, 2.0, 4.0])  # errors 0.5, 0, -1, 0
    metrics = evaluate_regression(targets, predictions, baseline=2.0)
    assert metrics["mae"] == pytest.approx(0.375)
    assert metrics["rmse"] == pytest.approx(math.sqrt(1.25 / 4))
    assert metrics["r2"] == pytest.approx(1 - (1.25 / 4) / 1.25)  # variance of the targets: 1.25
    assert metrics["baseline_mae"] == pytest.approx(1.0)  # |2-1|, 0, |2-3|, |2-4| -> 4 / 4
    assert metrics["baseline_rmse"] == pytest.approx(math.sqrt(6 / 4))
    assert metrics["mae"] == pytest.approx(sklearn_metrics.mean_absolute_error(targets, predictions))
    assert metrics["r2"] == pytest.approx(sklearn_metrics.r2_score(targets, predictions))


def test_regression_metrics_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="need as many predictions as targets"):
        evaluate_regression(np.ones(3), np.ones(2), baseline=1.0)


def test_prediction_and_example_pair_plots_render_to_png(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 5, 30)
    figures = {
        "predictions": plot_predictions(targets, targets + rng.normal(0, 0.3, 30)),
        "rgb_pairs": plot_example_pairs(
            rng.integers(0, 256, (3, 8, 8, 3)), rng.integers(0, 256, (3, 8, 8, 3)), np.array([1.0, 0, 1]), np.array([0.9, 0.2, 0.4])
        ),
        "gray_pairs": plot_example_pairs(
            rng.integers(0, 256, (2, 8, 8, 1)), rng.integers(0, 256, (2, 8, 8, 1)), np.array([2.5, 0.5]), np.array([[2.4], [0.9]])
        ),
    }
    for name, figure in figures.items():
        path = tmp_path / f"{name}.png"
        figure.savefig(path)
        assert path.read_bytes().startswith(PNG_MAGIC), name
    assert len(figures["rgb_pairs"].axes) == 6  # left and right for each of 3 pairs
    assert "label 1   prediction 0.9" in [text.get_text() for text in figures["rgb_pairs"].axes[0].texts]


def test_test_split_report_suits_the_task():
    similarity = report_test_split(Task.SIMILARITY, LABELS, SCORES, training_mean=None, examples=None, threshold=0.75)
    assert similarity.metrics == evaluate_scores(LABELS, SCORES, threshold=0.75).metrics | {"equal_error_rate": 0.25}
    np.testing.assert_array_equal(similarity.confusion_matrix, [[4, 0], [2, 2]])
    assert set(similarity.figures) == {"roc_curve", "precision_recall_curve", "score_histogram"}

    targets = np.array([1.0, 2.0, 3.0])
    regression = report_test_split(Task.REGRESSION, targets, targets + 0.5, training_mean=2.0, examples=None)
    assert regression.metrics["mae"] == pytest.approx(0.5) and regression.confusion_matrix is None
    assert set(regression.figures) == {"predictions"}
    with pytest.raises(ValueError, match="pass training_mean"):
        report_test_split(Task.REGRESSION, targets, targets, training_mean=None, examples=None)


def test_test_split_report_draws_example_pairs_when_given():
    images = np.zeros((2, 8, 8, 1), np.uint8)
    report = report_test_split(Task.SIMILARITY, LABELS, SCORES, None, PairSet(images, images, LABELS[:2].astype(float)))
    assert "example_pairs" in report.figures


# One-shot: 8 classes of 1 to 4 items; item i is of class CLASS_OF[i].
CLASS_SIZES = [1, 2, 3, 4, 2, 2, 3, 1]
CLASS_OF = np.repeat(np.arange(len(CLASS_SIZES)), CLASS_SIZES)
CLASSES = [np.flatnonzero(CLASS_OF == label) for label in range(len(CLASS_SIZES))]


@pytest.mark.parametrize("ways", [2, 5, 8])
def test_one_shot_trials_use_distinct_classes_and_never_pair_an_image_with_itself(ways):
    trials = one_shot_trials(CLASSES, ways, 500, np.random.default_rng(0))
    reference_classes = CLASS_OF[trials.references]
    assert trials.references.shape == (500, ways)
    assert all(len(set(row)) == ways for row in reference_classes), "one reference per class"
    correct = trials.references[np.arange(500), trials.answers]
    assert np.all(CLASS_OF[correct] == CLASS_OF[trials.queries]), "the answer column holds the query's class"
    assert np.all(trials.queries != correct) and not np.any(trials.references == trials.queries[:, None])
    assert set(CLASS_OF[trials.queries]) <= {1, 2, 3, 4, 5, 6}, "queries come from classes with a second image"
    assert set(trials.answers) == set(range(ways)), "the right reference may sit in any column"
    left, right = trials.pairs()
    np.testing.assert_array_equal(left, np.repeat(trials.queries, ways))
    np.testing.assert_array_equal(trials.labels(), CLASS_OF[right] == CLASS_OF[left])


def test_one_shot_trials_repeat_with_the_seed():
    first, second = (one_shot_trials(CLASSES, 5, 50, np.random.default_rng(7)) for _ in range(2))
    np.testing.assert_array_equal(first.references, second.references)
    np.testing.assert_array_equal(first.queries, second.queries)


def test_a_perfect_scorer_passes_every_trial_and_a_constant_one_is_at_chance():
    trials = one_shot_trials(CLASSES, 5, 4000, np.random.default_rng(1))
    perfect = (CLASS_OF[trials.references] == CLASS_OF[trials.queries][:, None]).astype(float)
    assert one_shot_accuracy(perfect, trials.answers, np.random.default_rng(0)) == 1.0
    constant = np.full(trials.references.shape, 0.5)
    assert one_shot_accuracy(constant, trials.answers, np.random.default_rng(0)) == pytest.approx(1 / 5, abs=0.03)
    assert one_shot_accuracy(1 - perfect, trials.answers, np.random.default_rng(0)) == 0.0


def test_one_shot_ties_are_broken_at_random_not_for_the_right_answer():
    scores = np.array([[0.9, 0.9, 0.1]] * 2000)  # the right reference (column 0) tied with a wrong one
    assert one_shot_accuracy(scores, np.zeros(2000, int), np.random.default_rng(0)) == pytest.approx(0.5, abs=0.05)
    repeat = [one_shot_accuracy(scores, np.zeros(2000, int), np.random.default_rng(3)) for _ in range(2)]
    assert repeat[0] == repeat[1], "seeded"


@pytest.mark.parametrize(
    ("classes", "ways", "message"),
    [
        (CLASSES, 9, "9-way trials need 9 classes, got 8"),
        ([[0], [1], [2]], 2, "no class has 2 items"),
        ([[0, 1], []], 2, "at least one item"),
        (CLASSES, 1, "ways must be an integer >= 2"),
    ],
)
def test_one_shot_trials_reject_what_cannot_make_a_trial(classes, ways, message):
    with pytest.raises(ValueError, match=message):
        one_shot_trials(classes, ways, 10, np.random.default_rng(0))


def test_one_shot_accuracy_rejects_mismatched_or_non_finite_scores():
    with pytest.raises(ValueError, match="one answer per trial"):
        one_shot_accuracy(np.zeros((3, 5)), np.zeros(2, int), np.random.default_rng(0))
    with pytest.raises(ValueError, match="finite"):
        one_shot_accuracy(np.array([[np.nan, 1.0]]), np.zeros(1, int), np.random.default_rng(0))
