"""Baselines: majority class, TF-IDF cosine, and that nothing is fitted or tuned on the test split."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from siamese.baselines import (
    accuracy_threshold,
    auc_and_accuracy,
    majority_class,
    mean_image,
    pixel_cosine_scores,
    siamese_linear_scores,
    text_baselines,
    tfidf_cosine_scores,
)
from siamese.evaluation import roc_auc

# Duplicates reword the same question; non-duplicates share no content word.
TRAIN_PAIRS = [
    ("how do i learn python", "how can i learn python", 1),
    ("what is the capital of france", "which city is the capital of france", 1),
    ("best pizza in town", "how to fix a bike", 0),
    ("why is the sky blue", "cheap flights to rome", 0),
]
TEST_PAIRS = [
    ("how can i learn python", "learn python", 1),
    ("what is the capital of france", "capital of france", 1),
    ("what is the best pizza", "what is the sky", 0),  # shares words, so it scores above 0
    ("cheap pizza", "fix a bike", 0),
]
LARGER_TRAIN = [
    ("how do i learn python quickly", "what is the fastest way to learn python", 1),
    ("how do i lose weight fast", "what is the best way to lose weight", 1),
    ("what is the capital of france", "which city is the capital of france", 1),
    ("how can i improve my english", "how to improve english speaking", 1),
    ("why is the sky blue", "what makes the sky blue", 1),
    ("best pizza in new york", "how to fix a flat bike tyre", 0),
    ("how do i learn python quickly", "which city is the capital of france", 0),
    ("how can i improve my english", "cheap flights to rome", 0),
    ("what is machine learning", "how do i lose weight fast", 0),
    ("why is the sky blue", "best laptop for students", 0),
]
LARGER_TEST = [
    ("how to learn python", "best way to learn python", 1),
    ("how to lose weight", "how can i lose weight", 1),
    ("capital city of france", "what is the capital of france", 1),
    ("improve my english speaking", "how can i improve english", 1),
    ("what makes the sky blue", "why is the sky blue in colour", 1),
    ("best pizza in town", "how to learn python", 0),
    ("cheap flights to rome", "how to lose weight", 0),
    ("what is machine learning", "capital of france", 0),
    ("best laptop for students", "why is the sky blue", 0),
    ("how to fix a bike", "improve my english", 0),
]


def columns(pairs):
    left, right, labels = zip(*pairs)
    return list(left), list(right), np.array(labels)


def best_accuracy_at_any_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Brute force: the accuracy of `scores >= t` at every distinct score and above them all."""
    thresholds = np.r_[np.unique(scores), np.inf]
    return max(float(np.mean((scores >= threshold) == labels)) for threshold in thresholds)


def test_majority_accuracy_is_the_majority_share_and_auc_is_one_half():
    labels = np.array([1, 0, 0, 0, 1, 0, 0, 0])
    assert majority_class(labels, labels) == {"majority_accuracy": 0.75, "majority_auc": 0.5}


def test_majority_class_comes_from_train_not_test():
    # Train says 1; on a test split that is mostly 0 the baseline is as wrong as that makes it.
    baseline = majority_class(np.array([1, 1, 1, 0]), np.array([0, 0, 0, 0, 1]))
    assert baseline["majority_accuracy"] == pytest.approx(1 / 5)


def test_majority_tie_predicts_zero():
    baseline = majority_class(np.array([0, 1, 1, 0]), np.array([0, 0, 1]))
    assert baseline["majority_accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("train, test", [([], [0, 1]), ([0, 2], [0, 1]), ([0, 1], [0.5])])
def test_majority_rejects_empty_or_non_binary_labels(train, test):
    with pytest.raises(ValueError, match="labels"):
        majority_class(np.array(train), np.array(test))


def test_cosine_identical_disjoint_and_unknown_texts():
    train_texts = ["red apple pie", "green apple tart", "blue sky today"]
    left = ["red apple pie", "red apple", "zebra quagga", "", "red apple pie"]
    right = ["red apple pie", "blue sky", "zebra quagga", "", "zebra"]
    scores = tfidf_cosine_scores(train_texts, left, right)
    assert scores.dtype == np.float64 and scores.shape == (5,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] == 0.0  # no shared word
    assert scores[2] == 0.0  # identical, but no word known from training
    assert scores[3] == 0.0  # empty texts
    assert scores[4] == 0.0  # one side has no known word


def test_cosine_rejects_unpaired_texts():
    with pytest.raises(ValueError, match="pair up"):
        tfidf_cosine_scores(["red apple"], ["red apple", "apple"], ["apple"])


def test_vocabulary_is_fitted_on_train_only():
    train_texts = ["red apple pie", "green apple tart", "blue sky today"]
    left, right = ["red apple zebra"], ["red apple"]
    # "zebra" never appears in training: it adds nothing, so the texts match exactly.
    assert tfidf_cosine_scores(train_texts, left, right)[0] == pytest.approx(1.0)
    # Had the vocabulary seen it, the left text would point elsewhere.
    assert tfidf_cosine_scores([*train_texts, "zebra"], left, right)[0] < 0.99


def test_cosine_matches_dense_computation():
    train_texts = [text for left, right, _ in LARGER_TRAIN for text in (left, right)]
    left, right, _ = columns(LARGER_TEST)
    vectorizer = TfidfVectorizer().fit(train_texts)
    left_rows, right_rows = vectorizer.transform(left).toarray(), vectorizer.transform(right).toarray()
    norms = np.linalg.norm(left_rows, axis=1) * np.linalg.norm(right_rows, axis=1)
    expected = np.divide(np.sum(left_rows * right_rows, axis=1), norms, out=np.zeros(len(left)), where=norms > 0)
    np.testing.assert_allclose(tfidf_cosine_scores(train_texts, left, right), expected, atol=1e-12)


def test_accuracy_threshold_separates_at_the_midpoint():
    assert accuracy_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.6, 0.7])) == pytest.approx(0.4)


def test_accuracy_threshold_predicts_one_class_when_that_is_best():
    assert accuracy_threshold(np.array([1, 1]), np.array([0.3, 0.8])) == -np.inf
    assert accuracy_threshold(np.array([0, 0]), np.array([0.3, 0.8])) == np.inf


def test_accuracy_threshold_reaches_the_best_accuracy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=300)
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1), 2)  # rounded: many ties
    threshold = accuracy_threshold(labels, scores)
    assert np.mean((scores >= threshold) == labels) == pytest.approx(best_accuracy_at_any_threshold(labels, scores))


def test_accuracy_threshold_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy_threshold(np.array([0, 1]), np.array([0.5]))


def test_text_baselines_keys_and_high_auc_when_duplicates_share_words():
    train_left, train_right, train_labels = columns(LARGER_TRAIN)
    test_left, test_right, test_labels = columns(LARGER_TEST)
    baselines = text_baselines(train_left, train_right, train_labels, test_left, test_right, test_labels)
    assert set(baselines) == {
        f"{name}_{metric}"
        for name in ("majority", "tfidf_cosine", "char_tfidf_cosine", "siamese_linear")
        for metric in ("auc", "accuracy")
    }
    assert all(isinstance(value, float) for value in baselines.values())
    assert baselines["majority_accuracy"] == 0.5 and baselines["majority_auc"] == 0.5
    assert baselines["tfidf_cosine_auc"] > 0.9
    test_scores = tfidf_cosine_scores([*train_left, *train_right], test_left, test_right)
    assert baselines["tfidf_cosine_auc"] == pytest.approx(roc_auc(test_labels, test_scores))


def test_accuracy_threshold_is_tuned_on_train_not_test():
    train_left, train_right, train_labels = columns(TRAIN_PAIRS)
    test_left, test_right, test_labels = columns(TEST_PAIRS)
    train_texts = [*train_left, *train_right]
    threshold = accuracy_threshold(train_labels, tfidf_cosine_scores(train_texts, train_left, train_right))
    test_scores = tfidf_cosine_scores(train_texts, test_left, test_right)
    # The construction: the word-sharing negative sits above the train threshold but below
    # every test positive, so a threshold tuned on test would classify all four correctly.
    assert threshold <= test_scores[2] < min(test_scores[:2])
    assert best_accuracy_at_any_threshold(test_labels, test_scores) == 1.0

    baselines = text_baselines(train_left, train_right, train_labels, test_left, test_right, test_labels)
    assert baselines["tfidf_cosine_accuracy"] == pytest.approx(3 / 4)
    assert baselines["tfidf_cosine_auc"] == 1.0


def test_text_baselines_rejects_a_ragged_train_split():
    train_left, train_right, train_labels = columns(TRAIN_PAIRS)
    test_left, test_right, test_labels = columns(TEST_PAIRS)
    with pytest.raises(ValueError, match="train split"):
        text_baselines(train_left, train_right, train_labels[:-1], test_left, test_right, test_labels)


def test_siamese_linear_learns_which_shared_words_matter_from_train_only():
    # Duplicates share the topic word; non-duplicates share only the filler "please": a cosine
    # counts both alike, the linear model learns from the training pairs which overlap matters.
    topics = ["chess", "piano", "python", "garden", "violin", "tennis", "coffee", "bread", "salsa", "kayak"]
    def pairs(words, offset):
        left, right, labels = [], [], []
        for index, word in enumerate(words):
            other = words[(index + offset) % len(words)]
            left += [f"how to learn {word} please", f"how to learn {word} please"]
            right += [f"best way to study {word}", f"please tell me about {other}"]
            labels += [1.0, 0.0]
        return left, right, np.array(labels)

    train_left, train_right, train_labels = pairs(topics[:6], 1)
    test_left, test_right, test_labels = pairs(topics[6:], 1)
    train_scores, test_scores = siamese_linear_scores(train_left, train_right, train_labels, test_left, test_right)
    assert roc_auc(train_labels, train_scores) == 1.0
    assert roc_auc(test_labels, test_scores) > 0.9
    symmetric = siamese_linear_scores(train_left, train_right, train_labels, test_right, test_left)[1]
    np.testing.assert_allclose(symmetric, test_scores)  # [|a-b|, a*b]: the order of the sides does not matter


# Pixels: images 4x4x1 around a grey training mean; a pair's images differ from it alike (same) or oppositely.
GREY = np.full((4, 4, 1), 100.0)


def batches(images: np.ndarray, size: int) -> list[np.ndarray]:
    return [images[start : start + size] for start in range(0, len(images), size)]


def test_mean_image_averages_every_batch_streamed():
    images = np.random.default_rng(0).uniform(0, 255, (10, 4, 4, 3)).astype(np.uint8)
    np.testing.assert_allclose(mean_image(batches(images, 3)), images.mean(axis=0))
    with pytest.raises(ValueError, match="no images"):
        mean_image([])
    with pytest.raises(ValueError, match="different shapes"):
        mean_image([images[:2], images[:2, :2]])


def test_pixel_cosine_of_identical_images_is_one_and_of_opposite_ones_minus_one():
    pattern = np.random.default_rng(1).normal(0, 20, (3, 4, 4, 1))
    left = GREY + pattern
    scores = pixel_cosine_scores([(left, left), (left, GREY + 2 * pattern), (left, GREY - pattern)], GREY)
    np.testing.assert_allclose(scores, [1, 1, 1, 1, 1, 1, -1, -1, -1], atol=1e-12)
    assert pixel_cosine_scores([(GREY[None], left[:1])], GREY)[0] == 0.0, "the mean image itself has no direction"
    with pytest.raises(ValueError, match="must both be"):
        pixel_cosine_scores([(left, left[:, :2])], GREY)


def test_pixel_cosine_is_centred_on_the_given_mean_not_on_the_images():
    """Raw pixels of any two bright images point the same way; only the training mean tells them apart."""
    rng = np.random.default_rng(2)
    pattern = rng.normal(0, 10, (1, 4, 4, 1))
    left, right = GREY + pattern, GREY - pattern
    assert pixel_cosine_scores([(left, right)], np.zeros((4, 4, 1)))[0] > 0.9
    assert pixel_cosine_scores([(left, right)], GREY)[0] == pytest.approx(-1.0)


def test_pixel_baseline_separates_an_easy_case_at_a_threshold_chosen_on_other_pairs():
    rng = np.random.default_rng(3)

    def pairs(count: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        patterns = rng.normal(0, 20, (count, 4, 4, 1))
        labels = np.arange(count) % 2
        right = GREY + np.where(labels[:, None, None, None] == 1, 1, -1) * patterns + rng.normal(0, 1, patterns.shape)
        return list(zip(batches(GREY + patterns, 4), batches(right, 4))), labels

    variations = rng.normal(0, 20, (6, 4, 4, 1))
    mean = mean_image(batches(GREY + np.concatenate([variations, -variations]), 5))
    np.testing.assert_allclose(mean, GREY)
    validation, validation_labels = pairs(10)
    test, test_labels = pairs(10)
    result = auc_and_accuracy(
        "pixel_cosine", validation_labels, pixel_cosine_scores(validation, mean), test_labels, pixel_cosine_scores(test, mean)
    )
    assert result == {"pixel_cosine_auc": 1.0, "pixel_cosine_accuracy": 1.0}
