"""The comparison pieces of the heads: `|a-b|` and `a*b` from Keras' own layers, exact and symmetric."""

from __future__ import annotations

import keras
import numpy as np

from siamese.models.layers import absolute_difference, comparison_features


def comparison_model(width: int) -> keras.Model:
    left, right = keras.Input(shape=(width,), name="left"), keras.Input(shape=(width,), name="right")
    difference, product = comparison_features(left, right, name="probe")
    return keras.Model([left, right], [difference, product])


def test_absolute_difference_is_exactly_abs_of_the_difference():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=(5, 7)).astype(np.float32)
    left, right = keras.Input(shape=(7,)), keras.Input(shape=(7,))
    model = keras.Model([left, right], absolute_difference(left, right, name="gap"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model([a, b])), np.abs(a - b))
    assert [layer.name for layer in model.layers[2:]] == ["gap_forward", "gap_backward", "gap"]


def test_comparison_features_are_symmetric_and_named_after_their_prefix():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    model = comparison_model(3)
    (difference, product), (swapped_difference, swapped_product) = model([a, b]), model([b, a])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(difference), keras.ops.convert_to_numpy(swapped_difference))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(product), a * b, rtol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(product), keras.ops.convert_to_numpy(swapped_product))
    assert {"probe_difference", "probe_product"} <= {layer.name for layer in model.layers}
    assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)
