"""Baselines scored on the same test split as the model: lexical ones for text pairs, raw pixels for images.

A Siamese model's test AUC means little on its own: if always saying "not a duplicate" or
counting shared words scores as well, the model has learned nothing worth shipping. These
numbers sit beside the model's so a reviewer can tell. Everything that is tuned or fitted
(the majority class, the TF-IDF vocabulary and IDF weights, the decision threshold) comes from
the training split only, so the test split stays as unseen for the baselines as for the model.
Graded scores (0-5, 1-5, ...) get the same lexical methods judged by correlation
(`graded_text_baselines`), the Siamese-linear one as a Ridge regression on the file's scale.
Image pairs get the cosine of their mean-centred pixels (`mean_image`, `pixel_cosine_scores`):
what a CNN must beat to have learned more than "these pictures look alike"; images stream in
batches, so a folder larger than memory is scored like a small one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge

from siamese.evaluation import evaluate_regression, evaluate_scores, pearson, spearman


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
    """Majority class, word and character n-gram TF-IDF cosine, and a lexical Siamese-linear model.

    The Siamese-linear model is what a learned shared encoder has to beat: one character n-gram
    TF-IDF "encoder" applied to both sides, `[|a-b|, a*b]` of the two vectors into a logistic
    regression fitted on the training pairs. Everything is fitted on the training split only;
    each accuracy is measured at the threshold that is most accurate on the training pairs
    (`accuracy_threshold`), so the test labels choose nothing. Accuracy and AUC come
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
    train_texts = [*train_left, *train_right]
    baselines = majority_class(train_labels, test_labels)
    for name, vectorizer in (("tfidf_cosine", _fitted_vectorizer(train_texts)), ("char_tfidf_cosine", _char_vectorizer(train_texts))):
        train_scores = _cosine_scores(vectorizer, train_left, train_right)
        test_scores = _cosine_scores(vectorizer, test_left, test_right)
        baselines |= auc_and_accuracy(name, train_labels, train_scores, test_labels, test_scores)
    train_scores, test_scores = siamese_linear_scores(train_left, train_right, train_labels, test_left, test_right)
    return baselines | auc_and_accuracy("siamese_linear", train_labels, train_scores, test_labels, test_scores)


def siamese_linear_scores(
    train_left: Sequence[str], train_right: Sequence[str], train_labels: np.ndarray, left: Sequence[str], right: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """A lexical Siamese model: a shared character n-gram TF-IDF encoder, `[|a-b|, a*b]`, logistic regression.

    Fitted on the training pairs only. Returns its scores (probability of a duplicate) on the
    training pairs and on (`left`, `right`).
    """
    vectorizer = _char_vectorizer([*train_left, *train_right])
    classifier = LogisticRegression(max_iter=1000)
    classifier.fit(_pair_features(vectorizer, train_left, train_right), _binary_labels(train_labels, "train_labels"))
    return (
        classifier.predict_proba(_pair_features(vectorizer, train_left, train_right))[:, 1],
        classifier.predict_proba(_pair_features(vectorizer, left, right))[:, 1],
    )


def graded_text_baselines(
    train_left: Sequence[str],
    train_right: Sequence[str],
    train_scores: np.ndarray,
    test_left: Sequence[str],
    test_right: Sequence[str],
    test_scores: np.ndarray,
) -> dict[str, float]:
    """Word and character TF-IDF cosine and a lexical Siamese-linear Ridge regression, for graded scores.

    Each baseline's Pearson and Spearman correlation with the test scores (`*_pearson`,
    `*_spearman`), the same definitions as the model's test metrics. Correlation ignores the
    scale, so the cosines (0..1) are compared as they are; the Ridge regression predicts on the
    file's scale, so its MAE and RMSE (`siamese_linear_mae`, `siamese_linear_rmse`) sit beside
    the model's too. Fitted on the training split only; bare metric names.

    Raises:
        ValueError: a split's texts and scores differ in length, or the scores are empty or not finite.
    """
    train_scores = _graded_scores(train_scores, "train_scores", len(train_left), len(train_right))
    test_scores = _graded_scores(test_scores, "test_scores", len(test_left), len(test_right))
    train_texts = [*train_left, *train_right]
    baselines: dict[str, float] = {}
    for name, vectorizer in (("tfidf_cosine", _fitted_vectorizer(train_texts)), ("char_tfidf_cosine", _char_vectorizer(train_texts))):
        baselines |= _correlations(name, test_scores, _cosine_scores(vectorizer, test_left, test_right))
    predictions = siamese_linear_regression(train_left, train_right, train_scores, test_left, test_right)
    errors = evaluate_regression(test_scores, predictions, baseline=float(train_scores.mean()))
    return baselines | _correlations("siamese_linear", test_scores, predictions) | {
        "siamese_linear_mae": errors["mae"],
        "siamese_linear_rmse": errors["rmse"],
    }


def siamese_linear_regression(
    train_left: Sequence[str], train_right: Sequence[str], train_scores: np.ndarray, left: Sequence[str], right: Sequence[str]
) -> np.ndarray:
    """The lexical Siamese model for graded scores: `[|a-b|, a*b]` of a shared character TF-IDF encoder into Ridge.

    Fitted on the training pairs' scores only; returns its predictions for (`left`, `right`) on their scale.
    """
    vectorizer = _char_vectorizer([*train_left, *train_right])
    regression = Ridge(alpha=1.0).fit(_pair_features(vectorizer, train_left, train_right), train_scores)
    return regression.predict(_pair_features(vectorizer, left, right))


def auc_and_accuracy(
    name: str, calibration_labels: np.ndarray, calibration_scores: np.ndarray, test_labels: np.ndarray, test_scores: np.ndarray
) -> dict[str, float]:
    """A similarity score's test AUC and its test accuracy at the threshold most accurate on other pairs.

    `calibration_*` are pairs the test labels never touch (the training pairs for text, the
    validation pairs for images, as the model's own threshold is chosen). Keys `<name>_auc` and
    `<name>_accuracy`, the suffixes the registry gate compares a first model on.

    Raises:
        ValueError: lengths differ, labels are not 0 and 1, or the test labels hold one class only.
    """
    threshold = accuracy_threshold(calibration_labels, calibration_scores)
    metrics = evaluate_scores(test_labels, test_scores, threshold=threshold).metrics
    return {f"{name}_auc": metrics["roc_auc"], f"{name}_accuracy": metrics["accuracy"]}


def mean_image(batches: Iterable[np.ndarray]) -> np.ndarray:
    """The mean of all images in `batches`, each `(n, height, width, channels)`, summed in float64.

    One batch is held at a time, so the training split's mean costs one pass over its files.

    Returns:
        float64 `(height, width, channels)`.

    Raises:
        ValueError: there are no images, or batches differ in image shape.
    """
    total: np.ndarray | None = None
    count = 0
    for batch in batches:
        batch = np.asarray(batch, dtype=np.float64)
        if total is None:
            total = np.zeros(batch.shape[1:])
        elif batch.shape[1:] != total.shape:
            raise ValueError(f"images of different shapes: {batch.shape[1:]} after {total.shape}")
        total += batch.sum(axis=0)
        count += len(batch)
    if total is None or not count:
        raise ValueError("no images to average: the training split is empty")
    return total / count


def pixel_cosine_scores(pairs: Iterable[tuple[np.ndarray, np.ndarray]], mean: np.ndarray) -> np.ndarray:
    """The cosine similarity of each left image to its right image, both minus `mean`, batch by batch.

    Raw pixels are all positive, so any two images have a high cosine; minus the training
    split's mean image (`mean_image`), the cosine asks whether two images differ from the
    average one in the same way. An image equal to the mean has no direction and scores 0.

    Args:
        pairs: `(left, right)` batches of images, each `(n, height, width, channels)`.
        mean: the mean image, `(height, width, channels)`.

    Returns:
        float64 array `(pairs,)`, values in -1..1.

    Raises:
        ValueError: a batch's sides differ in shape, or its images are not `mean`'s shape.
    """
    mean = np.asarray(mean, dtype=np.float64)
    scores = [np.empty(0)]
    for left, right in pairs:
        left, right = np.asarray(left), np.asarray(right)
        if left.shape != right.shape or left.shape[1:] != mean.shape:
            raise ValueError(f"left {left.shape} and right {right.shape} must both be (n, *{mean.shape}) images")
        centred = [(side.astype(np.float64) - mean).reshape(len(side), -1) for side in (left, right)]
        dots = np.einsum("ij,ij->i", *centred)
        norms = np.linalg.norm(centred[0], axis=1) * np.linalg.norm(centred[1], axis=1)
        scores.append(np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0))
    return np.clip(np.concatenate(scores), -1.0, 1.0)  # an image against itself can exceed 1 by a rounding error


def _correlations(name: str, scores: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    return {f"{name}_pearson": pearson(scores, predictions), f"{name}_spearman": spearman(scores, predictions)}


def _graded_scores(scores: np.ndarray, name: str, num_left: int, num_right: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not num_left == num_right == len(scores) or not len(scores):
        raise ValueError(f"{name}: {num_left} left, {num_right} right texts and {len(scores)} scores (need as many, > 0)")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} must be finite numbers")
    return scores


def _pair_features(vectorizer: TfidfVectorizer, left: Sequence[str], right: Sequence[str]) -> scipy.sparse.csr_matrix:
    """`[|a-b|, a*b]` of the two sides' vectors: symmetric in the sides, sparse."""
    left_rows, right_rows = vectorizer.transform(left), vectorizer.transform(right)
    return scipy.sparse.hstack([abs(left_rows - right_rows), left_rows.multiply(right_rows)]).tocsr()


def _char_vectorizer(train_texts: Sequence[str]) -> TfidfVectorizer:
    """Character 2- to 4-grams within word boundaries: spelling variants and word forms still overlap."""
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, norm="l2", dtype=np.float64).fit(train_texts)


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
