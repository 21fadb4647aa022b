"""Augmentation of real images: a training-only wrapper, random per side; the saved model holds no random layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_helpers import all_layers, custom_layers

from siamese.config import Augmentation, Config, ImageDataConfig, ModelKind, VisionModelConfig
from siamese.data.sequences import PairSet
from siamese.families import family_of
from siamese.models.vision import (
    AUGMENTATION_FILL_MODE,
    build_augmentation,
    build_vision_model,
    with_training_augmentation,
)

REFERENCE_PARAMS = 20_865_577  # shared Xception (20,861,480, counted once) + concat + pooling + Dense(1)
AUGMENTATION_LAYER_NAMES = {
    "augmentation", "augmentation_pixels", "random_rotation", "random_zoom", "random_translation", "random_contrast",
}  # fmt: skip


def build(**overrides) -> keras.Model:
    arguments = dict(backbone="compact", image_size=16, channels=3, head="fusion", pooling="avg", task="similarity")
    return build_vision_model(filters=4, **(arguments | overrides))


def trainer(augmentation: Augmentation | None = Augmentation(), **overrides) -> keras.Model:
    """The training wrapper over a fresh model (the model is its `siamese_vision` layer)."""
    return with_training_augmentation(build(**overrides), augmentation)


def images(count: int, seed: int = 0, size: int = 16, channels: int = 3) -> np.ndarray:
    """Raw pixels 0..255 with structure to move: a smooth gradient plus noise, so every transform changes them."""
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 200, size, dtype=np.float32)[None, :, None, None] * np.ones((count, size, size, channels))
    return (gradient + rng.uniform(0, 55, (count, size, size, channels))).astype(np.float32)


def augmented_sides(model: keras.Model, left: np.ndarray, right: np.ndarray, training: bool) -> list[np.ndarray]:
    """What the wrapper's augmentation sub-model makes of each side, called as the wrapper calls it: once per side."""
    augmentation = model.get_layer("augmentation")
    sides = keras.Model(model.inputs, [augmentation(model.inputs[0]), augmentation(model.inputs[1])])
    return [keras.ops.convert_to_numpy(x) for x in sides({"left": left, "right": right}, training=training)]


def test_training_transforms_each_side_independently_and_draws_anew_each_call():
    model = trainer()
    pixels = images(4)
    left, right = augmented_sides(model, pixels, pixels, training=True)
    assert left.shape == right.shape == pixels.shape
    assert np.abs(left - pixels).max() > 1 and np.abs(right - pixels).max() > 1
    assert np.abs(left - right).max(axis=(1, 2, 3)).min() > 1, "each pair's identical sides are transformed differently"
    again, _ = augmented_sides(model, pixels, pixels, training=True)
    assert np.abs(again - left).max(axis=(1, 2, 3)).min() > 1, "a second call draws new transforms"
    assert left.min() >= 0 and left.max() <= 255, "raw pixels stay raw pixels"


def test_inference_passes_pixels_through():
    model = trainer()
    left, right = images(4), images(4, seed=1)
    for augmented, pixels in zip(augmented_sides(model, left, right, training=False), (left, right)):
        np.testing.assert_array_equal(augmented, pixels)


def test_training_is_random_and_the_model_it_trains_is_not():
    wrapper = trainer()
    model = wrapper.get_layer("siamese_vision")
    left, right = images(8), images(8, seed=1)
    inputs = {"left": left, "right": right}
    first, second = (keras.ops.convert_to_numpy(wrapper(inputs, training=True)) for _ in range(2))
    assert np.abs(first - second).max() > 1e-6, "the wrapper draws new transforms in training"
    # The model itself: deterministic on any call (a bare call too), and the wrapper in inference is the model.
    np.testing.assert_array_equal(model(inputs, training=True), model(inputs, training=True))
    predicted = model.predict(inputs, verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(inputs)), predicted, atol=1e-6)  # a bare call: no draw
    np.testing.assert_array_equal(wrapper.predict(inputs, verbose=0), predicted)
    assert not {"augmentation", "random_rotation"} & {layer.name for layer in all_layers(model)}


def test_fitting_the_wrapper_trains_the_model():
    wrapper = trainer(head="symmetric")
    model = wrapper.get_layer("siamese_vision")
    before = [weight.copy() for weight in model.get_weights()]
    wrapper.compile(optimizer="adam", loss="binary_crossentropy")
    pixels = images(8)
    wrapper.fit({"left": pixels, "right": pixels[::-1]}, np.tile([0.0, 1.0], 4), epochs=1, verbose=0)
    assert any(np.abs(after - start).max() > 0 for after, start in zip(model.get_weights(), before))
    assert [id(variable) for variable in wrapper.trainable_variables] == [id(variable) for variable in model.trainable_variables]


def test_compiled_training_draws_each_side_separately():
    """In a traced function (what `fit` runs) the two calls still read successive seeds."""
    model = trainer()
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
        draws.append(augmented_sides(trainer(), images(2), images(2), training=True))
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
    model = trainer()
    augmentation = model.get_layer("augmentation")
    names = [layer.name for layer in all_layers(augmentation)]
    assert {"augmentation", *names} == AUGMENTATION_LAYER_NAMES and len(names) == len(set(names))
    geometric = [augmentation.get_layer(name) for name in ("random_rotation", "random_zoom", "random_translation")]
    assert all(layer.fill_mode == AUGMENTATION_FILL_MODE == "nearest" for layer in geometric)
    assert augmentation.get_layer("random_contrast").value_range == (0, 255)

    without_rotation = trainer(Augmentation(rotation=0)).get_layer("augmentation")
    assert "random_rotation" not in {layer.name for layer in without_rotation.layers}
    plain = build()
    assert with_training_augmentation(plain, Augmentation(translation=0, rotation=0, zoom=0, contrast=0)) is plain
    assert with_training_augmentation(plain, None) is plain
    assert build_augmentation(None, image_size=16, channels=3) is None


def test_augmentation_adds_no_parameters():
    wrapper = trainer()
    assert wrapper.get_layer("augmentation").count_params() == 0
    assert wrapper.count_params() == wrapper.get_layer("siamese_vision").count_params()


def test_reference_xception_model_keeps_its_parameter_count_under_the_wrapper():
    wrapper = trainer(backbone="xception", image_size=250, head="concat")
    assert wrapper.count_params() == wrapper.get_layer("siamese_vision").count_params() == REFERENCE_PARAMS
    assert wrapper.get_layer("siamese_vision").get_layer("backbone").count_params() == 20_861_480


def test_the_augmentation_saves_and_reloads_with_keras_layers_only(tmp_path):
    augment = trainer().get_layer("augmentation")
    path = tmp_path / "augmentation.keras"
    augment.save(path)
    reloaded = keras.saving.load_model(path)  # default safe mode
    assert custom_layers(augment) == []
    contrast = reloaded.get_layer("random_contrast")
    assert tuple(contrast.factor) == (0.2, 0.2) and tuple(contrast.value_range) == (0, 255)


def test_an_augmentation_of_another_type_is_a_value_error():
    with pytest.raises(ValueError, match=r"augmentation must be an Augmentation or None, got \{'zoom': 0.1\}"):
        with_training_augmentation(build(), {"zoom": 0.1})


@pytest.mark.parametrize(
    ("data", "augmented"),
    [
        ({"source": "folder", "path": "classes", "training_pairs": "drawn"}, True),
        ({"source": "csv", "path": "pairs.csv", "contrast": 0.0}, True),
        ({"source": "csv", "path": "pairs.csv", "augment": "off"}, False),
        ({}, False),  # generated stereo pairs
    ],
)
def test_the_vision_family_trains_through_what_the_config_resolves_to(data, augmented):
    config = Config(kind=ModelKind.VISION, data=ImageDataConfig(image_size=16, **data), model=VisionModelConfig(filters=4))
    train = PairSet(images(2).astype(np.uint8), images(2).astype(np.uint8), np.ones(2, np.float32))
    family = family_of(ModelKind.VISION)
    model = family.build(config, train, "float32")
    assert "augmentation" not in {layer.name for layer in all_layers(model)}, "the model that is saved never augments"
    names = {layer.name for layer in all_layers(family.trainer(config, model, train)[0])}
    assert ("augmentation" in names) is augmented
    assert ("random_contrast" in names) is (augmented and config.data.contrast > 0)
