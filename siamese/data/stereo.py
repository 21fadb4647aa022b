"""Generated stereo pairs: two cameras looking at one textured scene, with a learnable target.

A scene is a textured background plane (far: small disparity) and a few textured rectangles and
ellipses at random depths, painted far to near so nearer shapes occlude farther ones. The left
camera sees the scene as drawn; the right camera sees every surface shifted left by its own
disparity (nearer surfaces shift more), so a shape uncovers background on one side and hides
some on the other, as real stereo does. Disparities are whole pixels, which keeps the geometry
exact: where nothing is occluded, `right[y, x] == left[y, x + d]`. Each camera then applies its
own gain and offset (small photometric differences) and independent sensor noise.

Targets. `regression`: the scene's mean disparity over the left view's pixels, in pixels,
between 0 and `max_disparity(image_size)`. `similarity`: 1 for the two views of one scene, 0 for
the left view of one scene with the right view of another (balanced, shuffled). Telling the two
apart needs comparing the views, as does measuring the disparity: neither can be read off one
view on its own.

Textures are sums of a few random sinusoidal gratings, evaluated as an outer product of complex
exponentials (one batched matrix product per layer), so 2000 pairs of 48x48 take one to two
seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siamese.config import MIN_IMAGE_SIZE, Task
from siamese.data.sequences import PairSet

MAX_DISPARITY_SHARE = 1 / 8  # nearest surfaces shift by an eighth of the image width
MIN_MAX_DISPARITY = 2  # small images still get a background and a nearer depth
BACKGROUND_DISPARITY_SHARE = 1 / 3  # the background's disparity is at most this share of the maximum
MAX_SHAPES = 3  # shapes per scene: 1 to MAX_SHAPES
SHAPE_HALF_SIZE = (0.12, 0.3)  # half width/height of a shape, as shares of the image size
GRATINGS = 4  # sinusoids summed per texture
# Texture periods as shares of the image size (6 to 24 pixels at 48), never finer than 3 pixels
# (finer would alias). Coarse enough that a shift of a few pixels changes a texture smoothly:
# finer textures (1/16 to 1/4) made the learned disparity estimate noticeably worse.
GRATING_PERIOD = (1 / 8, 1 / 2)
MIN_GRATING_PERIOD = 3.0
CONTRAST = (0.12, 0.25)  # texture amplitude around a surface's colour, in pixel range
COLOUR = (0.2, 0.8)
# Each camera's gain and offset: small, as between two cameras of one rig. At +-10% the
# difference between the views was as large as a one-pixel shift's and hid the disparity.
GAIN = (0.95, 1.05)
OFFSET = (-0.02, 0.02)  # in pixel range
CHUNK = 256  # scenes rendered at once: bounds memory for large images


@dataclass(frozen=True)
class StereoScenes:
    """Rendered views before the cameras' photometric differences and noise.

    left, right: `(n, size, size, channels)` float32 in 0..1. left_disparity, right_disparity:
    `(n, size, size)` int32, the disparity of the surface each view sees at each pixel.
    """

    left: np.ndarray
    right: np.ndarray
    left_disparity: np.ndarray
    right_disparity: np.ndarray


def max_disparity(image_size: int) -> int:
    """The largest disparity (in pixels) of a scene at `image_size`: the nearest possible surface."""
    return max(MIN_MAX_DISPARITY, round(image_size * MAX_DISPARITY_SHARE))


def generate_stereo_pairs(
    *, num_pairs: int, image_size: int, channels: int, task: Task | str, noise: float, rng: np.random.Generator
) -> PairSet:
    """Generate `num_pairs` stereo pairs for `task`, deterministic given `rng`'s seed.

    Args:
        num_pairs: pairs to generate, >= 4 (similarity swaps right views between >= 2 negatives).
        image_size: height and width in pixels, >= 16.
        channels: 1 (grayscale) or 3 (RGB).
        task: `similarity` (0/1 labels) or `regression` (mean disparity in pixels).
        noise: std of each camera's sensor noise, as a share of the pixel range (0 for none).
        rng: the only source of randomness.

    Returns:
        A `PairSet`: left and right `(num_pairs, image_size, image_size, channels)` uint8,
        labels `(num_pairs,)` float32.

    Raises:
        ValueError: an argument is out of range, naming its config key and what is allowed.
    """
    _check_integer("data.num_pairs", num_pairs, minimum=4)
    _check_image(image_size, channels)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 1:
        raise ValueError(f"data.noise must be a number in [0, 1) (a share of the pixel range), got {noise!r}")
    try:
        task = Task(task)
    except ValueError:
        allowed = ", ".join(member.value for member in Task)
        raise ValueError(f"data.task must be one of {allowed}; got {task!r}") from None
    scenes = render_stereo_scenes(num_scenes=num_pairs, image_size=image_size, channels=channels, rng=rng)
    left = _camera(scenes.left, noise, rng)
    right = _camera(scenes.right, noise, rng)
    if task is Task.REGRESSION:
        labels = scenes.left_disparity.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
        return PairSet(left, right, labels)
    labels = rng.permutation(np.arange(num_pairs) < num_pairs // 2).astype(np.float32)
    negatives = rng.permutation(np.flatnonzero(labels == 0))
    # Each negative takes the right view of the next negative's scene: a different scene, and
    # every right view still appears once, so the two labels' right views look alike.
    right[negatives] = right[np.roll(negatives, -1)]
    return PairSet(left, right, labels)


def render_stereo_scenes(*, num_scenes: int, image_size: int, channels: int, rng: np.random.Generator) -> StereoScenes:
    """Render `num_scenes` random scenes as the left and right cameras see them (no noise).

    All random parameters are drawn first and the pixels rendered in chunks, so the result
    does not depend on the chunk size.

    Raises:
        ValueError: an argument is out of range, naming it and what is allowed.
    """
    _check_integer("num_scenes", num_scenes, minimum=1)
    _check_image(image_size, channels)
    layers = _draw_layers(num_scenes, image_size, channels, rng)
    shape = (num_scenes, image_size, image_size)
    scenes = StereoScenes(
        left=np.empty(shape + (channels,), np.float32),
        right=np.empty(shape + (channels,), np.float32),
        left_disparity=np.empty(shape, np.int32),
        right_disparity=np.empty(shape, np.int32),
    )
    for start in range(0, num_scenes, CHUNK):
        chunk = slice(start, start + CHUNK)
        _render_chunk({name: value[chunk] for name, value in layers.items()}, image_size, scenes, chunk)
    return scenes


def _check_integer(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_image(image_size: int, channels: int) -> None:
    _check_integer("data.image_size", image_size, minimum=MIN_IMAGE_SIZE)
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")


def _draw_layers(n: int, size: int, channels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every random parameter of `n` scenes; layer 0 is the background, then shapes far to near.

    Shapes a scene does not use get an empty extent; their parameters are drawn anyway so that
    every scene consumes the generator alike.
    """
    num_layers = 1 + MAX_SHAPES
    largest = max_disparity(size)
    background = rng.integers(0, int(largest * BACKGROUND_DISPARITY_SHARE) + 1, size=n)
    # Nearer than the background, sorted so painting in layer order is painting far to near.
    shapes = np.sort(rng.integers(background[:, None] + 1, largest + 1, size=(n, MAX_SHAPES)), axis=1)
    used = np.arange(MAX_SHAPES) < rng.integers(1, MAX_SHAPES + 1, size=(n, 1))
    half_size = rng.uniform(*SHAPE_HALF_SIZE, size=(n, MAX_SHAPES, 2)) * size * used[..., None]
    period = np.maximum(rng.uniform(*GRATING_PERIOD, size=(n, num_layers, GRATINGS)) * size, MIN_GRATING_PERIOD)
    angle = rng.uniform(0, np.pi, size=(n, num_layers, GRATINGS))
    return {
        "disparity": np.concatenate([background[:, None], shapes], axis=1).astype(np.int32),
        "centre": rng.uniform(0, size, size=(n, MAX_SHAPES, 2)),
        "half_size": half_size,
        "ellipse": rng.random((n, MAX_SHAPES)) < 0.5,
        "frequency_x": 2 * np.pi * np.cos(angle) / period,
        "frequency_y": 2 * np.pi * np.sin(angle) / period,
        "phase": rng.uniform(0, 2 * np.pi, size=(n, num_layers, GRATINGS)),
        "contrast": rng.uniform(*CONTRAST, size=(n, num_layers)),
        "colour": rng.uniform(*COLOUR, size=(n, num_layers, channels)),
    }


def _render_chunk(layers: dict[str, np.ndarray], size: int, scenes: StereoScenes, chunk: slice) -> None:
    """Paint each layer into both views, far to near.

    Every layer is evaluated once on a grid `max_disparity` columns wider than the image; the
    left view reads columns `x`, the right view columns `x + d` of the layer's disparity `d`.
    Both views read the very same values, so the geometry holds exactly.
    """
    n = len(layers["disparity"])
    width = size + max_disparity(size)
    xs, ys = np.arange(width, dtype=np.float64), np.arange(size, dtype=np.float64)
    for layer in range(1 + MAX_SHAPES):
        disparity = layers["disparity"][:, layer]
        luminance = _luminance(layers, layer, xs, ys)  # (n, size, width)
        covered = np.ones((n, size, width), bool) if layer == 0 else _shape_mask(layers, layer - 1, xs, ys)
        colour = layers["colour"][:, layer, None, None, :].astype(np.float32)
        depth = disparity[:, None, None]
        for view, shift, image, disparity_map in (
            (0, np.zeros_like(disparity), scenes.left, scenes.left_disparity),
            (1, disparity, scenes.right, scenes.right_disparity),
        ):
            values = _columns_from(luminance, shift, size)[..., None] + colour
            if layer == 0:
                image[chunk] = values
                disparity_map[chunk] = np.broadcast_to(depth, (n, size, size))
                continue
            mask = _columns_from(covered, shift, size)
            np.copyto(image[chunk], values, where=mask[..., None])
            np.copyto(disparity_map[chunk], np.broadcast_to(depth, mask.shape), where=mask)
    np.clip(scenes.left[chunk], 0, 1, out=scenes.left[chunk])
    np.clip(scenes.right[chunk], 0, 1, out=scenes.right[chunk])


def _columns_from(array: np.ndarray, start: np.ndarray, size: int) -> np.ndarray:
    """`array[i, :, start[i] : start[i] + size]` for every scene `i`, one slice per distinct start."""
    if not start.any():
        return array[:, :, :size]
    out = np.empty(array.shape[:2] + (size,), array.dtype)
    for value in np.unique(start):
        rows = start == value
        out[rows] = array[rows, :, value : value + size]
    return out


def _luminance(layers: dict[str, np.ndarray], layer: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """`contrast * sum_k cos(fx_k x + fy_k y + phase_k) / sqrt(K / 2)`: `(n, h, w)` float32.

    cos(a + b) is the real part of e^(ia) e^(ib), so the sum is one complex matrix product of a
    per-row and a per-column factor instead of `K * h * w` cosines per scene.
    """
    rows = np.exp(1j * (layers["frequency_y"][:, layer, :, None] * ys + layers["phase"][:, layer, :, None]))
    columns = np.exp(1j * layers["frequency_x"][:, layer, :, None] * xs)
    gratings = np.einsum("nkh,nkw->nhw", rows.astype(np.complex64), columns.astype(np.complex64)).real
    return gratings * (layers["contrast"][:, layer, None, None] / np.sqrt(GRATINGS / 2)).astype(np.float32)


def _shape_mask(layers: dict[str, np.ndarray], shape: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Where shape `shape` covers the (widened) left-camera grid: `(n, h, w)` bool."""
    centre_x, centre_y = (layers["centre"][:, shape, axis, None, None] for axis in (0, 1))
    half_x, half_y = (layers["half_size"][:, shape, axis, None, None] for axis in (0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):  # unused shapes have zero extent
        dx = (xs[None, None, :] - centre_x) / half_x
        dy = (ys[None, :, None] - centre_y) / half_y
    ellipse = layers["ellipse"][:, shape, None, None]
    inside = np.where(ellipse, dx**2 + dy**2 <= 1, (np.abs(dx) <= 1) & (np.abs(dy) <= 1))
    return inside & (half_x > 0)


def _camera(view: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """One camera's gain, offset and sensor noise, quantised to uint8 pixels."""
    n = len(view)
    gain = rng.uniform(*GAIN, size=(n, 1, 1, 1)).astype(np.float32)
    offset = rng.uniform(*OFFSET, size=(n, 1, 1, 1)).astype(np.float32)
    pixels = view * gain
    pixels += offset
    if noise > 0:
        noise_pixels = rng.standard_normal(view.shape, dtype=np.float32)
        noise_pixels *= np.float32(noise)
        pixels += noise_pixels
    np.clip(pixels, 0, 1, out=pixels)
    pixels *= 255
    return np.rint(pixels, out=pixels).astype(np.uint8)
