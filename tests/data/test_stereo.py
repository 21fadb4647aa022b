"""Generated stereo pairs: shapes, determinism, labels, disparity targets and the stereo geometry."""

from __future__ import annotations

import numpy as np
import pytest

from siamese.data.sequences import PairSet
from siamese.data.stereo import (
    StereoScenes,
    generate_stereo_pairs,
    max_disparity,
    render_stereo_scenes,
)

SMALL = {"num_pairs": 40, "image_size": 24, "channels": 3, "noise": 0.02}


def generate(task: str = "similarity", seed: int = 0, **overrides) -> PairSet:
    return generate_stereo_pairs(task=task, rng=np.random.default_rng(seed), **(SMALL | overrides))


def render(seed: int = 0, num_scenes: int = 40, image_size: int = 24, channels: int = 3) -> StereoScenes:
    """The scenes `generate(seed=seed)` shows: rendering is the generator's first use of the rng."""
    return render_stereo_scenes(
        num_scenes=num_scenes, image_size=image_size, channels=channels, rng=np.random.default_rng(seed)
    )


@pytest.mark.parametrize("task", ["similarity", "regression"])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_dtypes(task, channels):
    pairs = generate(task, channels=channels)
    assert pairs.left.shape == pairs.right.shape == (40, 24, 24, channels)
    assert pairs.left.dtype == pairs.right.dtype == np.uint8
    assert pairs.labels.shape == (40,)
    assert pairs.labels.dtype == np.float32
    assert set(pairs.inputs()) == {"left", "right"}


@pytest.mark.parametrize("task", ["similarity", "regression"])
def test_same_seed_gives_identical_pairs_and_different_seed_different_ones(task):
    first, second, other = generate(task, seed=3), generate(task, seed=3), generate(task, seed=4)
    for name in ("left", "right", "labels"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not np.array_equal(first.left, other.left)
    assert not np.array_equal(first.right, other.right)


def test_rendering_does_not_depend_on_the_chunk_size(monkeypatch):
    whole = render(num_scenes=12)
    monkeypatch.setattr("siamese.data.stereo.CHUNK", 5)
    chunked = render(num_scenes=12)
    for name in ("left", "right", "left_disparity", "right_disparity"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(chunked, name))


def test_similarity_labels_are_balanced_and_shuffled():
    labels = generate("similarity", num_pairs=40).labels
    assert np.sum(labels == 1) == np.sum(labels == 0) == 20
    assert not np.array_equal(labels, np.sort(labels)[::-1])


def test_negatives_pair_a_left_view_with_another_scenes_right_view():
    """Each right view is matched to the rendered scene it correlates with best."""
    pairs, scenes = generate("similarity", noise=0.0), render()
    rendered = scenes.right.reshape(len(scenes.right), -1)
    shown = pairs.right.reshape(len(pairs.right), -1).astype(np.float64)
    correlation = np.corrcoef(shown, rendered)[: len(shown), len(shown) :]
    source = np.argmax(correlation, axis=1)
    positives = pairs.labels == 1
    np.testing.assert_array_equal(source[positives], np.flatnonzero(positives))
    assert np.all(source[~positives] != np.flatnonzero(~positives))
    # Every right view is shown exactly once: the two labels' right views look alike.
    assert sorted(source) == list(range(len(pairs)))


def test_regression_target_is_the_mean_disparity_over_the_left_view():
    pairs, scenes = generate("regression"), render()
    np.testing.assert_allclose(pairs.labels, scenes.left_disparity.mean(axis=(1, 2)), rtol=1e-6)
    assert np.all((pairs.labels >= 0) & (pairs.labels <= max_disparity(24)))
    assert pairs.labels.std() > 0.3  # scenes differ in depth: a target worth predicting


def test_max_disparity_scales_with_the_image():
    assert max_disparity(16) == 2
    assert max_disparity(48) == 6
    assert max_disparity(250) == 31


def test_disparities_put_shapes_in_front_of_the_background():
    scenes = render()
    background = scenes.left_disparity.min(axis=(1, 2))
    assert np.all(scenes.left_disparity.max(axis=(1, 2)) > background)  # every scene has a visible shape
    assert scenes.left_disparity.max() <= max_disparity(24)


@pytest.mark.parametrize("channels", [1, 3])
def test_right_view_is_the_left_view_shifted_by_the_disparity_where_nothing_occludes(channels):
    """left[y, x] == right[y, x - d]: a surface at disparity d seen by both cameras."""
    scenes = render(channels=channels, image_size=32)
    scene, row, column = np.indices(scenes.left_disparity.shape)
    disparity = scenes.left_disparity
    target = column - disparity
    inside = target >= 0
    visible = np.zeros_like(inside)
    visible[inside] = scenes.right_disparity[scene[inside], row[inside], target[inside]] == disparity[inside]
    assert visible.mean() > 0.8  # most of the scene is seen by both cameras
    np.testing.assert_array_equal(
        scenes.left[scene[visible], row[visible], column[visible]],
        scenes.right[scene[visible], row[visible], target[visible]],
    )
    # Occlusion happens: some left pixels are hidden from the right camera by a nearer surface.
    assert (inside & ~visible).any()


def test_without_noise_the_cameras_differ_by_a_gain_and_an_offset_only():
    """Where both cameras see a surface, right = a * left + b per pair (up to uint8 rounding)."""
    pairs, scenes = generate("regression", noise=0.0), render()
    _, row, column = np.indices(scenes.left_disparity.shape)
    target = column - scenes.left_disparity
    for i in range(len(pairs)):
        d = scenes.left_disparity[i]
        inside = target[i] >= 0
        visible = np.zeros_like(inside)
        visible[inside] = scenes.right_disparity[i, row[i][inside], target[i][inside]] == d[inside]
        left = pairs.left[i][row[i][visible], column[i][visible]].astype(np.float64).ravel()
        right = pairs.right[i][row[i][visible], target[i][visible]].astype(np.float64).ravel()
        unclipped = (left > 0) & (left < 255) & (right > 0) & (right < 255)
        gain, offset = np.polyfit(left[unclipped], right[unclipped], 1)
        assert 0.85 < gain < 1.15
        assert np.max(np.abs(gain * left[unclipped] + offset - right[unclipped])) <= 2.0


def test_noise_is_the_share_of_the_pixel_range_given():
    clean, noisy = generate("regression", noise=0.0), generate("regression", noise=0.05)
    np.testing.assert_array_equal(clean.labels, noisy.labels)
    # The left camera draws its gain and offset before its noise: only the noise differs.
    difference = noisy.left.astype(np.float64) - clean.left
    unclipped = (clean.left > 30) & (clean.left < 225)
    assert difference[unclipped].std() == pytest.approx(0.05 * 255, rel=0.1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_pairs": 3}, r"^data\.num_pairs must be an integer >= 4, got 3"),
        ({"num_pairs": 10.0}, r"^data\.num_pairs must be an integer >= 4, got 10.0"),
        ({"image_size": 15}, r"^data\.image_size must be an integer >= 16, got 15"),
        ({"channels": 2}, r"^data\.channels must be 1 \(grayscale\) or 3 \(RGB\), got 2"),
        ({"noise": -0.1}, r"^data\.noise must be a number in \[0, 1\) .*got -0.1"),
        ({"noise": 1.0}, r"^data\.noise must be a number in \[0, 1\) .*got 1.0"),
        ({"task": "ranking"}, r"^data\.task must be one of similarity, regression; got 'ranking'"),
    ],
)
def test_invalid_arguments_raise_value_error(overrides, message):
    arguments = SMALL | {"task": "similarity"} | overrides
    with pytest.raises(ValueError, match=message):
        generate_stereo_pairs(rng=np.random.default_rng(0), **arguments)
