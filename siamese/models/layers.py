"""Custom layers shared by the model builders.

Registered as serializable and written with `keras.ops` only, so saved `.keras` models reload
under safe mode (no `Lambda`) and the models run on any Keras backend.
"""

from __future__ import annotations

import keras

from siamese.config import Head


@keras.saving.register_keras_serializable(package="siamese")
class AbsoluteDifference(keras.layers.Layer):
    """`|a - b|` of two equally shaped tensors: symmetric in its inputs, no weights."""

    def call(self, inputs):
        left, right = inputs
        return keras.ops.abs(left - right)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def similarity_head(left_encoding, right_encoding, head: Head | str):
    """Score two encodings in 0..1 with one sigmoid unit.

    `concat` is the reference head. It is additive in the two encodings (w.a + v.b), so it can
    only score each side on its own and cannot tell whether the two sides match. `symmetric`
    feeds `[|a-b|, a*b]`, which compares them, has the same parameter count, and gives
    score(a, b) == score(b, a).
    """
    head = Head(head)
    if head is Head.CONCAT:
        features = keras.layers.Concatenate(name="concat")([left_encoding, right_encoding])
    else:
        difference = AbsoluteDifference(name="abs_difference")([left_encoding, right_encoding])
        product = keras.layers.Multiply(name="product")([left_encoding, right_encoding])
        features = keras.layers.Concatenate(name="symmetric_features")([difference, product])
    # float32 output even under mixed precision: a float16 sigmoid saturates and breaks the loss.
    return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="similarity")(features)
