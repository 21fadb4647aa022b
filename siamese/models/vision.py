"""The vision reference model: one CNN backbone applied to a left and a right camera image.

The reference is `keras.applications.Xception(weights=None, include_top=False)` on two
`(250, 250, 3)` cameras, the two feature maps concatenated along channels. Shared, the backbone
(20,861,480 parameters) is counted once: with global average pooling and `Dense(1)` the model
has 20,865,577 parameters; the unshared twin has 41,727,057. The `compact` backbone is a small
CNN of the same shape contract that trains in seconds on a CPU.

Heads. `concat` is the reference: pooling the concatenated maps and a `Dense(1)` is additive in
the two views (w.a + v.b), so it scores each view on its own and cannot compare them (the text
model's concat head has the same limit). `fusion` convolves the concatenated maps, so each unit
sees both views at each location and can measure how they differ (a disparity, a mismatch).
`symmetric` pools each view and scores `[|a-b|, a*b]`: score(a, b) == score(b, a).

Output layer names: `similarity` (sigmoid, 0..1) for task `similarity`, `prediction` (linear)
for task `regression`; see `OUTPUT_LAYER_NAMES`. Both are float32 under mixed precision.

Batch normalisation in a shared backbone (Keras 3, TensorFlow backend, measured and pinned by
tests/models/test_vision.py): in training mode each call of the backbone normalises with its
own view's batch statistics, and the shared moving mean and variance are updated twice per step,
the left view's update first, then the right's. In inference both views use the same moving
statistics, so one image gets the same encoding on either side.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from enum import StrEnum

import keras

from siamese.config import MIN_IMAGE_SIZE, XCEPTION_MIN_IMAGE_SIZE, Backbone, Pooling, Task, VisionHead
from siamese.models.layers import AbsoluteDifference

import os
_POOL = os.environ.get("XPOOL", "max")
COMPACT_STAGES = 3  # each halves the image: 16 pixels leave a 2x2 map
FUSION_WIDTH_FACTOR = int(os.environ.get("XWF", 4))  # fusion convolutions have 4 * filters channels (the compact backbone's last stage)
OUTPUT_LAYER_NAMES = {Task.SIMILARITY: "similarity", Task.REGRESSION: "prediction"}
MIN_IMAGE_SIZES = {Backbone.COMPACT: MIN_IMAGE_SIZE, Backbone.XCEPTION: XCEPTION_MIN_IMAGE_SIZE}

# keras.applications leaves these to Keras' global name counter ("add", then "add_12" in a second
# build in one process); they are renamed by position so that every build gets the same names.
_AUTO_NAMED = re.compile(r"^(input_layer|conv2d|batch_normalization|add)(_\d+)?$")
_RESIDUAL_NAMES = {"conv2d": "residual_conv", "batch_normalization": "residual_bn", "add": "residual_add"}


def build_backbone(
    *,
    backbone: Backbone | str,
    image_size: int,
    channels: int,
    filters: int = 16,
    dtype_policy: str = "float32",
    name: str = "backbone",
) -> keras.Model:
    """Encode raw pixels `(batch, image_size, image_size, channels)` into a feature map `(batch, h, w, c)`.

    The backbone rescales 0..255 to -1..1 itself (what Xception expects), so the saved model
    takes raw pixels and nothing outside it has to remember the preprocessing.

    `xception`: `keras.applications.Xception(weights=None, include_top=False)` nested as the
    sub-model `xception`: e.g. `(71, 71)` -> `(3, 3, 2048)`, `(250, 250)` -> `(8, 8, 2048)`. `compact`: `COMPACT_STAGES` Conv-BN-ReLU-max-pool stages with `filters`,
    `2*filters`, `4*filters` channels: `(s, s)` -> `(s/8, s/8, 4*filters)` (floored).

    Raises:
        ValueError: an unknown backbone, or a size, channel count or filter count out of range.
    """
    backbone = _member(backbone, Backbone, "backbone")
    _check_sizes(backbone=backbone, image_size=image_size, channels=channels, filters=filters)
    pixels = keras.Input(shape=(image_size, image_size, channels), name=f"{name}_pixels")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, dtype=dtype_policy, name="rescaling")(pixels)
    if backbone is Backbone.XCEPTION:
        with _default_dtype_policy(dtype_policy):  # applications take no dtype argument
            xception = keras.applications.Xception(
                weights=None, include_top=False, input_shape=(image_size, image_size, channels), name="xception"
            )
        _name_auto_named_layers(xception)
        return keras.Model(pixels, xception(scaled), name=name)
    features = scaled
    for stage in range(1, COMPACT_STAGES + 1):
        features = keras.layers.Conv2D(
            filters * 2 ** (stage - 1), 3, padding="same", use_bias=False, dtype=dtype_policy, name=f"stage{stage}_conv"
        )(features)
        features = keras.layers.BatchNormalization(momentum=float(os.environ.get("XMOM", 0.99)), dtype=dtype_policy, name=f"stage{stage}_bn")(features)
        features = keras.layers.ReLU(dtype=dtype_policy, name=f"stage{stage}_relu")(features)
        features = (keras.layers.AveragePooling2D if _POOL == "avg" else keras.layers.MaxPooling2D)(2, dtype=dtype_policy, name=f"stage{stage}_pool")(features)
    return keras.Model(pixels, features, name=name)


def build_vision_model(
    *,
    backbone: Backbone | str,
    image_size: int,
    channels: int,
    head: VisionHead | str,
    pooling: Pooling | str,
    task: Task | str,
    filters: int = 16,
    dtype_policy: str = "float32",
) -> keras.Model:
    """The Siamese vision model: `backbone(left)` and `backbone(right)` share one set of weights.

    Inputs `left` and `right`: `(batch, image_size, image_size, channels)` float32 raw pixels
    0..255. Output `(batch, 1)` float32, named per `OUTPUT_LAYER_NAMES`: a sigmoid score for
    `similarity`, a linear estimate for `regression`.

    Raises:
        ValueError: an unknown backbone, head, pooling or task, or a size out of range.
    """
    left, right = _camera_inputs(image_size, channels)
    encoder = build_backbone(
        backbone=backbone, image_size=image_size, channels=channels, filters=filters, dtype_policy=dtype_policy
    )
    output = _head(encoder(left), encoder(right), head=head, pooling=pooling, task=task, filters=filters, dtype_policy=dtype_policy)
    return keras.Model([left, right], output, name="siamese_vision")


def build_unshared_vision_model(
    *,
    backbone: Backbone | str,
    image_size: int,
    channels: int,
    head: VisionHead | str,
    pooling: Pooling | str,
    task: Task | str,
    filters: int = 16,
    dtype_policy: str = "float32",
) -> keras.Model:
    """The unshared twin: the same architecture with a separate backbone per side.

    Not a Siamese model: it exists to compare against (twice the backbone parameters) and to
    check that weight-sharing verification catches it.
    """
    left, right = _camera_inputs(image_size, channels)
    encoders = [
        build_backbone(
            backbone=backbone, image_size=image_size, channels=channels, filters=filters, dtype_policy=dtype_policy, name=name
        )
        for name in ("left_backbone", "right_backbone")
    ]
    output = _head(
        encoders[0](left), encoders[1](right), head=head, pooling=pooling, task=task, filters=filters, dtype_policy=dtype_policy
    )
    return keras.Model([left, right], output, name="unshared_vision")


def _camera_inputs(image_size: int, channels: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    shape = (image_size, image_size, channels)
    return keras.Input(shape=shape, name="left"), keras.Input(shape=shape, name="right")


def _head(left_map, right_map, *, head, pooling, task, filters: int, dtype_policy: str):
    """Combine two feature maps `(batch, h, w, c)` into one number per pair `(batch, 1)`."""
    head = _member(head, VisionHead, "head")
    pooling = _member(pooling, Pooling, "pooling")
    task = _member(task, Task, "task")
    pool_class = keras.layers.GlobalAveragePooling2D if pooling is Pooling.AVG else keras.layers.GlobalMaxPooling2D
    pool = pool_class(dtype=dtype_policy, name="pooling")
    if head is VisionHead.SYMMETRIC:
        # One pooling layer (no weights) on each view: the branch outputs are pooled vectors.
        left_vector, right_vector = pool(left_map), pool(right_map)
        difference = AbsoluteDifference(dtype=dtype_policy, name="abs_difference")([left_vector, right_vector])
        product = keras.layers.Multiply(dtype=dtype_policy, name="product")([left_vector, right_vector])
        features = keras.layers.Concatenate(dtype=dtype_policy, name="symmetric_features")([difference, product])
    else:
        parts = [left_map, right_map]
        if head is VisionHead.FUSION and os.environ.get("XFUSE", "v1") != "v1":
            diff = AbsoluteDifference(dtype=dtype_policy, name="map_difference")([left_map, right_map])
            prod = keras.layers.Multiply(dtype=dtype_policy, name="map_product")([left_map, right_map])
            parts = [diff, prod] if os.environ["XFUSE"] == "v2" else [left_map, right_map, diff, prod]
        features = keras.layers.Concatenate(axis=-1, dtype=dtype_policy, name="concat")(parts)
        if head is VisionHead.FUSION:
            # A 3x3 convolution over both views' features sees both at each location and its
            # neighbours: it can compare them, which pooling the concatenation cannot.
            fh = os.environ.get("XHEAD", "plain")
            if fh == "f1":
                features = keras.layers.Conv2D(FUSION_WIDTH_FACTOR * filters, 3, padding="same", use_bias=False, dtype=dtype_policy, name="fusion_conv")(features)
                features = keras.layers.BatchNormalization(momentum=float(os.environ.get("XMOM", 0.99)), dtype=dtype_policy, name="fusion_bn")(features)
                features = keras.layers.ReLU(dtype=dtype_policy, name="fusion_relu")(features)
            else:
                features = keras.layers.Conv2D(
                    FUSION_WIDTH_FACTOR * filters, 3, padding="same", activation="relu", dtype=dtype_policy, name="fusion_conv"
                )(features)
        features = pool(features)
        if head is VisionHead.FUSION and os.environ.get("XHEAD", "plain") == "f2":
            features = keras.layers.BatchNormalization(momentum=float(os.environ.get("XMOM", 0.99)), dtype=dtype_policy, name="pooled_bn")(features)
    # float32 output even under mixed precision: a float16 sigmoid saturates and breaks the loss.
    activation = "sigmoid" if task is Task.SIMILARITY else "linear"
    return keras.layers.Dense(1, activation=activation, dtype="float32", name=OUTPUT_LAYER_NAMES[task])(features)


def _check_sizes(*, backbone: Backbone, image_size: int, channels: int, filters: int) -> None:
    minimum = MIN_IMAGE_SIZES[backbone]
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < minimum:
        reason = "keras.applications.Xception refuses smaller inputs" if backbone is Backbone.XCEPTION else (
            f"the compact backbone halves the image {COMPACT_STAGES} times"
        )
        raise ValueError(f"image_size must be an integer >= {minimum} for backbone '{backbone}' ({reason}), got {image_size!r}")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
        raise ValueError(f"filters must be an integer >= 1, got {filters!r}")


def _member(value, enum: type[StrEnum], argument: str):
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise ValueError(f"{argument} must be one of {allowed}; got {value!r}") from None


@contextlib.contextmanager
def _default_dtype_policy(dtype_policy: str) -> Iterator[None]:
    """Build with `dtype_policy` as Keras' default, then restore it (Keras keeps it per thread)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _name_auto_named_layers(model: keras.Model) -> None:
    """Give the layers keras.applications leaves unnamed a name by position (`residual_conv1`, ...).

    Only names change: weights are saved and matched by position, and verification uses
    object identity, so nothing depends on them beyond readability and reproducible summaries.
    """
    counts: dict[str, int] = {}
    for layer in model.layers:
        match = _AUTO_NAMED.match(layer.name)
        if match is None:
            continue
        kind = match.group(1)
        counts[kind] = counts.get(kind, 0) + 1
        layer.name = f"{model.name}_input" if kind == "input_layer" else f"{_RESIDUAL_NAMES[kind]}{counts[kind]}"
