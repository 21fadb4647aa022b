"""Pieces of the heads that compare two encodings, shared by the model builders.

Built from Keras' own layers only: a saved `.keras` model then loads anywhere Keras is
installed, in safe mode, with nothing of this project imported (`mlflow.keras.load_model` and
`mlflow.pyfunc.load_model` of a registered version in a fresh process). A custom layer would be
found at load time only if its module had been imported first.
"""

from __future__ import annotations

import keras

from siamese.config import Head


def absolute_difference(left, right, *, name: str, dtype_policy: str | None = None):
    """`|a - b|` of two equally shaped tensors, as `max(a - b, b - a)`: symmetric, no weights.

    Exactly `keras.ops.abs(a - b)` in value, spelled with built-in layers so that the saved model
    needs no custom class.
    """
    forward = keras.layers.Subtract(dtype=dtype_policy, name=f"{name}_forward")([left, right])
    backward = keras.layers.Subtract(dtype=dtype_policy, name=f"{name}_backward")([right, left])
    return keras.layers.Maximum(dtype=dtype_policy, name=name)([forward, backward])


def comparison_features(left, right, *, name: str, dtype_policy: str | None = None):
    """`[|a-b|, a*b]`: what matches and what differs, the same for (a, b) and (b, a)."""
    difference = absolute_difference(left, right, name=f"{name}_difference", dtype_policy=dtype_policy)
    product = keras.layers.Multiply(dtype=dtype_policy, name=f"{name}_product")([left, right])
    return difference, product


def similarity_head(left_encoding, right_encoding, head: Head | str, *, l2: float = 0.0):
    """Score two encodings in 0..1; every head gives score(a, b) == score(b, a) except `concat`.

    - `concat` is the reference head. It is additive in the two encodings (w.a + v.b), so it can
      only score each side on its own and cannot tell whether the two sides match.
    - `symmetric` feeds `[|a-b|, a*b]` into one sigmoid unit: per feature, what the two sides
      share and where they differ (the same parameter count as `concat`).
    - `manhattan` is MaLSTM's `exp(-||a-b||_1)` (Mueller & Thyagarajan, 2016): no weights, so the
      encoder alone must place similar texts close.
    - `cosine`: the cosine of the two encodings, mapped to 0..1 by a learned scale and offset.
    - `monotone`: `symmetric` with its weights held >= 0 on `[-|a-b|, a*b]`: a feature the two
      sides share can only raise the score, one where they differ only lower it. `symmetric`
      may learn that a feature on either side alone signals a duplicate (a topic the training
      pairs' labels favour); scored against a whole collection, such a text then matches
      everything. This head is a similarity: a text is closest to itself, and duplicates of a
      collection can be searched by nearest neighbours (`siamese.embedding`).

    Args:
        l2: L2 penalty on the scoring unit's weights (0 for none): what keeps a wide head over
            many sparse features from memorising rare ones.
    """
    head = Head(head)
    initial = {}
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    if head is Head.MANHATTAN:
        difference = absolute_difference(left_encoding, right_encoding, name="manhattan_difference")
        # -sum(|a-b|) with fixed weights, then exp: 1 for identical encodings, towards 0 apart.
        negative_distance = keras.layers.Dense(
            1, use_bias=False, kernel_initializer="ones", trainable=False, name="manhattan_distance"
        )(keras.layers.Rescaling(-1.0, name="manhattan_negate")(difference))
        return keras.layers.Activation("exponential", dtype="float32", name="similarity")(negative_distance)
    if head is Head.CONCAT:
        features = keras.layers.Concatenate(name="concat")([left_encoding, right_encoding])
    elif head is Head.COSINE:
        features = keras.layers.Dot(axes=1, normalize=True, name="cosine")([left_encoding, right_encoding])
        # Start at sigmoid(5 * (cos - 0.5)): higher cosine, higher score. A default (Glorot) 1x1
        # kernel is as often negative or near 0 as not, and the model then barely learns in its epochs.
        initial = {"kernel_initializer": keras.initializers.Constant(5.0), "bias_initializer": keras.initializers.Constant(-2.5)}
    elif head is Head.MONOTONE:
        difference, product = comparison_features(left_encoding, right_encoding, name="monotone")
        penalty = keras.layers.Rescaling(-1.0, name="monotone_penalty")(difference)
        features = keras.layers.Concatenate(name="monotone_features")([penalty, product])
        # Weights >= 0 on [-|a-b|, a*b]: no feature present on one side only raises the score.
        initial = {"kernel_constraint": keras.constraints.NonNeg(), "kernel_initializer": keras.initializers.RandomUniform(0.0, 0.05)}
    else:
        difference, product = comparison_features(left_encoding, right_encoding, name="symmetric")
        features = keras.layers.Concatenate(name="symmetric_features")([difference, product])
    # float32 output even under mixed precision: a float16 sigmoid saturates and breaks the loss.
    return keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=regularizer, dtype="float32", name="similarity", **initial)(features)


def on_score_scale(model: keras.Model, low: float, high: float) -> keras.Model:
    """`model` with its 0..1 output mapped onto `low..high`: a graded score on its file's scale.

    One built-in `Rescaling` (`low + (high - low) * score`) appended to the same graph, not a
    nested model: the branches, the shared encoder and the weights stay what they were, and the
    saved model returns the file's scale with nothing of this project imported. Trained on the
    file's scores with mean squared error, it is the 0..1 model trained on the scores scaled to
    0..1, its loss multiplied by a constant `(high - low)**2`, which RMSprop's normalised steps ignore.

    Args:
        model: a functional model with one output in 0..1 (a sigmoid).
        low, high: the scale, `low < high` (the training split's lowest and highest score).

    Returns:
        A functional model with the same inputs and name, shape `(batch, 1)` out.

    Raises:
        ValueError: the model has more than one output, or `low`, `high` are not finite with `low < high`.
    """
    if len(model.outputs) != 1:
        raise ValueError(f"expected a model with one 0..1 output, got {len(model.outputs)} outputs")
    if not -float("inf") < low < high < float("inf"):  # also false for NaN
        raise ValueError(f"the score scale needs finite low < high, got low={low!r} and high={high!r}")
    rescaling = keras.layers.Rescaling(scale=high - low, offset=low, dtype="float32", name="score_scale")
    return keras.Model(model.inputs, rescaling(model.outputs[0]), name=model.name)


def score_scale(model: keras.Model) -> tuple[float, float] | None:
    """The `(low, high)` scale `on_score_scale` put on a model's output (also after saving); None for a 0..1 model."""
    last = model.layers[-1] if model.layers else None
    if not isinstance(last, keras.layers.Rescaling):
        return None
    return float(last.offset), float(last.offset + last.scale)
