"""Augmentation of the vision model: random in training, each side on its own; absent in inference and from the counts."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_helpers import all_layers, custom_layers, score

from siamese.config import Augmentation, Config, ImageDataConfig, ModelKind, VisionModelConfig
from siamese.data.sequences import PairSet
from siamese.families import family_of
from siamese.models.vision import (
    AUGMENTATION_FILL_MODE,
    build_augmentation,
    build_unshared_vision_model,
    build_vision_model,
)
from siamese.sharing import verify_weight_sharing
from siamese.training import task_loss

REFERENCE_PARAMS = 20_865_577  # shared Xception (20,861,480, counted once) + concat + pooling + Dense(1)
AUGMENTATION_LAYER_NAMES = {
    "augmentation", "augmentation_pixels", "random_rotation", "random_zoom", "random_translation", "random_contrast",
}  # fmt: skip


def build(augmentation: Augmentation | None = Augmentation(), **overrides) -> keras.Model:
    arguments = dict(backbone="compact", image_size=16, channels=3, head="fusion", pooling="avg", task="similarity")
    return build_vision_model(filters=4, augmentation=augmentation, **(arguments | overrides))


def images(count: int, seed: int = 0, size: int = 16, channels: int = 3) -> np.ndarray:
    """Raw pixels 0..255 with structure to move: a smooth gradient plus noise, so every transform changes them."""
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 200, size, dtype=np.float32)[None, :, None, None] * np.ones((count, size, size, channels))
    return (gradient + rng.uniform(0, 55, (count, size, size, channels))).astype(np.float32)


def augmented_sides(model: keras.Model, left: np.ndarray, right: np.ndarray, training: bool) -> list[np.ndarray]:
    """What the model's augmentation sub-model makes of each side, called as the model calls it: once per side."""
    augmentation = model.get_layer("augmentation")
    sides = keras.Model(model.inputs, [augmentation(model.inputs[0]), augmentation(model.inputs[1])])
    return [keras.ops.convert_to_numpy(x) for x in sides({"left": left, "right": right}, training=training)]


def test_training_transforms_each_side_independently_and_draws_anew_each_call():
    model = build()
    pixels = images(4)
    left, right = augmented_sides(model, pixels, pixels, training=True)
    assert left.shape == right.shape == pixels.shape
    assert np.abs(left - pixels).max() > 1 and np.abs(right - pixels).max() > 1
    assert np.abs(left - right).max(axis=(1, 2, 3)).min() > 1, "each pair's identical sides are transformed differently"
    again, _ = augmented_sides(model, pixels, pixels, training=True)
    assert np.abs(again - left).max(axis=(1, 2, 3)).min() > 1, "a second call draws new transforms"
    assert left.min() >= 0 and left.max() <= 255, "raw pixels stay raw pixels"


def test_inference_passes_pixels_through():
    model = build()
    left, right = images(4), images(4, seed=1)
    for augmented, pixels in zip(augmented_sides(model, left, right, training=False), (left, right)):
        np.testing.assert_array_equal(augmented, pixels)


def test_the_model_is_random_in_training_and_deterministic_in_inference_equal_to_the_unaugmented_model():
    augmented, plain = build(), build(augmentation=None)
    left, right = images(8), images(8, seed=1)
    inputs = {"left": left, "right": right}
    # Training mode: batch normalisation uses batch statistics, deterministic; only augmentation draws.
    np.testing.assert_array_equal(plain(inputs, training=True), plain(inputs, training=True))
    first, second = (keras.ops.convert_to_numpy(augmented(inputs, training=True)) for _ in range(2))
    assert np.abs(first - second).max() > 1e-6

    # Each training call moved its batch norm's moving statistics: copy them too. The
    # augmentation has no weights, so the two models' weight lists line up.
    plain.set_weights(augmented.get_weights())
    predicted = augmented.predict(inputs, verbose=0)
    np.testing.assert_array_equal(predicted, augmented.predict(inputs, verbose=0))
    np.testing.assert_array_equal(predicted, plain.predict(inputs, verbose=0))
    np.testing.assert_array_equal(score(augmented, left, right), score(plain, left, right))
    # A bare call leaves Keras' random layers at their own default, training (the module docstring says so).
    assert np.abs(keras.ops.convert_to_numpy(augmented(inputs)) - predicted).max() > 1e-6


def test_compiled_training_draws_each_side_separately():
    """In a traced function (what `fit` runs) the two calls still read successive seeds."""
    model = build()
    pixels = images(4)
    augmentation = model.get_layer("augmentation")
    both_sides = tf.function(lambda x: [augmentation(x, training=True), augmentation(x, training=True)])
    left, right = (keras.ops.convert_to_numpy(x) for x in both_sides(pixels))
    assert np.abs(left - right).max(axis=(1, 2, 3)).min() > 1
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    history = model.fit({"left": pixels, "right": pixels}, np.ones(4, np.float32), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_the_same_seed_draws_the_same_transforms():
    draws = []
    for _ in range(2):
        keras.utils.set_random_seed(3)
        draws.append(augmented_sides(build(), images(2), images(2), training=True))
    for first, second in zip(*draws):
        np.testing.assert_array_equal(first, second)


def test_contrast_is_lowered_as_well_as_raised():
    """Keras' RandomContrast(c) alone would only raise it: the builder passes the range as a pair."""
    augment = build_augmentation(Augmentation(translation=0, rotation=0, zoom=0, contrast=0.5), image_size=16, channels=1)
    assert [layer.name for layer in augment.layers] == ["augmentation_pixels", "random_contrast"]
    pixels = images(64, channels=1) * 0.5 + 60  # mid-grey, so clipping to 0..255 does not cut the spread
    out = keras.ops.convert_to_numpy(augment(pixels, training=True))
    ratio = out.std(axis=(1, 2, 3)) / pixels.std(axis=(1, 2, 3))
    assert ratio.min() < 0.9 and ratio.max() > 1.1
    assert ratio.min() >= 0.5 - 1e-4 and ratio.max() <= 1.5 + 1e-4


def test_layers_are_named_filled_with_the_nearest_pixel_and_left_out_at_zero_strength():
    model = build()
    names = [layer.name for layer in all_layers(model)]
    assert AUGMENTATION_LAYER_NAMES <= set(names) and len(names) == len(set(names))
    augmentation = model.get_layer("augmentation")
    geometric = [augmentation.get_layer(name) for name in ("random_rotation", "random_zoom", "random_translation")]
    assert all(layer.fill_mode == AUGMENTATION_FILL_MODE == "nearest" for layer in geometric)
    assert augmentation.get_layer("random_contrast").value_range == (0, 255)

    without_rotation = build(Augmentation(rotation=0)).get_layer("augmentation")
    assert "random_rotation" not in {layer.name for layer in without_rotation.layers}
    nothing = build(Augmentation(translation=0, rotation=0, zoom=0, contrast=0))
    assert [layer.name for layer in all_layers(nothing)] == [layer.name for layer in all_layers(build(augmentation=None))]
    assert build_augmentation(None, image_size=16, channels=3) is None


def test_augmentation_adds_no_parameters():
    augmented, plain = build(), build(augmentation=None)
    assert augmented.get_layer("augmentation").count_params() == 0
    assert augmented.count_params() == plain.count_params()
    assert len(augmented.get_weights()) == len(plain.get_weights())


def test_reference_xception_model_keeps_its_parameter_count_with_augmentation():
    model = build(backbone="xception", image_size=250, head="concat")
    assert model.count_params() == REFERENCE_PARAMS
    assert model.get_layer("backbone").count_params() == 20_861_480


def test_keras_save_and_reload_keeps_the_augmentation_with_keras_layers_only(tmp_path):
    model = build()
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # default safe mode
    assert custom_layers(model) == [], "the saved model must load where nothing of this project is imported"
    left, right = images(4), images(4, seed=1)
    np.testing.assert_array_equal(score(model, left, right), score(reloaded, left, right))
    assert sorted(layer.name for layer in all_layers(reloaded)) == sorted(layer.name for layer in all_layers(model))
    contrast = reloaded.get_layer("augmentation").get_layer("random_contrast")
    assert tuple(contrast.factor) == (0.2, 0.2) and tuple(contrast.value_range) == (0, 255)
    reloaded_left, reloaded_right = augmented_sides(reloaded, left, left, training=True)
    assert np.abs(reloaded_left - reloaded_right).max() > 1, "still augments in training after reloading"


@pytest.mark.parametrize(("head", "task"), [("fusion", "regression"), ("symmetric", "similarity")])
def test_weight_sharing_verification_passes_with_augmentation(head, task):
    model = build(head=head, task=task)
    if task == "regression":
        labels = np.random.default_rng(2).uniform(0, 2, 8).astype(np.float32)
    else:
        labels = np.tile([0.0, 1.0], 4).astype(np.float32)
    report = verify_weight_sharing(model, images(8), images(8, seed=1), labels, loss=task_loss(task))
    assert report.passed, report.failures()
    assert report.encoder_params == model.get_layer("backbone").count_params()
    assert report.total_params == model.count_params() == build(augmentation=None, head=head, task=task).count_params()


def test_unshared_twin_augments_each_side_with_its_own_sub_model_and_fails_verification():
    model = build_unshared_vision_model(
        backbone="compact", image_size=16, channels=3, head="fusion", pooling="avg", task="similarity",
        filters=4, augmentation=Augmentation(),
    )  # fmt: skip
    assert model.get_layer("left_augmentation") is not model.get_layer("right_augmentation")
    labels = np.tile([0.0, 1.0], 4).astype(np.float32)
    report = verify_weight_sharing(model, images(8), images(8, seed=1), labels)
    failed = {check.name for check in report.checks if not check.passed}
    assert {"same_encoder_object", "shared_variables", "parameter_count"} <= failed


@pytest.mark.parametrize("builder", [build_vision_model, build_unshared_vision_model])
def test_an_augmentation_of_another_type_is_a_value_error(builder):
    arguments = dict(backbone="compact", image_size=16, channels=3, head="fusion", pooling="avg", task="similarity")
    with pytest.raises(ValueError, match=r"augmentation must be an Augmentation or None, got \{'zoom': 0.1\}"):
        builder(augmentation={"zoom": 0.1}, **arguments)


@pytest.mark.parametrize(
    ("data", "augmented"),
    [
        ({"source": "folder", "path": "classes"}, True),
        ({"source": "csv", "path": "pairs.csv", "contrast": 0.0}, True),
        ({"source": "csv", "path": "pairs.csv", "augment": "off"}, False),
        ({}, False),  # generated stereo pairs
    ],
)
def test_the_vision_family_builds_what_the_config_resolves_to(data, augmented):
    config = Config(kind=ModelKind.VISION, data=ImageDataConfig(image_size=16, **data), model=VisionModelConfig(filters=4))
    train = PairSet(images(2).astype(np.uint8), images(2).astype(np.uint8), np.ones(2, np.float32))
    model = family_of(ModelKind.VISION).build(config, train, "float32")
    names = {layer.name for layer in all_layers(model)}
    assert ("augmentation" in names) is augmented
    assert ("random_contrast" in names) is (augmented and config.data.contrast > 0)
