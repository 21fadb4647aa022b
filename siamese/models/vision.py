"""The vision reference model: one CNN backbone applied to a left and a right camera image.

The reference is `keras.applications.Xception(weights=None, include_top=False)` on two
`(250, 250, 3)` cameras, the two feature maps concatenated along channels. Shared, the backbone
(20,861,480 parameters) is counted once: with global average pooling and `Dense(1)` the model
has 20,865,577 parameters; the unshared twin has 41,727,057. The `compact` backbone is a small
CNN of the same shape contract that trains in seconds on a CPU (generated stereo pairs); `conv4`
is its max-pooling, one-stage-deeper sibling for real images (class folders, pair CSVs).

Heads. `concat` is the reference: pooling the concatenated maps and a `Dense(1)` is additive in
the two views (w.a + v.b), so it scores each view on its own and cannot compare them (the text
model's concat head has the same limit). `fusion` concatenates the maps with their
per-location comparisons `[a, b, |a-b|, a*b]` and convolves them, so each unit sees both views
at each location and its neighbours and can measure how they differ (a disparity, a mismatch);
it is the head that learns the stereo disparity. `symmetric` pools each view and scores
`[|a-b|, a*b]`: score(a, b) == score(b, a), but pooling first loses where things are, so it
tells scenes apart and cannot measure a disparity; with `flatten` pooling (every location's
features, nothing pooled) it is the head of the `conv4` recipe for real images
(`siamese.config.VISION_RECIPES`). `l1` (Koch, Zemel and Salakhutdinov, 2015) scores `|a-b|`
alone, a learned weighted L1 distance between the two views: symmetric too.

Output layer names: `similarity` (sigmoid, 0..1) for task `similarity`, `prediction` (linear)
for task `regression`; see `OUTPUT_LAYER_NAMES`. Both are float32 under mixed precision.

Batch normalisation in a shared backbone (Keras 3.15, TensorFlow backend, measured and pinned by
tests/models/test_vision.py): in training mode each call of the backbone normalises with its
own view's batch statistics, and the shared moving mean and variance are updated twice per step,
once with each view's statistics. The order follows Keras' execution order of the functional
graph, not the order of the inputs: the left view's update comes first with the concat and
fusion heads, the right view's with the symmetric head. In inference both views use the same
moving statistics, so one image gets the same encoding on either side.

Augmentation (real images) is not part of the model: training fits a wrapper,
`with_training_augmentation`, that runs an `augmentation` sub-model of Keras' random preprocessing
layers on each side's raw pixels before the model, one draw per image and per side. The model
that is saved and served holds no random layer: the same input gives the same output however it
is called (Keras leaves those layers in training mode on a bare call), and it keeps XLA, which
their image transform has no kernel for.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import keras

from siamese.config import (
    MIN_IMAGE_SIZE,
    XCEPTION_MIN_IMAGE_SIZE,
    Augmentation,
    Backbone,
    Pooling,
    Task,
    VisionHead,
    member_of,
)
from siamese.models.layers import absolute_difference, comparison_features

COMPACT_STAGES = 3  # each halves the image: 16 pixels leave a 2x2 map
CONV4_STAGES = 4  # 16 pixels leave a 1x1 map, 48 a 3x3 one
# Keras' default 0.99 averages over ~100 steps: a run of a few hundred steps would validate with
# statistics of weights long gone (validation loss far above training loss in early epochs).
COMPACT_BATCH_NORM_MOMENTUM = 0.9
OUTPUT_LAYER_NAMES = {Task.SIMILARITY: "similarity", Task.REGRESSION: "prediction"}
# `flatten` keeps where each feature is: two drawings or two aligned faces differ in where their
# strokes and parts are, which a global average or maximum throws away.
POOLING_LAYERS = {
    Pooling.AVG: keras.layers.GlobalAveragePooling2D,
    Pooling.MAX: keras.layers.GlobalMaxPooling2D,
    Pooling.FLATTEN: keras.layers.Flatten,
}
MIN_IMAGE_SIZES = {Backbone.COMPACT: MIN_IMAGE_SIZE, Backbone.CONV4: MIN_IMAGE_SIZE, Backbone.XCEPTION: XCEPTION_MIN_IMAGE_SIZE}
# What fills the pixels a shift, zoom-out or rotation uncovers. "nearest" repeats the border
# pixel: on a drawing or scan with a plain background that is the background itself, and on a
# photo a short smear at the edge. Keras' default "reflect" mirrors content into view (a stroke
# or a face edge near the border appears twice), and "constant" adds a black band, a sharp edge
# on a white page: both are structures the model could learn that no test image has.
AUGMENTATION_FILL_MODE = "nearest"

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
    sub-model `xception`: e.g. `(71, 71)` -> `(3, 3, 2048)`, `(250, 250)` -> `(8, 8, 2048)`;
    20,861,480 parameters for 3 channels at any size. `compact`: `COMPACT_STAGES`
    Conv-BN-ReLU-average-pool stages with `filters`, `2*filters`, `4*filters` channels:
    `(s, s)` -> `(s//8, s//8, 4*filters)`; 23,920 parameters for 3 channels and 16 filters.
    `conv4`: `CONV4_STAGES` such stages with max pooling (the few-shot literature's Conv-4, as
    in matching and prototypical networks), `filters` to `8*filters` channels:
    `(s, s)` -> `(s//16, s//16, 8*filters)`; 98,160 parameters for 3 channels and 16 filters.

    Raises:
        ValueError: an unknown backbone, or a size, channel count or filter count out of range.
    """
    backbone = member_of(Backbone, backbone, "backbone")
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
    if backbone is Backbone.CONV4:
        # Max pooling: whether a stroke, edge or corner is in a cell matters to telling two
        # drawings or faces apart, not where in the cell it is (on omniglot_small2, 4 stages of
        # max pooling beat the compact backbone's 3 of average pooling; BENCHMARKS.md).
        stages, pooling = CONV4_STAGES, keras.layers.MaxPooling2D
    else:
        # Average, not max, pooling: a shift smaller than a cell still moves the average, while
        # the maximum ignores where in the cell a feature is, and disparities are a few pixels.
        stages, pooling = COMPACT_STAGES, keras.layers.AveragePooling2D
    features = scaled
    for stage in range(1, stages + 1):
        features = keras.layers.Conv2D(
            filters * 2 ** (stage - 1), 3, padding="same", use_bias=False, dtype=dtype_policy, name=f"stage{stage}_conv"
        )(features)
        features = keras.layers.BatchNormalization(
            momentum=COMPACT_BATCH_NORM_MOMENTUM, dtype=dtype_policy, name=f"stage{stage}_bn"
        )(features)
        features = keras.layers.ReLU(dtype=dtype_policy, name=f"stage{stage}_relu")(features)
        features = pooling(2, dtype=dtype_policy, name=f"stage{stage}_pool")(features)
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
    `similarity`, a linear estimate for `regression`. `filters` sets the compact backbone's
    width and the fusion head's convolution (`filters` channels) for either backbone.

    Raises:
        ValueError: an unknown backbone, head, pooling or task, or a size out of range.
    """
    head, pooling, task = _head_options(head, pooling, task)
    left, right = _camera_inputs(image_size, channels)
    encoder = build_backbone(
        backbone=backbone, image_size=image_size, channels=channels, filters=filters, dtype_policy=dtype_policy
    )
    output = _head(encoder(left), encoder(right), head, pooling, task, filters=filters, dtype_policy=dtype_policy)
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
    check that weight-sharing verification catches it. Shapes and names as `build_vision_model`,
    with backbones `left_backbone` and `right_backbone`.
    """
    head, pooling, task = _head_options(head, pooling, task)
    left, right = _camera_inputs(image_size, channels)
    left_encoder, right_encoder = (
        build_backbone(
            backbone=backbone,
            image_size=image_size,
            channels=channels,
            filters=filters,
            dtype_policy=dtype_policy,
            name=name,
        )
        for name in ("left_backbone", "right_backbone")
    )
    output = _head(left_encoder(left), right_encoder(right), head, pooling, task, filters=filters, dtype_policy=dtype_policy)
    return keras.Model([left, right], output, name="unshared_vision")


def build_augmentation(
    augmentation: Augmentation | None, *, image_size: int, channels: int, name: str = "augmentation"
) -> keras.Model | None:
    """Random transforms of raw pixels `(batch, image_size, image_size, channels)`, same shape out, in training only.

    Rotation, zoom and translation (each filling uncovered pixels per `AUGMENTATION_FILL_MODE`),
    then contrast, each left out at strength 0; None when there is nothing to apply. Each image
    of a batch gets its own draw and each call of the sub-model draws anew. The draws come from
    each layer's seed generator, seeded from Python's `random` when the layer is built (which
    `keras.utils.set_random_seed` seeds); it is state, not a weight: the sub-model has no
    parameters.

    Raises:
        ValueError: `augmentation` is neither an `Augmentation` nor None.
    """
    if augmentation is not None and not isinstance(augmentation, Augmentation):
        raise ValueError(f"augmentation must be an Augmentation or None, got {augmentation!r}")
    if augmentation is None:
        return None
    # float32 under any policy: pixels 0..255 in and out; the backbone casts them as it rescales.
    geometric = {"fill_mode": AUGMENTATION_FILL_MODE, "dtype": "float32"}
    layers: list[keras.Layer] = []
    if augmentation.rotation:
        layers.append(keras.layers.RandomRotation(augmentation.rotation, name="random_rotation", **geometric))
    if augmentation.zoom:
        layers.append(keras.layers.RandomZoom(augmentation.zoom, name="random_zoom", **geometric))
    if augmentation.translation:
        layers.append(
            keras.layers.RandomTranslation(
                augmentation.translation, augmentation.translation, name="random_translation", **geometric
            )
        )
    if augmentation.contrast:
        # A pair, not one number: Keras 3.15 reads RandomContrast(c) as factors in [1, 1 + c]
        # (contrast raised only), not the [1 - c, 1 + c] its docstring states. value_range: the
        # result is clipped to raw pixels.
        contrast = (augmentation.contrast, augmentation.contrast)
        layers.append(
            keras.layers.RandomContrast(contrast, value_range=(0, 255), name="random_contrast", dtype="float32")
        )
    if not layers:
        return None
    pixels = keras.Input(shape=(image_size, image_size, channels), name=f"{name}_pixels")
    transformed = pixels
    for layer in layers:
        transformed = layer(transformed)
    return keras.Model(pixels, transformed, name=name)


def with_training_augmentation(model: keras.Model, augmentation: Augmentation | None) -> keras.Model:
    """What training fits: `model` on each side's randomly transformed pixels; `model` itself when nothing is applied.

    The wrapper calls the same layer objects, so every weight it learns is `model`'s, and
    `model`, the one that is saved, verified, registered and served, holds no random layer: it
    gives the same output for the same input however it is called, and keeps XLA (Keras' random
    image layers have no XLA kernel). One `augmentation` sub-model (`build_augmentation`) is
    called once per side, each call drawing its own transforms: the sides vary independently.
    """
    image_size, channels = model.inputs[0].shape[1], model.inputs[0].shape[3]
    augment = build_augmentation(augmentation, image_size=image_size, channels=channels)
    if augment is None:
        return model
    left, right = _camera_inputs(image_size, channels)
    return keras.Model([left, right], model([augment(left), augment(right)]), name=f"{model.name}_augmented")


def _camera_inputs(image_size: int, channels: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    shape = (image_size, image_size, channels)
    return keras.Input(shape=shape, name="left"), keras.Input(shape=shape, name="right")


def _head_options(head, pooling, task) -> tuple[VisionHead, Pooling, Task]:
    """Checked before any backbone is built: Xception takes a second to build."""
    return member_of(VisionHead, head, "head"), member_of(Pooling, pooling, "pooling"), member_of(Task, task, "task")


def _head(left_map, right_map, head: VisionHead, pooling: Pooling, task: Task, *, filters: int, dtype_policy: str):
    """Combine two feature maps `(batch, h, w, c)` into one number per pair `(batch, 1)`."""
    pool = POOLING_LAYERS[pooling](dtype=dtype_policy, name="pooling")
    if head in (VisionHead.SYMMETRIC, VisionHead.L1):
        # One pooling layer (no weights) on each view: the branch outputs are pooled vectors.
        left_vector, right_vector = pool(left_map), pool(right_map)
        if head is VisionHead.L1:  # Koch et al. (2015): a weighted L1 distance, one weight per feature
            features = absolute_difference(left_vector, right_vector, name="l1_difference", dtype_policy=dtype_policy)
        else:
            difference, product = comparison_features(left_vector, right_vector, name="symmetric", dtype_policy=dtype_policy)
            features = keras.layers.Concatenate(dtype=dtype_policy, name="symmetric_features")([difference, product])
    elif head is VisionHead.CONCAT:
        features = keras.layers.Concatenate(axis=-1, dtype=dtype_policy, name="concat")([left_map, right_map])
        features = pool(features)
    else:
        # The maps and their per-location comparisons, then a 3x3 convolution that sees both
        # views at each location and its neighbours. Without |a-b| and a*b, a convolution over
        # [a, b] has to learn to compare from scratch: on the stereo data its test MAE stayed at
        # the mean predictor's (8 and 25 epochs); with them it is about a third of that in 8.
        difference, product = comparison_features(left_map, right_map, name="map", dtype_policy=dtype_policy)
        features = keras.layers.Concatenate(axis=-1, dtype=dtype_policy, name="fusion_features")(
            [left_map, right_map, difference, product]
        )
        features = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", dtype=dtype_policy, name="fusion_conv"
        )(features)
        features = pool(features)
    # float32 output even under mixed precision: a float16 sigmoid saturates and breaks the loss.
    activation = "sigmoid" if task is Task.SIMILARITY else "linear"
    return keras.layers.Dense(1, activation=activation, dtype="float32", name=OUTPUT_LAYER_NAMES[task])(features)


def _check_sizes(*, backbone: Backbone, image_size: int, channels: int, filters: int) -> None:
    minimum = MIN_IMAGE_SIZES[backbone]
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < minimum:
        if backbone is Backbone.XCEPTION:
            reason = "keras.applications.Xception refuses smaller inputs"
        else:
            reason = f"the compact backbone halves the image {COMPACT_STAGES} times"
        raise ValueError(
            f"image_size must be an integer >= {minimum} for backbone '{backbone}' ({reason}), got {image_size!r}"
        )
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
        raise ValueError(f"filters must be an integer >= 1, got {filters!r}")


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

    Only names change: `.keras` files save and match weights by position, and verification
    uses object identity, so nothing depends on them beyond readability and reproducible
    summaries. (Variable paths keep Keras' counter names until the model is reloaded.)
    """
    counts: dict[str, int] = {}
    for layer in model.layers:
        match = _AUTO_NAMED.match(layer.name)
        if match is None:
            continue
        kind = match.group(1)
        counts[kind] = counts.get(kind, 0) + 1
        layer.name = f"{model.name}_input" if kind == "input_layer" else f"{_RESIDUAL_NAMES[kind]}{counts[kind]}"
