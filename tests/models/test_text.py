"""The text model builders: parameter counts, shapes, symmetry, masking, names, save and reload; tokenised text pairs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from model_helpers import all_layers, custom_layers, score

from siamese.config import SequenceDataConfig
from siamese.data.sample_questions import sample_question_pairs
from siamese.data.sequences import generate_sequence_pairs
from siamese.models.text import (
    build_sequence_encoder,
    build_text_model,
    build_text_pair_model,
    build_tokenizer,
    build_unshared_text_model,
)
from siamese.sharing import verify_weight_sharing

HEADS = ["concat", "symmetric"]
HEAD_LAYER_NAMES = {
    "concat": {"concat"},
    "symmetric": {"symmetric_difference", "symmetric_difference_forward", "symmetric_difference_backward",
                  "symmetric_product", "symmetric_features"},
}  # fmt: skip


@pytest.fixture(scope="module")
def pairs():
    """Variable-length, zero-padded probe pairs in the reference shape (features 128)."""
    return generate_sequence_pairs(SequenceDataConfig(num_pairs=16, timesteps=6), np.random.default_rng(0))


@pytest.mark.parametrize("head", HEADS)
def test_shared_model_counts_the_encoder_once(head):
    model = build_text_model(head=head)
    assert model.count_params() == 20_673
    assert model.get_layer("encoder").count_params() == 20_608
    assert model.get_layer("similarity").count_params() == 65  # 2 * 32 inputs + bias


@pytest.mark.parametrize("head", HEADS)
def test_unshared_twin_has_two_encoders(head):
    model = build_unshared_text_model(head=head)
    assert model.count_params() == 41_281
    left_encoder, right_encoder = model.get_layer("left_encoder"), model.get_layer("right_encoder")
    assert left_encoder is not right_encoder
    assert left_encoder.count_params() == right_encoder.count_params() == 20_608


@pytest.mark.parametrize("head", HEADS)
def test_output_is_one_score_in_0_to_1_per_pair(head, pairs):
    model = build_text_model(head=head)
    scores = score(model, pairs.left, pairs.right)
    assert scores.shape == (16, 1)
    assert scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    assert [tensor.name for tensor in model.inputs] == ["left", "right"]
    assert tuple(model.inputs[0].shape) == (None, None, 128)


def test_encoder_maps_a_sequence_to_one_vector_of_units():
    encoder = build_sequence_encoder(features=7, units=5)
    encoding = keras.ops.convert_to_numpy(encoder(np.ones((3, 4, 7), np.float32)))
    assert encoding.shape == (3, 5)


@pytest.mark.parametrize(("features", "units"), [(0, 32), (128, 0)])
def test_invalid_sizes_raise_value_error(features, units):
    with pytest.raises(ValueError, match=f"features={features} and units={units}"):
        build_sequence_encoder(features=features, units=units)


def test_unknown_head_raises_value_error():
    with pytest.raises(ValueError, match="dot"):
        build_text_model(head="dot")


def test_symmetric_head_scores_both_orders_the_same(pairs):
    model = build_text_model(head="symmetric")
    np.testing.assert_allclose(score(model, pairs.left, pairs.right), score(model, pairs.right, pairs.left), atol=1e-6)


def test_concat_head_is_not_symmetric(pairs):
    keras.utils.set_random_seed(0)
    model = build_text_model(head="concat")
    difference = np.abs(score(model, pairs.left, pairs.right) - score(model, pairs.right, pairs.left))
    assert difference.max() > 1e-4


@pytest.mark.parametrize("head", HEADS)
def test_trailing_padding_does_not_change_the_score(head, pairs):
    """The encoder masks zero timesteps, so extra padding at the end is invisible."""
    model = build_text_model(head=head)
    padding = np.zeros((len(pairs), 4, 128), np.float32)
    padded_left = np.concatenate([pairs.left, padding], axis=1)
    padded_right = np.concatenate([pairs.right, padding], axis=1)
    np.testing.assert_allclose(
        score(model, pairs.left, pairs.right), score(model, padded_left, padded_right), atol=1e-6
    )


@pytest.mark.parametrize("head", HEADS)
def test_keras_save_and_reload_keeps_predictions_with_keras_layers_only(head, pairs, tmp_path):
    model = build_text_model(head=head)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # default safe_mode: fails on Lambda layers
    np.testing.assert_array_equal(score(model, pairs.left, pairs.right), score(reloaded, pairs.left, pairs.right))
    assert reloaded.count_params() == 20_673
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in all_layers(reloaded))
    assert custom_layers(model) == [], "the saved model must load where nothing of this project is imported"
    assert sorted(layer.name for layer in all_layers(reloaded)) == sorted(layer.name for layer in all_layers(model))


@pytest.mark.parametrize("head", HEADS)
def test_every_layer_has_a_deterministic_name(head):
    """Names are given, not generated: building twice in one process gives the same names."""
    first, second = build_text_model(head=head), build_text_model(head=head)
    names = [layer.name for layer in all_layers(first)]
    assert names == [layer.name for layer in all_layers(second)]
    assert len(names) == len(set(names))
    assert set(names) == {"left", "right", "encoder", "encoder_sequence", "padding_mask", "lstm", "similarity"} | (
        HEAD_LAYER_NAMES[head]
    )
    assert first.name == "siamese_text"
    assert build_unshared_text_model(head=head).name == "unshared_text"


def test_mixed_precision_keeps_a_float32_score(pairs):
    model = build_text_model(head="symmetric", dtype_policy="mixed_float16")
    assert model.get_layer("encoder").get_layer("lstm").dtype_policy.name == "mixed_float16"
    scores = score(model, pairs.left[:4], pairs.right[:4])
    assert scores.dtype == np.float32
    assert np.all(np.isfinite(scores))


# Text pairs: raw strings in, tokenised inside the model


@pytest.fixture(scope="module")
def questions():
    """A handful of question pairs as the object arrays of `str` that text pair models take."""
    frame = sample_question_pairs(8, seed=0)
    return (
        frame["question1"].to_numpy(dtype=object),
        frame["question2"].to_numpy(dtype=object),
        frame["is_duplicate"].to_numpy(dtype=np.float32),
    )


def token_ids(tokenizer, texts: list[str]) -> np.ndarray:
    return keras.ops.convert_to_numpy(tokenizer(np.asarray(texts, dtype=object)))


def test_tokenizer_vocabulary_comes_only_from_the_texts_it_is_given():
    tokenizer = build_tokenizer(["the cat sat", "the dog ran"], vocabulary_size=100, sequence_length=4)
    vocabulary = tokenizer.get_vocabulary()
    assert vocabulary[:2] == ["", "[UNK]"]  # 0 pads, 1 is the unknown word
    assert {str(word) for word in vocabulary[2:]} == {"the", "cat", "sat", "dog", "ran"}
    ids = token_ids(tokenizer, ["The CAT, sat!", "zebra cat"])  # lower-cased, punctuation stripped
    cat = vocabulary.index("cat")
    np.testing.assert_array_equal(ids[0], [vocabulary.index("the"), cat, vocabulary.index("sat"), 0])
    np.testing.assert_array_equal(ids[1], [1, cat, 0, 0])  # "zebra" was never seen: unknown


def test_tokenizer_pads_at_the_end_and_cuts_long_texts_to_sequence_length():
    tokenizer = build_tokenizer(["a b c d e f"], vocabulary_size=100, sequence_length=3)
    ids = token_ids(tokenizer, ["a", "a b c d e f"])
    assert ids.shape == (2, 3)
    assert ids[0, 0] > 1 and list(ids[0, 1:]) == [0, 0]
    np.testing.assert_array_equal(ids[1], token_ids(tokenizer, ["a b c"])[0])


def test_tokenizer_vocabulary_is_capped_keeping_the_most_frequent_words():
    tokenizer = build_tokenizer(["common common common rare", "common other"], vocabulary_size=3, sequence_length=4)
    assert tokenizer.vocabulary_size() == 3
    assert [str(word) for word in tokenizer.get_vocabulary()] == ["", "[UNK]", "common"]
    np.testing.assert_array_equal(token_ids(tokenizer, ["common rare other"])[0], [2, 1, 1, 0])


@pytest.mark.parametrize("head", HEADS)
def test_text_pair_model_has_the_reference_lstm_and_counts_the_encoder_once(head, questions):
    left, right, _ = questions
    tokenizer = build_tokenizer([*left, *right], vocabulary_size=30, sequence_length=8)
    vocabulary = tokenizer.vocabulary_size()
    assert 3 < vocabulary <= 30
    model = build_text_pair_model(tokenizer, embedding_dim=128, units=32, head=head)
    encoder = model.get_layer("encoder")
    assert encoder.get_layer("lstm").count_params() == 20_608
    assert encoder.get_layer("embedding").count_params() == vocabulary * 128
    assert model.count_params() == vocabulary * 128 + 20_608 + 65
    assert model.name == "siamese_text_pairs"


def test_text_pair_model_scores_raw_strings(questions):
    left, right, _ = questions
    model = build_text_pair_model(build_tokenizer(left, vocabulary_size=20, sequence_length=6), embedding_dim=4, units=3)
    assert [tensor.name for tensor in model.inputs] == ["left", "right"]
    assert all(tuple(tensor.shape) == (None,) and tensor.dtype == "string" for tensor in model.inputs)
    scores = score(model, left, right)  # right holds words the tokenizer never saw
    assert scores.shape == (len(left), 1) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))


def test_text_pair_model_ignores_words_past_the_sequence_length(questions):
    left, right, _ = questions
    model = build_text_pair_model(build_tokenizer([*left, *right], sequence_length=4), embedding_dim=4, units=3)
    longer = np.asarray([f"{text} cooking guitar chess" for text in right], dtype=object)
    cut = np.asarray([" ".join(text.split()[:4]) for text in right], dtype=object)
    np.testing.assert_allclose(score(model, left, longer), score(model, left, cut), atol=1e-6)


def test_symmetric_text_pair_model_scores_both_orders_the_same(questions):
    left, right, _ = questions
    model = build_text_pair_model(build_tokenizer([*left, *right], sequence_length=8), embedding_dim=4, units=3, head="symmetric")
    forward, backward = score(model, left, right), score(model, right, left)
    np.testing.assert_allclose(forward, backward, atol=1e-6)
    assert np.ptp(forward) > 0, "different pairs should not all get one score"


def test_text_pair_model_save_and_reload_keeps_predictions_on_raw_strings(questions, tmp_path):
    left, right, _ = questions
    model = build_text_pair_model(build_tokenizer(left, vocabulary_size=20, sequence_length=6), embedding_dim=4, units=3)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # the tokenizer and its vocabulary travel inside the file
    np.testing.assert_array_equal(score(model, left, right), score(reloaded, left, right))
    assert reloaded.get_layer("encoder").get_layer("tokenizer").get_vocabulary() == model.get_layer(
        "encoder"
    ).get_layer("tokenizer").get_vocabulary()
    assert custom_layers(model) == []


def test_text_pair_model_passes_weight_sharing_verification(questions):
    left, right, labels = questions
    model = build_text_pair_model(build_tokenizer([*left, *right], sequence_length=6), embedding_dim=4, units=3)
    report = verify_weight_sharing(model, left, right, labels)
    assert report.passed, report.failures()
    assert report.total_params == report.encoder_params + report.head_params
    assert report.head_params == 2 * 3 + 1


@pytest.mark.parametrize(("vocabulary_size", "sequence_length"), [(2, 8), (10, 0)])
def test_tokenizer_refuses_sizes_it_cannot_build(vocabulary_size, sequence_length):
    with pytest.raises(ValueError, match=f"got vocabulary_size={vocabulary_size} and sequence_length={sequence_length}"):
        build_tokenizer(["a b c"], vocabulary_size=vocabulary_size, sequence_length=sequence_length)
