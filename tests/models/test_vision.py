"""The vision model builders: shapes, names, save and reload, parameter counts, sharing, batch norm."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from model_helpers import all_layers, custom_layers, score

from siamese.models.vision import (
    COMPACT_BATCH_NORM_MOMENTUM,
    OUTPUT_LAYER_NAMES,
    build_backbone,
    build_unshared_vision_model,
    build_vision_model,
)
from siamese.sharing import verify_weight_sharing
from siamese.training import task_loss

XCEPTION_PARAMS = 20_861_480  # keras.applications.Xception(weights=None, include_top=False), 3 channels
REFERENCE_PARAMS = 20_865_577  # shared Xception + concat + global average pooling + Dense(1)
REFERENCE_UNSHARED_PARAMS = 41_727_057

# (head, pooling, task, channels, image_size): every head with both tasks and both poolings.
CONFIGS = [
    ("concat", "avg", "similarity", 3, 16),
    ("concat", "max", "regression", 1, 20),
    ("fusion", "avg", "regression", 3, 24),
    ("fusion", "max", "similarity", 1, 16),
    ("symmetric", "max", "similarity", 3, 20),
    ("symmetric", "avg", "regression", 1, 16),
]
CONFIG_IDS = ["-".join(str(value) for value in config) for config in CONFIGS]
HEAD_LAYER_NAMES = {
    "concat": {"concat", "pooling"},
    "fusion": {"map_difference", "map_difference_forward", "map_difference_backward", "map_product", "fusion_features",
               "fusion_conv", "pooling"},
    "symmetric": {"pooling", "symmetric_difference", "symmetric_difference_forward", "symmetric_difference_backward",
                  "symmetric_product", "symmetric_features"},
}  # fmt: skip
COMPACT_LAYER_NAMES = {"backbone", "backbone_pixels", "rescaling"} | {
    f"stage{stage}_{kind}" for stage in (1, 2, 3) for kind in ("conv", "bn", "relu", "pool")
}


def build(head: str, pooling: str, task: str, channels: int, image_size: int, **overrides) -> keras.Model:
    arguments = dict(backbone="compact", image_size=image_size, channels=channels, head=head, pooling=pooling)
    return build_vision_model(task=task, **(arguments | overrides))


def build_unshared(head: str, pooling: str, task: str, channels: int, image_size: int) -> keras.Model:
    return build_unshared_vision_model(
        backbone="compact", image_size=image_size, channels=channels, head=head, pooling=pooling, task=task
    )


def images(count: int, image_size: int, channels: int, seed: int = 0) -> np.ndarray:
    """Raw pixels 0..255 as float32, what the model takes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, image_size, image_size, channels)).astype(np.float32)


def branch_encodings(model: keras.Model, left: np.ndarray, right: np.ndarray, training: bool) -> list[np.ndarray]:
    """The shared backbone's output for each view, computed in one call as the model does."""
    backbone = model.get_layer("backbone")
    encoders = keras.Model(model.inputs, [backbone(model.inputs[0]), backbone(model.inputs[1])])
    return [keras.ops.convert_to_numpy(x) for x in encoders({"left": left, "right": right}, training=training)]


@pytest.mark.parametrize(("head", "pooling", "task", "channels", "image_size"), CONFIGS, ids=CONFIG_IDS)
def test_output_is_one_float32_number_per_pair(head, pooling, task, channels, image_size):
    model = build(head, pooling, task, channels, image_size)
    output = score(model, images(5, image_size, channels), images(5, image_size, channels, seed=1))
    assert output.shape == (5, 1)
    assert output.dtype == np.float32
    assert np.all(np.isfinite(output))
    if task == "similarity":
        assert np.all((output >= 0) & (output <= 1))
    assert [tensor.name for tensor in model.inputs] == ["left", "right"]
    assert tuple(model.inputs[0].shape) == (None, image_size, image_size, channels)
    assert model.name == "siamese_vision"
    output_layer = model.get_layer(OUTPUT_LAYER_NAMES[task])
    assert output_layer is model.layers[-1]
    assert output_layer.activation.__name__ == ("sigmoid" if task == "similarity" else "linear")


def test_output_layer_names_per_task():
    assert OUTPUT_LAYER_NAMES == {"similarity": "similarity", "regression": "prediction"}


@pytest.mark.parametrize(("head", "pooling", "task", "channels", "image_size"), CONFIGS, ids=CONFIG_IDS)
def test_keras_save_and_reload_keeps_predictions_with_keras_layers_only(
    head, pooling, task, channels, image_size, tmp_path
):
    model = build(head, pooling, task, channels, image_size)
    left, right = images(4, image_size, channels), images(4, image_size, channels, seed=1)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # default safe_mode: fails on Lambda layers
    np.testing.assert_array_equal(score(model, left, right), score(reloaded, left, right))
    assert reloaded.count_params() == model.count_params()
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in all_layers(reloaded))
    assert custom_layers(model) == [], "the saved model must load where nothing of this project is imported"
    assert sorted(layer.name for layer in all_layers(reloaded)) == sorted(layer.name for layer in all_layers(model))


@pytest.mark.parametrize(("head", "pooling", "task", "channels", "image_size"), CONFIGS, ids=CONFIG_IDS)
def test_unshared_twin_has_twice_the_backbone_parameters(head, pooling, task, channels, image_size):
    shared = build(head, pooling, task, channels, image_size)
    unshared = build_unshared(head, pooling, task, channels, image_size)
    backbone_params = shared.get_layer("backbone").count_params()
    assert unshared.count_params() == shared.count_params() + backbone_params
    left_backbone, right_backbone = unshared.get_layer("left_backbone"), unshared.get_layer("right_backbone")
    assert left_backbone is not right_backbone
    assert left_backbone.count_params() == right_backbone.count_params() == backbone_params
    assert unshared.name == "unshared_vision"


def test_compact_backbone_maps_pixels_to_an_eighth_of_the_image():
    backbone = build_backbone(backbone="compact", image_size=48, channels=3, filters=16)
    features = keras.ops.convert_to_numpy(backbone(images(2, 48, 3)))
    assert features.shape == (2, 6, 6, 64)
    assert backbone.count_params() == 23_920


def test_conv4_backbone_max_pools_four_times():
    backbone = build_backbone(backbone="conv4", image_size=48, channels=3, filters=16)
    features = keras.ops.convert_to_numpy(backbone(images(2, 48, 3)))
    assert features.shape == (2, 3, 3, 128)
    assert backbone.count_params() == 98_160
    assert all(isinstance(backbone.get_layer(f"stage{stage}_pool"), keras.layers.MaxPooling2D) for stage in (1, 2, 3, 4))


def test_l1_head_weighs_the_flattened_difference_and_is_symmetric():
    """Koch et al.'s head: |a-b| of every location's features into one sigmoid unit."""
    model = build("l1", "flatten", "similarity", 1, 16, backbone="conv4")
    head_names = {layer.name for layer in model.layers} - {"left", "right", "backbone"}
    assert head_names == {"pooling", "l1_difference", "l1_difference_forward", "l1_difference_backward", "similarity"}
    assert isinstance(model.get_layer("pooling"), keras.layers.Flatten)
    assert model.get_layer("similarity").kernel.shape == (128, 1)  # 1x1x128 at 16 pixels: one weight per feature
    left, right = images(6, 16, 1), images(6, 16, 1, seed=1)
    np.testing.assert_allclose(score(model, left, right), score(model, right, left), atol=1e-6)


def test_flatten_pooling_keeps_every_location():
    model = build("symmetric", "flatten", "similarity", 3, 32)
    assert model.get_layer("similarity").kernel.shape == (2 * 4 * 4 * 64, 1)  # [|a-b|, a*b] of a 4x4x64 map


@pytest.mark.parametrize("head", ["concat", "fusion", "symmetric"])
def test_every_layer_has_a_deterministic_name(head):
    """Names are given, not generated: building twice in one process gives the same names."""
    first, second = build(head, "avg", "regression", 3, 16), build(head, "avg", "regression", 3, 16)
    names = [layer.name for layer in all_layers(first)]
    assert names == [layer.name for layer in all_layers(second)]
    assert len(names) == len(set(names))
    assert set(names) == {"left", "right", "prediction"} | COMPACT_LAYER_NAMES | HEAD_LAYER_NAMES[head]


def test_symmetric_head_scores_both_orders_the_same():
    model = build("symmetric", "avg", "similarity", 3, 16)
    left, right = images(6, 16, 3), images(6, 16, 3, seed=1)
    np.testing.assert_allclose(score(model, left, right), score(model, right, left), atol=1e-6)


@pytest.mark.parametrize("head", ["concat", "fusion"])
def test_concat_and_fusion_heads_are_not_symmetric(head):
    keras.utils.set_random_seed(0)
    model = build(head, "avg", "regression", 3, 16)
    left, right = images(6, 16, 3), images(6, 16, 3, seed=1)
    assert np.abs(score(model, left, right) - score(model, right, left)).max() > 1e-4


def test_mixed_precision_keeps_a_float32_output():
    model = build("fusion", "avg", "regression", 3, 16, dtype_policy="mixed_float16")
    assert model.get_layer("backbone").get_layer("stage1_conv").dtype_policy.name == "mixed_float16"
    assert model.get_layer("fusion_conv").dtype_policy.name == "mixed_float16"
    output = score(model, images(4, 16, 3), images(4, 16, 3, seed=1))
    assert output.dtype == np.float32
    assert np.all(np.isfinite(output))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone": "xception", "image_size": 70}, "image_size must be an integer >= 71 for backbone 'xception'"),
        ({"image_size": 15}, "image_size must be an integer >= 16 for backbone 'compact'"),
        ({"backbone": "resnet"}, "backbone must be one of compact, conv4, xception; got 'resnet'"),
        ({"head": "attention"}, "head must be one of concat, fusion, symmetric, l1; got 'attention'"),
        ({"pooling": "sum"}, "pooling must be one of avg, max, flatten; got 'sum'"),
        ({"task": "ranking"}, "task must be one of similarity, regression; got 'ranking'"),
        ({"channels": 4}, r"channels must be 1 \(grayscale\) or 3 \(RGB\), got 4"),
        ({"filters": 0}, "filters must be an integer >= 1, got 0"),
    ],
)
@pytest.mark.parametrize("builder", [build_vision_model, build_unshared_vision_model])
def test_invalid_arguments_raise_value_error(builder, overrides, message):
    arguments = dict(backbone="compact", image_size=16, channels=3, head="fusion", pooling="avg", task="similarity")
    with pytest.raises(ValueError, match=message):
        builder(**(arguments | overrides))


# --- Weight sharing: each verification trains a step and saves and reloads (seconds): once per model.


@pytest.fixture(scope="module", params=["concat", "fusion", "symmetric"])
def shared_report(request):
    task = "regression" if request.param == "fusion" else "similarity"
    model = build(request.param, "avg", task, 3, 16)
    left, right = images(8, 16, 3), images(8, 16, 3, seed=1)
    if task == "regression":
        labels = np.random.default_rng(2).uniform(0, 2, 8).astype(np.float32)
    else:
        labels = np.tile([0.0, 1.0], 4).astype(np.float32)
    return model, verify_weight_sharing(model, left, right, labels, loss=task_loss(task))


def test_siamese_vision_model_passes_weight_sharing_verification(shared_report):
    model, report = shared_report
    assert report.passed, report.failures()
    assert report.encoder_params == model.get_layer("backbone").count_params()
    assert report.total_params == model.count_params()
    assert report.unshared_params == model.count_params() + report.encoder_params


def test_unshared_twin_fails_weight_sharing_verification():
    model = build_unshared("fusion", "avg", "similarity", 3, 16)
    labels = np.tile([0.0, 1.0], 4).astype(np.float32)
    report = verify_weight_sharing(model, images(8, 16, 3), images(8, 16, 3, seed=1), labels)
    assert not report.passed
    failed = {check.name for check in report.checks if not check.passed}
    assert {"same_encoder_object", "shared_variables", "parameter_count"} <= failed
    assert {"after_reload/same_encoder_object", "after_reload/shared_variables"} <= failed


# --- Batch normalisation in the shared backbone (what the module docstring states).


def moving_update(old: np.ndarray, first: np.ndarray, second: np.ndarray, momentum: float) -> np.ndarray:
    """Two successive moving-average updates, `first`'s then `second`'s."""
    return momentum * (momentum * old + (1 - momentum) * first) + (1 - momentum) * second


# Keras runs a functional graph's nodes of equal depth in its own order, not in input order: the
# two backbone calls update the moving statistics left first for concat and fusion, right first
# for symmetric (whose shared pooling layer changes the graph's ordering).
FIRST_VIEW_UPDATED = {"concat": "left", "fusion": "left", "symmetric": "right"}


@pytest.mark.parametrize("head", ["concat", "fusion", "symmetric"])
def test_each_view_updates_the_shared_moving_statistics_with_its_own_batch(head):
    """One step: two moving-average updates of the shared batch norm, each with one view's statistics."""
    model = build(head, "avg", "regression", 1, 16)
    backbone = model.get_layer("backbone")
    batch_norm = backbone.get_layer("stage1_bn")
    assert batch_norm.momentum == COMPACT_BATCH_NORM_MOMENTUM == 0.9
    pre_norm = keras.Model(backbone.input, backbone.get_layer("stage1_conv").output)
    # Bright left and dark right images: the two views' statistics differ clearly.
    left = images(8, 16, 1) * 0.4 + 150
    right = images(8, 16, 1, seed=1) * 0.4
    statistics = {}
    for view, pixels in (("left", left), ("right", right)):
        activations = keras.ops.convert_to_numpy(pre_norm(pixels))  # the weights the step's forward pass uses
        statistics[view] = (activations.mean(axis=(0, 1, 2)), activations.var(axis=(0, 1, 2)))
    old_mean = keras.ops.convert_to_numpy(batch_norm.moving_mean)
    old_variance = keras.ops.convert_to_numpy(batch_norm.moving_variance)

    model.compile(optimizer=keras.optimizers.RMSprop(), loss="mean_squared_error")
    model.train_on_batch({"left": left, "right": right}, np.ones(8, np.float32))

    first = FIRST_VIEW_UPDATED[head]
    second = "right" if first == "left" else "left"
    momentum = batch_norm.momentum
    expected_mean = moving_update(old_mean, statistics[first][0], statistics[second][0], momentum)
    other_order = moving_update(old_mean, statistics[second][0], statistics[first][0], momentum)
    expected_variance = moving_update(old_variance, statistics[first][1], statistics[second][1], momentum)
    assert np.abs(expected_mean - other_order).max() > 1e-3  # the check can tell the orders apart
    np.testing.assert_allclose(keras.ops.convert_to_numpy(batch_norm.moving_mean), expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(batch_norm.moving_variance), expected_variance, rtol=1e-4, atol=1e-5
    )


def test_training_mode_normalises_each_view_alone_and_inference_alike():
    model = build("fusion", "avg", "similarity", 3, 16)
    model.compile(optimizer=keras.optimizers.RMSprop(), loss="binary_crossentropy")
    model.train_on_batch({"left": images(8, 16, 3), "right": images(8, 16, 3, seed=1)}, np.ones(8, np.float32))
    probe, other, another = images(6, 16, 3, seed=2), images(6, 16, 3, seed=3) * 0.3, images(6, 16, 3, seed=4)

    # Training mode: the left view's encoding depends on the left batch only, not on the right one.
    with_other, _ = branch_encodings(model, probe, other, training=True)
    with_another, _ = branch_encodings(model, probe, another, training=True)
    np.testing.assert_allclose(with_other, with_another, atol=1e-6)

    # Inference: both views use the shared moving statistics, so one image encodes the same on either side.
    left, right = branch_encodings(model, probe, probe, training=False)
    np.testing.assert_array_equal(left, right)
    assert np.abs(left - with_other).max() > 1e-3  # moving statistics are not the batch's


# --- Xception: the reference backbone (built, never trained, in a few seconds).


def test_xception_takes_grayscale_and_names_its_layers_the_same_every_build():
    first = build_backbone(backbone="xception", image_size=71, channels=1)
    second = build_backbone(backbone="xception", image_size=71, channels=1)
    assert first.count_params() == XCEPTION_PARAMS - 3 * 3 * 2 * 32  # the first convolution sees 1 channel, not 3
    features = keras.ops.convert_to_numpy(first(images(2, 71, 1)))
    assert features.shape == (2, 3, 3, 2048)
    names = [layer.name for layer in all_layers(first)]
    assert names == [layer.name for layer in all_layers(second)]
    assert len(names) == len(set(names))
    assert {"xception", "xception_input", "residual_conv1", "residual_bn4", "residual_add12"} <= set(names)


def test_xception_under_mixed_precision_leaves_the_global_policy_alone():
    before = keras.config.dtype_policy().name
    backbone = build_backbone(backbone="xception", image_size=71, channels=3, dtype_policy="mixed_float16")
    assert backbone.get_layer("xception").get_layer("block1_conv1").dtype_policy.name == "mixed_float16"
    assert keras.config.dtype_policy().name == before


def test_reference_model_at_250x250x3():
    """The original script's model: Xception on two 250x250 RGB cameras, concatenated maps (builds in seconds)."""
    model = build_vision_model(
        backbone="xception", image_size=250, channels=3, head="concat", pooling="avg", task="similarity"
    )
    backbone = model.get_layer("backbone")
    assert model.count_params() == REFERENCE_PARAMS  # the backbone counted once, plus Dense(1) on 4096 features
    assert backbone.count_params() == backbone.get_layer("xception").count_params() == XCEPTION_PARAMS
    assert tuple(backbone.output.shape) == (None, 8, 8, 2048)
    assert tuple(model.get_layer("concat").output.shape) == (None, 8, 8, 4096)
    assert tuple(model.output.shape) == (None, 1)
    unshared = build_unshared_vision_model(
        backbone="xception", image_size=250, channels=3, head="concat", pooling="avg", task="similarity"
    )
    assert unshared.count_params() == REFERENCE_UNSHARED_PARAMS
