"""Trivial baselines for duplicate-question pairs, scored on the same test split as the model.

A Siamese model's test AUC means little on its own: if always saying "not a duplicate" or
counting shared words scores as well, the model has learned nothing worth shipping. These
numbers sit beside the model's so a reviewer can tell. Everything that is tuned or fitted
(the majority class, the TF-IDF vocabulary and IDF weights, the decision threshold) comes from
the training split only, so the test split stays as unseen for the baselines as for the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from siamese.evaluation import evaluate_scores


def majority_class(train_labels: np.ndarray, test_labels: np.ndarray) -> dict[str, float]:
    """Accuracy on test of always predicting the training split's majority class (ties -> 0).

    The AUC is 0.5 by definition: a constant score ranks no positive above any negative, and
    ties count half. It is reported anyway so that every baseline has both numbers.

    Raises:
        ValueError: either split is empty or holds labels other than 0 and 1.
    """
    train_labels = _binary_labels(train_labels, "train_labels")
    test_labels = _binary_labels(test_labels, "test_labels")
    majority = 1.0 if np.sum(train_labels == 1) > np.sum(train_labels == 0) else 0.0
    return {"majority_accuracy": float(np.mean(test_labels == majority)), "majority_auc": 0.5}


def tfidf_cosine_scores(train_texts: Sequence[str], left: Sequence[str], right: Sequence[str]) -> np.ndarray:
    """Cosine similarity of each left text to its right text, in TF-IDF space fitted on `train_texts`.

    The vectorizer sees only the training texts (both sides of the training pairs), so words
    that appear only at test time carry no weight and the test split leaks nothing into the
    baseline. Rows are L2-normalised, so the cosine is a row-wise dot product of two sparse
    matrices: memory grows with the number of pairs, not with its square. A text with no
    known token is a zero row and gets similarity 0.

    Returns:
        float64 array of shape (n,), values in 0..1.

    Raises:
        ValueError: `left` and `right` differ in length, or the training texts hold no token.
    """
    return _cosine_scores(_fitted_vectorizer(train_texts), left, right)


def accuracy_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold `t` for which predicting `scores >= t` as 1 is most accurate on these pairs.

    Candidates are midpoints between consecutive distinct scores, so a new score close to one
    seen here falls on the same side, plus -inf (all 1) and +inf (all 0). Ties go to the
    lowest threshold.

    Raises:
        ValueError: lengths differ, there are no labels, or labels are not 0 and 1.
    """
    labels = _binary_labels(labels, "labels")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length: {len(labels)} vs {len(scores)}")
    distinct, inverse = np.unique(scores, return_inverse=True)
    positives = np.bincount(inverse, weights=labels, minlength=len(distinct))
    negatives = np.bincount(inverse, minlength=len(distinct)) - positives
    # Candidate j predicts 1 for the distinct scores j, j+1, ...: true positives are the
    # positives from j upwards, true negatives the negatives below j.
    positives_below = np.r_[0.0, np.cumsum(positives)]
    negatives_below = np.r_[0.0, np.cumsum(negatives)]
    correct = (positives_below[-1] - positives_below) + negatives_below
    candidates = np.r_[-np.inf, (distinct[:-1] + distinct[1:]) / 2, np.inf]
    return float(candidates[int(np.argmax(correct))])


def text_baselines(
    train_left: Sequence[str],
    train_right: Sequence[str],
    train_labels: np.ndarray,
    test_left: Sequence[str],
    test_right: Sequence[str],
    test_labels: np.ndarray,
) -> dict[str, float]:
    """Majority-class and TF-IDF cosine baselines on the test split, fitted and tuned on train.

    `tfidf_cosine_accuracy` is measured at the threshold that is most accurate on the training
    pairs (`accuracy_threshold`), so the test labels choose nothing. Accuracy and AUC come
    from `evaluate_scores`, the same definitions as the model's test metrics. Keys are bare
    metric names; the caller adds its namespace.

    Raises:
        ValueError: a split's texts and labels differ in length, labels are not 0 and 1, or
            the test labels hold one class only (AUC undefined).
    """
    if not len(train_left) == len(train_right) == len(train_labels):
        raise ValueError(
            f"train split: {len(train_left)} left, {len(train_right)} right texts and {len(train_labels)} labels"
        )
    vectorizer = _fitted_vectorizer([*train_left, *train_right])  # fitted once, used for both splits
    train_scores = _cosine_scores(vectorizer, train_left, train_right)
    test_scores = _cosine_scores(vectorizer, test_left, test_right)
    threshold = accuracy_threshold(train_labels, train_scores)
    tfidf = evaluate_scores(test_labels, test_scores, threshold=threshold).metrics
    return {
        **majority_class(train_labels, test_labels),
        "tfidf_cosine_auc": tfidf["roc_auc"],
        "tfidf_cosine_accuracy": tfidf["accuracy"],
    }


def _fitted_vectorizer(train_texts: Sequence[str]) -> TfidfVectorizer:
    return TfidfVectorizer(norm="l2", dtype=np.float64).fit(train_texts)


def _cosine_scores(vectorizer: TfidfVectorizer, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
    if len(left) != len(right):
        raise ValueError(f"left and right must pair up, got {len(left)} and {len(right)} texts")
    left_rows, right_rows = vectorizer.transform(left), vectorizer.transform(right)
    similarity = np.asarray(left_rows.multiply(right_rows).sum(axis=1), dtype=np.float64).reshape(-1)
    return np.clip(similarity, 0.0, 1.0)  # a text against itself can sum to 1 plus a rounding error


def _binary_labels(labels: np.ndarray, name: str) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if not len(labels):
        raise ValueError(f"{name} is empty")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError(f"{name} must be 0 or 1, got {np.unique(labels).tolist()}")
    return labels
