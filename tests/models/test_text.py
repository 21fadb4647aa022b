"""The text model builders: parameter counts, shapes, symmetry, masking, names, save and reload."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from model_helpers import all_layers, score

from siamese.config import SequenceDataConfig
from siamese.data.sequences import generate_sequence_pairs
from siamese.models.text import build_sequence_encoder, build_text_model, build_unshared_text_model

HEADS = ["concat", "symmetric"]
HEAD_LAYER_NAMES = {"concat": {"concat"}, "symmetric": {"abs_difference", "product", "symmetric_features"}}


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
    with pytest.raises(ValueError, match="cosine"):
        build_text_model(head="cosine")


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
def test_keras_save_and_reload_keeps_predictions_without_lambda_layers(head, pairs, tmp_path):
    model = build_text_model(head=head)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # default safe_mode: fails on Lambda layers
    np.testing.assert_array_equal(score(model, pairs.left, pairs.right), score(reloaded, pairs.left, pairs.right))
    assert reloaded.count_params() == 20_673
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in all_layers(reloaded))
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
