"""Image pairs from files: reading, pair CSVs, class folders, streaming, and every error's message."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese.data import image_pairs
from siamese.data.image_pairs import (
    DEFAULT_PAIR_RANGE,
    PAIRS_PER_IMAGE,
    ImageDataError,
    ImagePairFiles,
    chosen_split,
    default_pair_count,
    pairs_from_class_folders,
    read_image,
    read_pair_csv,
    validate_images,
)
from siamese.data.sequences import split_pairs

GRAY_LEFT, GRAY_RIGHT = 30, 220
RGB_LEFT, RGB_RIGHT = (200, 100, 50), (20, 60, 240)
FORMATS = [
    (".png", "L"), (".png", "RGB"), (".jpg", "L"), (".jpg", "RGB"), (".pgm", "L"), (".ppm", "RGB"), (".bmp", "RGB")
]
HEADER = "left_path,right_path,label\n"
SIZE = {"image_size": 8, "channels": 3}  # the size pair files are read at, where the test does not read them


def write_image(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def two_tone(mode: str, width: int = 16, height: int = 12) -> np.ndarray:
    """Left half one colour, right half another: resizing must keep them apart."""
    left, right = (GRAY_LEFT, GRAY_RIGHT) if mode == "L" else (RGB_LEFT, RGB_RIGHT)
    pixels = np.empty((height, width) if mode == "L" else (height, width, 3), np.uint8)
    pixels[:, : width // 2], pixels[:, width // 2 :] = left, right
    return pixels


def luminance(rgb: tuple[int, int, int]) -> float:
    """PIL's RGB -> L conversion (ITU-R 601-2)."""
    return rgb[0] * 0.299 + rgb[1] * 0.587 + rgb[2] * 0.114


def expected_colour(source_mode: str, channels: int, side: str) -> np.ndarray:
    colours = {"L": {"left": GRAY_LEFT, "right": GRAY_RIGHT}, "RGB": {"left": RGB_LEFT, "right": RGB_RIGHT}}
    value = colours[source_mode][side]
    if source_mode == "L":
        return np.full(channels, value, float)
    return np.array([luminance(value)] if channels == 1 else value, float)


def noise_image(path: Path, seed: int, size: int = 8) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return write_image(path, pixels)


def truncate(path: Path) -> Path:
    """Keep the header, cut the pixel data: PIL opens it, decoding fails."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# read_image


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("suffix", "source_mode"), FORMATS)
def test_read_image_converts_channels_and_resizes_every_format(tmp_path, suffix, source_mode, channels):
    path = write_image(tmp_path / f"image{suffix}", two_tone(source_mode))
    pixels = read_image(path, image_size=8, channels=channels)
    assert pixels.shape == (8, 8, channels)
    assert pixels.dtype == np.uint8
    tolerance = 8 if suffix == ".jpg" else 1
    for column, side in ((0, "left"), (-1, "right")):  # the outer columns keep each half's colour
        expected = np.tile(expected_colour(source_mode, channels, side), (8, 1))
        np.testing.assert_allclose(pixels[:, column], expected, atol=tolerance)


def test_read_image_accepts_a_string_path_and_upsamples(tmp_path):
    path = write_image(tmp_path / "small.png", two_tone("L", width=8, height=8))
    assert read_image(str(path), image_size=24, channels=1).shape == (24, 24, 1)


@pytest.mark.parametrize("suffix", [".png", ".pgm"])
def test_sixteen_bit_grayscale_keeps_its_range(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(path)
    pixels = read_image(path, image_size=8, channels=1)
    np.testing.assert_allclose(pixels, 128, atol=1)  # convert("L") alone would clip it to 255


def test_transparent_pixels_become_white_not_black(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)  # transparent black...
    rgba[:, :4, 3] = 255  # ...except an opaque black left half: ink on a transparent sheet
    pixels = read_image(write_image(tmp_path / "signature.png", rgba), image_size=8, channels=1)
    assert pixels[:, 0].max() == 0
    assert pixels[:, -1].min() == 255


def make_broken(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "missing.png"
    if kind == "folder":
        (tmp_path / "folder.png").mkdir()
        return tmp_path / "folder.png"
    if kind == "text":
        (tmp_path / "notes.png").write_text("not an image")
        return tmp_path / "notes.png"
    return truncate(noise_image(tmp_path / "truncated.png", seed=0, size=24))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "does not exist"),
        ("folder", "is a folder"),
        ("text", "not an image"),
        ("truncated", "cannot be read"),
    ],
)
def test_read_image_errors_name_the_file(tmp_path, kind, reason):
    path = make_broken(tmp_path, kind)
    with pytest.raises(ImageDataError) as error:
        read_image(path, image_size=8, channels=3)
    assert str(path) in str(error.value)
    assert reason in str(error.value)


@pytest.mark.parametrize(
    ("image_size", "channels", "name"), [(8, 2, "channels"), (0, 3, "image_size"), (8.0, 3, "image_size")]
)
def test_read_image_rejects_bad_arguments(tmp_path, image_size, channels, name):
    path = write_image(tmp_path / "a.png", two_tone("L"))
    with pytest.raises(ValueError, match=name):
        read_image(path, image_size=image_size, channels=channels)


def test_validate_images_lists_the_first_five_bad_files_and_the_count(tmp_path):
    good = noise_image(tmp_path / "good.png", seed=0)
    bad = []
    for index in range(7):
        bad.append(tmp_path / f"bad{index}.png")
        bad[-1].write_text("not an image")
    validate_images([good, good], **SIZE)  # a readable list passes
    with pytest.raises(ImageDataError) as error:
        validate_images([good, *bad, bad[0]], **SIZE)
    message = str(error.value)
    assert "7 image file(s) cannot be read" in message  # duplicates counted once
    assert all(str(path) in message for path in bad[:5])
    assert str(bad[5]) not in message and "and 2 more" in message
    assert str(good) not in message


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".pgm"])
def test_validate_images_decodes_every_pixel_so_a_truncated_file_is_named(tmp_path, suffix):
    good = noise_image(tmp_path / f"good{suffix}", seed=0, size=64)
    truncated = truncate(noise_image(tmp_path / f"truncated{suffix}", seed=1, size=64))
    with Image.open(truncated) as image:
        assert image.size == (64, 64)  # its header opens: a header check would pass it
    with pytest.raises(ImageDataError) as error:
        validate_images([good, truncated], image_size=8, channels=1)  # a JPEG decodes at 1/8 scale: still found
    message = str(error.value)
    assert f"1 image file(s) cannot be read: {truncated} (image file is truncated" in message
    assert str(good) not in message


def test_validate_images_checks_the_size_it_is_given(tmp_path):
    with pytest.raises(ValueError, match="data.channels must be 1"):
        validate_images([noise_image(tmp_path / "a.png", seed=0)], image_size=8, channels=2)


# Pair CSVs


@pytest.fixture
def csv_folder(tmp_path) -> Path:
    """A folder holding a CSV's images: a.png, b.jpg, c.pgm, broken.png (not an image), truncated.png (header only)."""
    write_image(tmp_path / "images" / "a.png", two_tone("RGB"))
    write_image(tmp_path / "images" / "b.jpg", two_tone("RGB"))
    write_image(tmp_path / "images" / "c.pgm", two_tone("L"))
    (tmp_path / "images" / "broken.png").write_text("not an image")
    truncate(noise_image(tmp_path / "images" / "truncated.png", seed=0, size=24))
    return tmp_path


def write_csv(folder: Path, text: str) -> Path:
    path = folder / "pairs.csv"
    path.write_text(text)
    return path


def test_read_pair_csv_resolves_relative_paths_from_the_csvs_folder(csv_folder, tmp_path_factory, monkeypatch):
    absolute = csv_folder / "images" / "c.pgm"
    rows = f"images/a.png,x,images/b.jpg,1\n\n {absolute} ,y,./images/a.png,0\n"  # a blank line, padded cells
    path = write_csv(csv_folder, "left_path,note,right_path,label\n" + rows)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # relative to the CSV, not the working directory
    pairs = read_pair_csv(path, "similarity", **SIZE)
    images = csv_folder / "images"
    assert list(pairs.left) == [str(images / "a.png"), str(absolute)]
    assert list(pairs.right) == [str(images / "b.jpg"), str(images / "a.png")]
    assert pairs.labels.dtype == np.float32
    np.testing.assert_array_equal(pairs.labels, [1, 0])
    assert len(pairs) == 2


def test_read_pair_csv_takes_any_finite_number_for_regression(csv_folder):
    path = write_csv(csv_folder, HEADER + "images/a.png,images/b.jpg,2.5\nimages/a.png,images/c.pgm,-1e-3\n")
    np.testing.assert_allclose(read_pair_csv(path, "regression", **SIZE).labels, [2.5, -1e-3])
    with pytest.raises(ImageDataError, match=r"data\.task 'similarity' needs .*line 2 \(2\.5\), line 3 \(-0\.001\).*set data\.task to 'regression'"):
        read_pair_csv(path, "similarity", **SIZE)


CSV_ERRORS = {
    "missing columns": (
        "left,right,label\nimages/a.png,images/b.jpg,1\n",
        [r"no column left_path, right_path in its header \(line 1\)", r"columns present: 'left', 'right', 'label'"],
    ),
    "no header": ("images/a.png,images/b.jpg,1\n", ["no column left_path, right_path, label", "looks like data"]),
    "no rows": (HEADER + "\n", ["has a header but no rows"]),
    "empty and non-numeric labels": (
        HEADER + "images/a.png,images/b.jpg,1\n\nimages/a.png,images/b.jpg,\nimages/a.png,images/b.jpg,yes\n"
        "images/a.png,images/b.jpg,nan\n",
        [r"3 row\(s\) have an empty or non-numeric label: line 4 \(''\), line 5 \('yes'\), line 6 \('nan'\)"],
    ),
    "labels not 0/1": (
        HEADER + "images/a.png,images/b.jpg,1\nimages/a.png,images/b.jpg,2\n",
        [r"labels 0 or 1.*line 3 \(2\)"],
    ),
    "empty paths": (
        HEADER + "images/a.png,images/b.jpg,1\nimages/a.png, ,0\n",
        [r"1 empty image path\(s\): line 3 \(right_path\)"],
    ),
    "missing images": (
        HEADER + "images/a.png,images/b.jpg,1\nimages/gone.png,images/a.png,0\n",
        [r"1 image file\(s\) do not exist: line 3 left_path 'images/gone.png'", "relative paths are read from"],
    ),
    "unreadable images": (
        HEADER + "images/a.png,images/broken.png,1\n",
        [r"broken\.png \(not an image PIL can read\)"],
    ),
    "truncated images": (
        HEADER + "images/a.png,images/b.jpg,1\nimages/truncated.png,images/a.png,0\n",
        [r"1 image file\(s\) cannot be read: \S*images/truncated\.png \(image file is truncated"],
    ),
}


@pytest.mark.parametrize("case", CSV_ERRORS)
def test_read_pair_csv_errors_name_the_csv_and_the_problem(csv_folder, case):
    text, patterns = CSV_ERRORS[case]
    path = write_csv(csv_folder, text)
    with pytest.raises(ImageDataError) as error:
        read_pair_csv(path, "similarity", **SIZE)
    message = str(error.value)
    assert str(path) in message
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


def test_read_pair_csv_lists_five_bad_rows_and_counts_them_all(csv_folder):
    path = write_csv(csv_folder, HEADER + "images/a.png,images/b.jpg,x\n" * 8)
    with pytest.raises(ImageDataError, match=r"8 row\(s\).*line 2 .*line 6 \('x'\) and 3 more") as error:
        read_pair_csv(path, "regression", **SIZE)
    assert "line 7" not in str(error.value)


def test_read_pair_csv_reports_a_missing_or_unparseable_file(csv_folder):
    with pytest.raises(ImageDataError, match=r"pair CSV .*nowhere\.csv does not exist"):
        read_pair_csv(csv_folder / "nowhere.csv", "similarity", **SIZE)
    binary = csv_folder / "images" / "a.png"  # an image given where the CSV belongs
    with pytest.raises(ImageDataError, match=rf"pair CSV {re.escape(str(binary))} cannot be parsed"):
        read_pair_csv(binary, "similarity", **SIZE)
    with pytest.raises(ValueError, match="data.task must be one of similarity, regression"):
        read_pair_csv(csv_folder / "nowhere.csv", "ranking", **SIZE)


# ImagePairFiles


def test_save_and_load_round_trip_paths_and_exact_labels(tmp_path):
    awkward = [str(tmp_path / "a,1.png"), str(tmp_path / 'q"d.png')]  # a comma and a quote: CSV quoting
    pairs = ImagePairFiles([awkward[0], "/x/b.png"], ["/x/c.png", awkward[1]], [0.1, 1 / 3], image_size=8, channels=1)
    path = tmp_path / f"pairs{ImagePairFiles.suffix}"
    assert pairs.save(path) == path
    loaded = ImagePairFiles.load(path, image_size=8, channels=1)  # images need not exist: load does not open them
    np.testing.assert_array_equal(loaded.left, pairs.left)
    np.testing.assert_array_equal(loaded.right, pairs.right)
    np.testing.assert_array_equal(loaded.labels, pairs.labels)
    assert (loaded.image_size, loaded.channels) == (8, 1)
    empty = pairs.take(np.array([], int))
    assert (empty.image_size, empty.channels) == (8, 1)  # a subset is read at the same size
    assert len(ImagePairFiles.load(empty.save(tmp_path / "empty.csv"), image_size=8, channels=1)) == 0  # an unused split
    assert empty.head(4).left.shape == (0, 8, 8, 1)


def test_take_selects_pairs_by_indices_or_slice():
    pairs = ImagePairFiles(["a", "b", "c"], ["d", "e", "f"], [0, 1, 0], **SIZE)
    assert list(pairs.take(np.array([2, 0])).left) == ["c", "a"]
    assert list(pairs.take(slice(1, None)).right) == ["e", "f"]
    with pytest.raises(ValueError, match="one entry per pair"):
        ImagePairFiles(["a"], ["b", "c"], [1], **SIZE)
    with pytest.raises(ValueError, match=r"data\.channels must be 1 \(grayscale\) or 3 \(RGB\), got 2"):
        ImagePairFiles(["a"], ["b"], [1], image_size=8, channels=2)


def test_split_pairs_splits_image_pair_files_without_overlap():
    num_pairs = 40
    pairs = ImagePairFiles(
        [f"/l/{i}.png" for i in range(num_pairs)], [f"/r/{i}.png" for i in range(num_pairs)], np.arange(num_pairs) % 2, **SIZE
    )
    splits = split_pairs(pairs, 0.2, 0.2, np.random.default_rng(0), stratify=True)
    parts = [splits.train, splits.validation, splits.test]
    assert all(isinstance(part, ImagePairFiles) for part in parts)
    assert [len(part) for part in parts] == [24, 8, 8]
    assert set().union(*(set(part.left) for part in parts)) == set(pairs.left)
    assert all(set(part.labels) == {0.0, 1.0} for part in parts)
    for part in parts:  # each pair keeps its own right side and label
        indices = [int(Path(left).stem) for left in part.left]
        assert list(part.right) == [f"/r/{i}.png" for i in indices]
        np.testing.assert_array_equal(part.labels, np.array(indices) % 2)


# Class folders


def make_class_folder(root: Path, num_classes: int, images_per_class: int | list[int]) -> Path:
    """root/class_<i>/<j>.png, plus files and folders that must be ignored."""
    counts = images_per_class if isinstance(images_per_class, list) else [images_per_class] * num_classes
    for index, count in enumerate(counts):
        for image in range(count):
            noise_image(root / f"class_{index}" / f"{image}.png", seed=index * 100 + image)
        (root / f"class_{index}" / "notes.txt").write_text("not an image")
        noise_image(root / f"class_{index}" / ".hidden.png", seed=9999)
    noise_image(root / ".thumbnails" / "x.png", seed=9998)
    noise_image(root / ".thumbnails" / "y.png", seed=9997)
    return root


def draw(root: Path, seed: int = 0, **overrides):
    arguments = {"num_pairs": 60, "split_by": "class", "validation_fraction": 0.2, "test_fraction": 0.2, **SIZE} | overrides
    return pairs_from_class_folders(root, rng=np.random.default_rng(seed), **arguments)


def parts(splits) -> dict[str, ImagePairFiles]:
    return {"train": splits.train, "validation": splits.validation, "test": splits.test}


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    """Small classes: a 20% share of 6 images is 1.2, too few to put every class in every split."""
    return make_class_folder(tmp_path_factory.mktemp("classes"), num_classes=10, images_per_class=6)


@pytest.mark.parametrize(
    ("split_by", "num_classes", "chosen"),
    [("auto", 23, "class"), ("auto", 22, "image"), ("auto", 10, "image"), ("class", 10, "class"), ("group", 3, "group")],
)
def test_auto_holds_out_classes_only_when_each_held_out_split_gets_five(split_by, num_classes, chosen):
    assert chosen_split(split_by, num_classes, 0.2, 0.2) == chosen  # 0.2 of 23 or more classes rounds to 5


def test_default_pair_count_grows_with_the_folder_within_bounds():
    low, high = DEFAULT_PAIR_RANGE
    assert default_pair_count(10) == low
    assert default_pair_count(3_000) == PAIRS_PER_IMAGE * 3_000
    assert default_pair_count(1_000_000) == high


def test_unset_num_pairs_draws_the_default_count(class_folder):
    splits = draw(class_folder, num_pairs=None)  # 60 images: below the range, so its lower bound
    assert sum(len(part) for part in parts(splits).values()) == DEFAULT_PAIR_RANGE[0]


@pytest.fixture(scope="module")
def large_class_folder(tmp_path_factory) -> Path:
    """A 20% share of 10 images is 2: every class fits in every split."""
    return make_class_folder(tmp_path_factory.mktemp("large_classes"), num_classes=6, images_per_class=10)


@pytest.mark.parametrize("split_by", ["class", "image"])
def test_class_folder_pairs_are_balanced_and_labels_say_same_class(class_folder, split_by):
    splits = parts(draw(class_folder, split_by=split_by))
    assert {name: len(pairs) for name, pairs in splits.items()} == {"train": 36, "validation": 12, "test": 12}
    for pairs in splits.values():
        assert np.sum(pairs.labels == 1) == np.sum(pairs.labels == 0) == len(pairs) // 2
        for left, right, label in zip(pairs.left, pairs.right, pairs.labels):
            assert Path(left).is_absolute() and Path(left).suffix == ".png"
            assert not Path(left).name.startswith(".") and ".thumbnails" not in left
            assert (Path(left).parent == Path(right).parent) == bool(label)
            assert left != right


@pytest.mark.parametrize("split_by", ["class", "image"])
def test_class_folder_pairs_are_deterministic_per_seed(class_folder, split_by):
    first, again, other = (parts(draw(class_folder, seed, split_by=split_by)) for seed in (1, 1, 2))
    for name in first:
        np.testing.assert_array_equal(first[name].left, again[name].left)
        np.testing.assert_array_equal(first[name].right, again[name].right)
        np.testing.assert_array_equal(first[name].labels, again[name].labels)
    assert any(not np.array_equal(first[name].left, other[name].left) for name in first)


def images_of(pairs: ImagePairFiles) -> set[str]:
    return set(pairs.left) | set(pairs.right)


def test_split_by_class_puts_each_class_in_one_split_only(class_folder):
    splits = parts(draw(class_folder))
    classes = {name: {Path(path).parent.name for path in images_of(pairs)} for name, pairs in splits.items()}
    assert all(len(names) >= 2 for names in classes.values())
    assert classes["train"].isdisjoint(classes["validation"])
    assert classes["train"].isdisjoint(classes["test"])
    assert classes["validation"].isdisjoint(classes["test"])


def assert_no_image_in_two_splits(splits: dict[str, ImagePairFiles]) -> dict[str, set[str]]:
    images = {name: images_of(pairs) for name, pairs in splits.items()}
    assert images["train"].isdisjoint(images["validation"])
    assert images["train"].isdisjoint(images["test"])
    assert images["validation"].isdisjoint(images["test"])
    return images


def test_split_by_image_puts_each_image_in_one_split_and_every_class_in_every_split(large_class_folder):
    images = assert_no_image_in_two_splits(parts(draw(large_class_folder, split_by="image", num_pairs=300)))
    every_class = {f"class_{index}" for index in range(6)}
    assert all({Path(path).parent.name for path in paths} == every_class for paths in images.values())


def test_split_by_image_gives_small_classes_to_evaluation_splits_in_twos(class_folder):
    images = assert_no_image_in_two_splits(parts(draw(class_folder, split_by="image", num_pairs=1000)))
    for name in ("validation", "test"):
        per_class = Counter(Path(path).parent.name for path in images[name])
        assert set(per_class.values()) == {2}  # a lone image would give no same-class pair
        assert 4 <= len(per_class) <= 8  # about 20% of 60 images: their share, taken in turns


def test_no_validation_fraction_gives_an_empty_validation_split(class_folder):
    splits = draw(class_folder, validation_fraction=0.0, num_pairs=20)
    assert len(splits.validation) == 0
    assert len(splits.train) + len(splits.test) == 20
    assert set(splits.test.labels) == {0.0, 1.0}


def test_few_pairs_still_give_every_split_both_labels(class_folder):
    splits = parts(draw(class_folder, num_pairs=10))
    assert {name: len(pairs) for name, pairs in splits.items()} == {"train": 2, "validation": 4, "test": 4}
    assert all(set(pairs.labels) == {0.0, 1.0} for pairs in splits.values())
    with pytest.raises(ValueError, match="data.num_pairs = 9 is too few"):
        draw(class_folder, num_pairs=9)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"validation_fraction": 0.5, "test_fraction": 0.45}, "data.validation_fraction + data.test_fraction must leave at least 10%"),
        ({"test_fraction": 0.0}, "data.test_fraction must be a number > 0.0 and < 1.0, got 0.0"),
        ({"split_by": "pixel"}, "data.split_by must be one of auto, class, image, group; got 'pixel'"),
    ],
)
def test_class_folder_arguments_are_checked_with_their_config_keys(class_folder, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        draw(class_folder, **overrides)


def test_class_folder_pairs_are_read_at_the_size_asked(class_folder):
    splits = draw(class_folder, num_pairs=20, image_size=12, channels=1)
    assert all((pairs.image_size, pairs.channels) == (12, 1) for pairs in parts(splits).values())
    assert splits.test.head(2).left.shape == (2, 12, 12, 1)


# The pairs a flat folder gave before nested folders were read: seed 0, the first two of each split.
FLAT_PAIRS = {
    "class": {
        "train": ["class_6/2.png class_6/5.png 1", "class_5/0.png class_5/5.png 1"],
        "validation": ["class_0/5.png class_9/2.png 0", "class_0/0.png class_9/3.png 0"],
        "test": ["class_1/1.png class_8/4.png 0", "class_1/1.png class_1/4.png 1"],
    },
    "image": {
        "train": ["class_4/5.png class_3/4.png 0", "class_1/5.png class_9/0.png 0"],
        "validation": ["class_4/4.png class_4/1.png 1", "class_4/4.png class_2/5.png 0"],
        "test": ["class_1/2.png class_1/1.png 1", "class_1/1.png class_1/2.png 1"],
    },
}


@pytest.mark.parametrize("split_by", ["class", "image"])
def test_a_flat_folder_gives_the_same_pairs_as_before(class_folder, split_by):
    splits = parts(draw(class_folder, split_by=split_by))
    first_two = {
        name: [
            f"{Path(left).relative_to(class_folder)} {Path(right).relative_to(class_folder)} {int(label)}"
            for left, right, label in zip(pairs.left[:2], pairs.right[:2], pairs.labels[:2])
        ]
        for name, pairs in splits.items()
    }
    assert first_two == FLAT_PAIRS[split_by]


def test_a_flat_folder_split_by_group_splits_by_class(class_folder):
    """Each class of a flat folder is its own group: the same pairs as split_by class."""
    by_group, by_class = (parts(draw(class_folder, seed=3, split_by=split_by)) for split_by in ("group", "class"))
    for name in by_group:
        np.testing.assert_array_equal(by_group[name].left, by_class[name].left)
        np.testing.assert_array_equal(by_group[name].right, by_class[name].right)


def make_nested_folder(root: Path, num_groups: int, classes_per_group: int, images_per_class: int) -> Path:
    """root/group_<g>/char_<c>/<i>.png (the same class names in every group), plus things to ignore."""
    for group in range(num_groups):
        for character in range(classes_per_group):
            for image in range(images_per_class):
                seed = (group * 100 + character) * 100 + image
                noise_image(root / f"group_{group}" / f"char_{character}" / f"{image}.png", seed=seed)
        (root / f"group_{group}" / "notes.txt").write_text("not an image: the group stays a group")
        (root / f"group_{group}" / "empty").mkdir()
        noise_image(root / f"group_{group}" / ".cache" / "x.png", seed=1)
    (root / "LICENSE").write_text("a loose file in root")
    return root


def relative_parts(root: Path, pairs: ImagePairFiles) -> set[tuple[str, ...]]:
    return {Path(path).relative_to(root).parts for path in images_of(pairs)}


@pytest.fixture(scope="module")
def nested_folder(tmp_path_factory) -> Path:
    """5 groups of 3 classes of 10 images: fractions 0.2 give each evaluation split one group."""
    return make_nested_folder(tmp_path_factory.mktemp("nested"), num_groups=5, classes_per_group=3, images_per_class=10)


def test_nested_folders_are_read_as_their_leaf_classes(nested_folder):
    splits = parts(draw(nested_folder, split_by="image", num_pairs=600))
    expected = {(f"group_{group}", f"char_{character}") for group in range(5) for character in range(3)}
    for pairs in splits.values():
        assert {image[:2] for image in relative_parts(nested_folder, pairs)} == expected  # every class, no hidden one
        for left, right, label in zip(pairs.left, pairs.right, pairs.labels):
            # group_0/char_0 and group_1/char_0 share a folder name but are different classes
            assert (Path(left).parent == Path(right).parent) == bool(label)


def test_split_by_group_holds_whole_groups_out_of_training(nested_folder):
    splits = parts(draw(nested_folder, split_by="group", num_pairs=200))
    groups = {name: {image[0] for image in relative_parts(nested_folder, pairs)} for name, pairs in splits.items()}
    assert [len(groups[name]) for name in ("train", "validation", "test")] == [3, 1, 1]
    assert groups["train"].isdisjoint(groups["validation"])
    assert groups["train"].isdisjoint(groups["test"])
    assert groups["validation"].isdisjoint(groups["test"])
    assert all(set(pairs.labels) == {0.0, 1.0} for pairs in splits.values())


def test_split_by_class_on_nested_folders_puts_each_class_in_one_split_only(nested_folder):
    splits = parts(draw(nested_folder, split_by="class", num_pairs=200))
    classes = {name: {image[:2] for image in relative_parts(nested_folder, pairs)} for name, pairs in splits.items()}
    assert classes["train"].isdisjoint(classes["validation"])
    assert classes["train"].isdisjoint(classes["test"])
    assert classes["validation"].isdisjoint(classes["test"])
    groups = {name: {group for group, _ in names} for name, names in classes.items()}
    assert not groups["train"].isdisjoint(groups["test"] | groups["validation"])  # groups are shared: only classes are new


def build_missing(root: Path) -> Path:
    return root / "nowhere"


def build_file(root: Path) -> Path:
    return noise_image(root / "single.png", seed=0)


def build_loose_images(root: Path) -> Path:
    noise_image(root / "a.png", seed=0)
    noise_image(root / "b.png", seed=1)
    return root


def build_no_images(root: Path) -> Path:
    (root / "cat").mkdir()
    (root / "cat" / "notes.txt").write_text("text")
    noise_image(root / "cat" / ".hidden.png", seed=0)
    noise_image(root / "cat" / "photo.gif", seed=0)
    return root


def build_single_image_class(root: Path) -> Path:
    return make_class_folder(root, num_classes=8, images_per_class=[3] * 7 + [1])


def build_four_classes(root: Path) -> Path:
    return make_class_folder(root, num_classes=4, images_per_class=3)


def build_two_classes_of_two(root: Path) -> Path:
    return make_class_folder(root, num_classes=2, images_per_class=2)


def build_two_groups(root: Path) -> Path:
    return make_nested_folder(root, num_groups=2, classes_per_group=3, images_per_class=2)


def build_mixed(root: Path) -> Path:
    make_nested_folder(root, num_groups=3, classes_per_group=2, images_per_class=2)
    noise_image(root / "group_1" / "stray.png", seed=7)  # beside the group's class folders
    return root


def build_nested_single_image_class(root: Path) -> Path:
    make_nested_folder(root, num_groups=3, classes_per_group=2, images_per_class=2)
    (root / "group_2" / "char_1" / "1.png").unlink()
    return root


def build_folder_loop(root: Path) -> Path:
    make_nested_folder(root, num_groups=3, classes_per_group=2, images_per_class=2)
    (root / "group_0" / "again").symlink_to(root / "group_0", target_is_directory=True)
    return root


def build_unreadable(root: Path) -> Path:
    make_class_folder(root, num_classes=8, images_per_class=3)
    (root / "class_5" / "broken.png").write_text("not an image")
    return root


def build_truncated(root: Path) -> Path:
    make_class_folder(root, num_classes=8, images_per_class=3)
    truncate(noise_image(root / "class_6" / "cut.png", seed=0, size=24))
    return root


FOLDER_ERRORS = {
    "missing": (build_missing, {}, [r"nowhere does not exist"]),
    "a file": (build_file, {}, [r"single\.png is not a folder"]),
    "no class folders": (build_loose_images, {}, ["has no class subfolders", "move its 2 images into one folder"]),
    "no images": (build_no_images, {}, [r"1 class folder\(s\) but no images", r"\.jpeg, \.jpg, .*\.png", "hidden"]),
    "single image": (build_single_image_class, {}, [r"only one image: .*class_7", "add images or remove"]),
    "few classes": (build_four_classes, {}, ["has 4 classes, too few to split by class", r"set data\.split_by to 'image'"]),
    "image split": (
        build_two_classes_of_two,
        {"split_by": "image"},  # a 20% share of 2 images is 0.4: validation and test get none
        [
            r"data\.split_by 'image' leaves no class with 2 images in the validation split",
            r"raise data\.validation_fraction",
            r"set data\.split_by to 'class'",
        ],
    ),
    "unreadable": (build_unreadable, {}, [r"class_5/broken\.png \(not an image PIL can read\)"]),
    "truncated": (build_truncated, {}, [r"1 image file\(s\) cannot be read: \S*class_6/cut\.png \(image file is truncated"]),
    "few groups": (
        build_two_groups,
        {"split_by": "group"},
        [
            r"has 2 group\(s\)",
            "too few to split by group",
            r"take 1 \(validation\) and 1 \(test\) of the 2, leaving too few for train",
            r"add groups or set data\.split_by to 'class'",
        ],
    ),
    "mixed layout": (
        build_mixed,
        {},
        [r"1 folder\(s\) in .* hold both images and folders of images: \S*/group_1;", "move those images"],
    ),
    "nested single image": (build_nested_single_image_class, {}, [r"only one image: \S*/group_2/char_1;"]),
    "folder loop": (build_folder_loop, {}, [r"group_0/again links back to the folder \S*/group_0 it is in"]),
}


@pytest.mark.parametrize("case", FOLDER_ERRORS)
def test_class_folder_errors_say_what_to_fix(tmp_path, case):
    build, overrides, patterns = FOLDER_ERRORS[case]
    root = build(tmp_path)
    with pytest.raises(ImageDataError) as error:
        draw(root, **overrides)
    message = str(error.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


# Streaming


@pytest.fixture
def mixed_pairs(tmp_path) -> ImagePairFiles:
    """Five pairs over PNG, JPEG and PGM files, grayscale and RGB, of different sizes."""
    files = [
        write_image(tmp_path / "a.png", two_tone("RGB")),
        write_image(tmp_path / "b.jpg", two_tone("L", width=20, height=20)),
        write_image(tmp_path / "c.pgm", two_tone("L", width=10, height=14)),
        noise_image(tmp_path / "d.png", seed=3, size=24),
    ]
    left = [files[i] for i in (0, 1, 2, 3, 0)]
    right = [files[i] for i in (3, 2, 1, 0, 2)]
    return ImagePairFiles([str(path) for path in left], [str(path) for path in right], [1, 0, 1, 0, 0.5], image_size=16, channels=3)


def test_dataset_batches_float_pixels_equal_to_the_in_memory_pairs(mixed_pairs):
    dataset = mixed_pairs.dataset(batch_size=2)
    inputs_spec, labels_spec = dataset.element_spec
    assert set(inputs_spec) == {"left", "right"}
    assert tuple(inputs_spec["left"].shape) == (None, 16, 16, 3)  # static, for the model's input layer
    batches = list(dataset.as_numpy_iterator())
    assert [len(labels) for _, labels in batches] == [2, 2, 1]
    in_memory = mixed_pairs.head(len(mixed_pairs))
    assert in_memory.left.dtype == np.uint8 and in_memory.left.shape == (5, 16, 16, 3)
    for side in ("left", "right"):
        streamed = np.concatenate([inputs[side] for inputs, _ in batches])
        assert streamed.dtype == np.float32
        np.testing.assert_array_equal(streamed, getattr(in_memory, side).astype(np.float32))
    labels = np.concatenate([labels for _, labels in batches])
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(labels, mixed_pairs.labels)


def test_dataset_shuffles_deterministically_per_seed_and_anew_each_epoch(tmp_path):
    image = str(noise_image(tmp_path / "a.png", seed=0))
    pairs = ImagePairFiles([image] * 16, [image] * 16, np.arange(16), image_size=8, channels=1)  # labels number the pairs

    def epochs(shuffle: bool, seed: int = 0, count: int = 2) -> list[list[float]]:
        dataset = pairs.dataset(batch_size=16, shuffle=shuffle, seed=seed)
        return [list(next(iter(dataset))[1].numpy()) for _ in range(count)]

    assert epochs(shuffle=False) == [list(range(16))] * 2
    first, second = epochs(shuffle=True, seed=1)
    assert sorted(first) == list(range(16))
    assert first != list(range(16)) and second != first
    assert epochs(shuffle=True, seed=1) == [first, second]
    assert epochs(shuffle=True, seed=2, count=1)[0] != first


def test_a_corrupt_file_mid_stream_raises_an_error_naming_it(mixed_pairs, monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(image_pairs, "IN_MEMORY_BYTES", 0)  # too large to hold: streamed
    corrupt = truncate(Path(mixed_pairs.right[0]))  # d.png: its header still opens
    dataset = mixed_pairs.take(slice(1, None)).dataset(batch_size=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(str(corrupt))):
        list(dataset.as_numpy_iterator())


def test_a_corrupt_file_held_in_memory_raises_an_error_naming_it_before_training(mixed_pairs):
    corrupt = truncate(Path(mixed_pairs.right[0]))
    with pytest.raises(ImageDataError, match=re.escape(str(corrupt))):
        mixed_pairs.dataset(batch_size=1)


def test_in_memory_and_streamed_batches_are_the_same(large_class_folder, monkeypatch):
    pairs = draw(large_class_folder).train
    held = list(pairs.dataset(batch_size=7, shuffle=True, seed=3).as_numpy_iterator())
    monkeypatch.setattr(image_pairs, "IN_MEMORY_BYTES", 0)
    streamed = list(pairs.dataset(batch_size=7, shuffle=True, seed=3).as_numpy_iterator())
    assert len(held) == len(streamed) == -(-len(pairs) // 7)
    for (held_inputs, held_labels), (streamed_inputs, streamed_labels) in zip(held, streamed):
        np.testing.assert_array_equal(held_labels, streamed_labels)
        for side in ("left", "right"):
            assert held_inputs[side].dtype == np.float32
            np.testing.assert_array_equal(held_inputs[side], streamed_inputs[side])


def test_importing_the_module_loads_no_deep_learning_framework():
    code = (
        "import json, sys, siamese.data.image_pairs\n"
        "print(json.dumps([m for m in ('tensorflow', 'keras', 'prefect', 'mlflow') if m in sys.modules]))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []
