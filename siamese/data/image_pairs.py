"""Real image pairs from files: a CSV of pairs, or a folder of classes, read with PIL.

Two sources. A CSV lists `left_path,right_path,label` rows: a 0/1 similarity label or a number
to regress. A class folder is the verification setting (signatures, faces, handwritten
characters): `root/<class>/<image>`, or nested `root/<group>/<class>/<image>` as in Omniglot
(alphabets of characters). A class is a folder that directly holds images, named by its path
under root (`Greek/character01`); its group is the first folder of that path, so in a flat folder
every class is its own group. A folder holding both images and folders of images is refused: it
would be a class and a group at once. Same-class and different-class pairs are drawn with the
seed after the groups (split_by group: whole alphabets held out), the classes (split_by class)
or the images (split_by image) have been split, so nothing the test set is about is seen in
training.

Pairs stay file paths (`ImagePairFiles`, which knows the size they are read at) until they are
read: `head` loads the first few into memory, `dataset` streams them all through `tf.data`. Both
decode through `read_image`, so the pixels a model trains on are the pixels a probe or an example
shows. Problems are found up front, before anything trains (paths, labels, every image decoded),
and reported with the file and the line to fix; values a user sets are named by their config keys
(`data.split_by`, `data.test_fraction`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from siamese.config import SplitBy, Task, member_of
from siamese.data.pairs import SPLIT_NAMES, PairSplits, check_batch_size, check_fractions, without_autotuning
from siamese.data.sequences import PairSet

if TYPE_CHECKING:
    import tensorflow as tf

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pbm", ".bmp"})
CSV_COLUMNS = ("left_path", "right_path", "label")
MAX_LISTED = 5  # problems named in one message; the count says how many there are in all
MIN_EVAL_PAIRS = 4  # fewer validation or test pairs than this measure nothing
MIN_TRAIN_PAIRS = 2  # one of each label
MIN_HELD_OUT_CLASSES = 5  # per held-out split, for data.split_by auto to hold out classes (`chosen_split`)
PAIRS_PER_IMAGE = 5  # pairs drawn per image when data.num_pairs is unset (`default_pair_count`)
DEFAULT_PAIR_RANGE = (2_000, 20_000)
# Decoding uses every core (PIL releases the GIL); at least 8, as opening a file on a network
# share waits on the share, not the CPU.
CHECK_THREADS = max(8, os.cpu_count() or 1)
# Decoded pixels (uint8) a split may hold in memory instead of decoding every image each epoch:
# 70,000 images of 48x48x3, or 3,400 of 224x224x3.
IN_MEMORY_BYTES = 512 * 2**20

_MODES = {1: "L", 3: "RGB"}
_BAD_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ImageDataError(ValueError):
    """An image file, folder or pair table that cannot be used; the message names it."""


def read_image(path: str | Path, image_size: int, channels: int) -> np.ndarray:
    """Read one image file as the model sees it: converted, square, 8-bit.

    Args:
        path: a PNG, JPEG, PGM/PPM/PBM or BMP file, grayscale or colour (with or without alpha).
        image_size: side of the square the image is resized to (bilinear).
        channels: 1 for grayscale ('L'), 3 for RGB.

    Returns:
        uint8 pixels `(image_size, image_size, channels)`.

    Raises:
        ImageDataError: the file is missing, not an image, or cannot be decoded; names the file.
    """
    _check_image_shape(image_size, channels)
    try:
        with Image.open(path) as image:
            # JPEG only: decode at 1/2, 1/4 or 1/8 scale when that still covers the target size,
            # so multi-megapixel photos do not dominate input time.
            image.draft(_MODES[channels], (image_size, image_size))
            square = _normalized(image, channels).resize((image_size, image_size), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise ImageDataError(f"image file {path} does not exist") from None
    except IsADirectoryError:
        raise ImageDataError(f"{path} is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise ImageDataError(
            f"{path} is not an image PIL can read (corrupt, or not one of {_suffix_list()}); replace or remove it"
        ) from None
    except _BAD_IMAGE_ERRORS as error:
        raise ImageDataError(f"image file {path} cannot be read ({error}); replace or remove it") from None
    return np.asarray(square, dtype=np.uint8).reshape(image_size, image_size, channels)


def validate_images(paths: Iterable[str | Path], image_size: int, channels: int) -> None:
    """Decode every file as `read_image` will, in parallel threads, before a long run starts.

    Every pixel is decoded, not only the header: a truncated file opens fine and would otherwise
    fail after training, in whatever first reads it. 2 to 4 s per 10,000 small PNGs on 2 busy
    cores, 3 to 4 times the header-only check (docs/vision.md, "Real image pairs").

    Args:
        image_size, channels: the size the images are read at (JPEGs decode at the scale that covers it).

    Raises:
        ImageDataError: listing the first few unreadable files, why, and how many there are.
    """
    _check_image_shape(image_size, channels)
    unique = list(dict.fromkeys(os.fspath(path) for path in paths))
    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        found = pool.map(lambda path: _decode_problem(path, image_size, channels), unique)
        problems = [f"{path} ({problem})" for path, problem in zip(unique, found) if problem]
    if problems:
        raise ImageDataError(
            f"{len(problems)} image file(s) cannot be read: {_listing(problems)}; replace or remove them"
        )


@dataclass(frozen=True)
class ImagePairFiles:
    """Pairs of image files with one label each; pixels stay on disk until read or streamed.

    `left` and `right` are absolute paths (str arrays), `labels` float32: 0/1, or a number for
    regression. Lists are accepted and converted. Images are read at `image_size` x `image_size`
    with `channels` channels (`read_image`): the model's input shape.
    """

    left: np.ndarray
    right: np.ndarray
    labels: np.ndarray
    image_size: int
    channels: int

    suffix: ClassVar[str] = ".csv"

    def __post_init__(self) -> None:
        _check_image_shape(self.image_size, self.channels)
        object.__setattr__(self, "left", np.asarray(self.left, dtype=np.str_).reshape(-1))
        object.__setattr__(self, "right", np.asarray(self.right, dtype=np.str_).reshape(-1))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.float32).reshape(-1))
        if not len(self.left) == len(self.right) == len(self.labels):
            raise ValueError(
                f"left, right and labels must have one entry per pair, got {len(self.left)}, "
                f"{len(self.right)} and {len(self.labels)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray | slice) -> ImagePairFiles:
        return ImagePairFiles(self.left[indices], self.right[indices], self.labels[indices], self.image_size, self.channels)

    def head(self, count: int) -> PairSet:
        """The first `count` pairs read into memory: uint8 pixels `(n, image_size, image_size, channels)`."""
        first = self.take(slice(0, count))
        return PairSet(self._read(first.left), self._read(first.right), first.labels)

    def pairs_with_timestep_equal_to(self, value: float) -> None:
        """Images are not sequences: nothing for a `Masking` layer to find."""
        return None

    def save(self, path: Path) -> Path:
        """Write a pair CSV (`left_path,right_path,label`) that `load` and `read_pair_csv` read back."""
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(CSV_COLUMNS)
            # str() of a float32 is its shortest exact spelling: labels survive the round trip.
            writer.writerows(zip(self.left, self.right, map(str, self.labels)))
        return path

    @classmethod
    def load(cls, path: Path, *, image_size: int, channels: int) -> ImagePairFiles:
        """Read a file written by `save` without opening the images: steps hand each other this file.

        The table holds paths and labels only; the images are read at `image_size` and `channels`.
        An empty table loads as an empty set (an unused validation split).
        """
        return _parse_pairs(Path(path), _read_rows(Path(path)), image_size, channels)

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, autotune: bool | None = None) -> tf.data.Dataset:
        """Batches of pixels: decoded once and held in memory when they fit, else streamed from disk.

        Yields `({"left": (b, s, s, c), "right": (b, s, s, c)}, labels (b,))`, all float32, pixels
        0..255 (models rescale inside). Shuffling reorders the pairs with `seed` and again each
        epoch. When the distinct images take at most `IN_MEMORY_BYTES` decoded, each is decoded
        once, here, and batches gather from that table: an epoch then repeats no decoding (on a
        CPU it halved the epoch time of a folder of 3,120 PNGs at 48x48). Larger sets stream,
        decoding in parallel; how many files are decoded at once and read ahead is left to
        `tf.data`'s autotuning unless `autotune` is False (then `tf.data` keeps fixed defaults).

        Raises:
            ImageDataError: (in memory) an image cannot be read; the message names the file.
            tf.errors.InvalidArgumentError: (streamed, while iterating) the same, naming the file.
        """
        import tensorflow as tf  # here, so importing this module does not load TensorFlow

        check_batch_size(batch_size)
        images, sides = np.unique(np.concatenate([self.left, self.right]), return_inverse=True)
        if self._fit_in_memory(len(images)):
            pixels = self.pixel_reader()

            def gather(left: tf.Tensor, right: tf.Tensor, label: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
                return {"left": pixels(left), "right": pixels(right)}, label

            indices = tf.data.Dataset.from_tensor_slices((sides[: len(self)], sides[len(self) :], self.labels))
            batches = _shuffled(indices, shuffle, seed, len(self)).batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)
        else:
            files = tf.data.Dataset.from_tensor_slices((self.left, self.right, self.labels))
            pairs = _shuffled(files, shuffle, seed, len(self)).map(self._decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            batches = pairs.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        return without_autotuning(batches) if autotune is False else batches

    def pixel_reader(self) -> Callable[[tf.Tensor], tf.Tensor]:
        """A function from indices into these pairs' distinct images (sorted paths) to their float32 pixels.

        The images are decoded once, here, into a table the function gathers from when they fit in
        `IN_MEMORY_BYTES`; otherwise each call decodes the images it is asked for.
        """
        import tensorflow as tf

        images = np.unique(np.concatenate([self.left, self.right]))
        if self._fit_in_memory(len(images)):
            table = tf.constant(self._read(images))
            return lambda indices: tf.cast(tf.gather(table, indices), tf.float32)
        shape = (None, self.image_size, self.image_size, self.channels)

        def read(indices: tf.Tensor) -> tf.Tensor:
            pixels = tf.numpy_function(lambda chosen: self._read(images[chosen]), [indices], tf.uint8, stateful=False)
            pixels.set_shape(shape)  # numpy_function forgets shapes; the model needs them
            return tf.cast(pixels, tf.float32)

        return read

    def _fit_in_memory(self, images: int) -> bool:
        return images * self.image_size**2 * self.channels <= IN_MEMORY_BYTES

    def _decode(self, left: tf.Tensor, right: tf.Tensor, label: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """One streamed pair's pixels, read by `read_image`.

        TensorFlow cannot decode PGM, and one reader keeps streamed and in-memory pixels equal.
        """
        import tensorflow as tf

        image_size, channels = self.image_size, self.channels
        shape = (image_size, image_size, channels)

        def read_pair(left: bytes, right: bytes) -> tuple[np.ndarray, np.ndarray]:
            return read_image(os.fsdecode(left), image_size, channels), read_image(os.fsdecode(right), image_size, channels)

        left_pixels, right_pixels = tf.numpy_function(read_pair, [left, right], [tf.uint8, tf.uint8], stateful=False)
        left_pixels.set_shape(shape)  # numpy_function forgets shapes; the model needs them
        right_pixels.set_shape(shape)
        return {"left": tf.cast(left_pixels, tf.float32), "right": tf.cast(right_pixels, tf.float32)}, label

    def _read(self, paths: np.ndarray) -> np.ndarray:
        """Decode `paths` into one uint8 array, in threads: PIL releases the GIL while it decodes."""
        pixels = np.empty((len(paths), self.image_size, self.image_size, self.channels), np.uint8)
        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            for index, image in enumerate(pool.map(lambda path: read_image(path, self.image_size, self.channels), paths)):
                pixels[index] = image
        return pixels


def _shuffled(dataset: tf.data.Dataset, shuffle: bool, seed: int, size: int) -> tf.data.Dataset:
    """`dataset` in a new seeded order each epoch, or as it is."""
    return dataset.shuffle(max(1, size), seed=seed, reshuffle_each_iteration=True) if shuffle else dataset


def read_pair_csv(path: str | Path, task: Task | str, *, image_size: int, channels: int) -> ImagePairFiles:
    """Read and check a pair table: `left_path,right_path,label` columns, other columns ignored.

    Relative image paths are read from the CSV's folder. Every problem is reported with the line
    a user sees in an editor (the header is line 1), the first few of each kind and their count.

    Args:
        path: the CSV file.
        task: 'similarity' (labels 0 or 1) or 'regression' (any finite number).
        image_size, channels: the size the images are read at (`data.image_size`, `data.channels`).

    Raises:
        ImageDataError: the CSV is missing, unparseable, lacks a column or rows, has bad labels
            or empty paths, or names image files that are missing or unreadable.
    """
    task = member_of(Task, task, "data.task")
    _check_image_shape(image_size, channels)
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise ImageDataError(
            f"pair CSV {path} has a header but no rows: add one left_path,right_path,label row per pair"
        )
    pairs = _parse_pairs(path, rows, image_size, channels)
    lines = [line for line, _ in rows]
    if task is Task.SIMILARITY:
        _check_binary_labels(path, pairs.labels, lines)
    _check_files_exist(path, pairs, rows)
    try:
        validate_images(np.concatenate([pairs.left, pairs.right]), image_size, channels)
    except ImageDataError as error:
        raise ImageDataError(f"pair CSV {path}: {error}") from None
    return pairs


@dataclass(frozen=True)
class FolderSplits(PairSplits[ImagePairFiles]):
    """A class folder's pair splits, and how it was split (`data.split_by` with `auto` decided)."""

    split_by: SplitBy = SplitBy.CLASS


def pairs_from_class_folders(
    root: str | Path,
    *,
    num_pairs: int | None,
    split_by: SplitBy | str,
    validation_fraction: float,
    test_fraction: float,
    image_size: int,
    channels: int,
    rng: np.random.Generator,
) -> FolderSplits:
    """Draw balanced same-class (1) and different-class (0) pairs from `root/<class>/<image>`.

    Classes are the folders that directly hold images, at any depth (`root/<group>/<class>/<image>`);
    a class's group is its top-level folder under root. The groups (split_by group: test classes
    come from groups never seen in training), the classes (split_by class: test identities are
    new) or each class's images (split_by image) are split first and pairs are drawn within each
    split, so no image is in two splits. Pairs per split follow the fractions, with at least a few
    of each label in every used split. Deterministic given `rng`'s seed. Hidden files and
    folders, other suffixes, folders without images and images directly in root are ignored.
    The pairs are read at `image_size` and `channels`.

    Args:
        num_pairs: pairs to draw over all splits; None: `default_pair_count` of the folder's images.

    Returns:
        `ImagePairFiles` per split (validation is empty when `validation_fraction` is 0) and the
        split used: `split_by`, or for `auto` what `chosen_split` decided.

    Raises:
        ImageDataError: the folder is unusable (missing, no classes, no images, a class with one
            image, a folder with both images and folders of images, too few groups, classes or
            images to split, unreadable images); names what to fix.
        ValueError: the fractions, `num_pairs` or the image size are out of range.
    """
    check_fractions(validation_fraction, test_fraction)
    _check_image_shape(image_size, channels)
    fractions = {"train": 1.0 - validation_fraction - test_fraction, "validation": validation_fraction, "test": test_fraction}
    if num_pairs is not None:
        _pair_counts(num_pairs, fractions)  # a bad count fails before the folder is read
    root = Path(root).absolute()
    classes = _list_classes(root)
    split_by = chosen_split(split_by, len(classes), validation_fraction, test_fraction)
    pair_counts = _pair_counts(num_pairs or default_pair_count(sum(map(len, classes.values()))), fractions)
    if split_by is SplitBy.IMAGE:
        per_split = _split_images(root, classes, fractions, rng)
    else:
        per_split = _split_whole(root, _units(classes, split_by), split_by, fractions, rng)
    validate_images((path for images in classes.values() for path in images), image_size, channels)
    return FolderSplits(
        **{name: _draw_pairs(per_split[name], pair_counts[name], image_size, channels, rng) for name in SPLIT_NAMES},
        split_by=split_by,
    )


def chosen_split(split_by: SplitBy | str, num_classes: int, validation_fraction: float, test_fraction: float) -> SplitBy:
    """`split_by`, with `auto` decided: `class` when validation and test get `MIN_HELD_OUT_CLASSES` classes each, else `image`.

    Holding out whole classes asks the question verification is for (are these two of one new
    identity?), but a test split of two or three classes asks it of too few: its score says more
    about which classes were drawn than about the model, and one-shot trials need 5. A folder
    that few classes (the 10 digits) is split by image instead: every class in every split.
    """
    split_by = member_of(SplitBy, split_by, "data.split_by")
    if split_by is not SplitBy.AUTO:
        return split_by
    held_out = [round(num_classes * fraction) for fraction in (validation_fraction, test_fraction) if fraction]
    return SplitBy.CLASS if min(held_out) >= MIN_HELD_OUT_CLASSES else SplitBy.IMAGE


def default_pair_count(num_images: int) -> int:
    """Pairs to draw from a folder of `num_images` images: `PAIRS_PER_IMAGE` each, within `DEFAULT_PAIR_RANGE`.

    A fixed count would show a model of a 400-photo folder every image many times over and one of
    a 20,000-image folder a tenth of them; per image, each appears in about ten pairs (twice per
    pair). The bounds keep a tiny folder trainable and a large one's epoch to minutes on a CPU.
    """
    low, high = DEFAULT_PAIR_RANGE
    return int(min(max(PAIRS_PER_IMAGE * num_images, low), high))


# Reading images


def _check_image_shape(image_size: int, channels: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"data.image_size must be an integer >= 1, got {image_size!r}")
    if channels not in _MODES or isinstance(channels, bool):
        raise ValueError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")


def _normalized(image: Image.Image, channels: int) -> Image.Image:
    """Upright, 8-bit, on white, in the configured mode."""
    image = ImageOps.exif_transpose(image)  # phone photos are stored sideways with a rotation tag
    if image.mode.startswith("I"):
        # 16-bit PNG/PGM: keep the top 8 bits; convert("L") would clip nearly everything to white.
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent pixels often hold black: a scanned signature would vanish on a black ground.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert(_MODES[channels])


def _decode_problem(path: str, image_size: int, channels: int) -> str | None:
    """Why this file's pixels cannot be read as `read_image` reads them, or None when they can."""
    try:
        with Image.open(path) as image:
            image.draft(_MODES[channels], (image_size, image_size))
            _normalized(image, channels)  # converting decodes every pixel
            return None
    except FileNotFoundError:
        return "does not exist"
    except IsADirectoryError:
        return "is a folder"
    except UnidentifiedImageError:
        return "not an image PIL can read"
    except _BAD_IMAGE_ERRORS as error:
        return str(error)


# Pair tables


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The CSV's non-blank data rows as (line number, the three columns), after checking the header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets write a BOM
            reader = csv.reader(file)
            header = [name.strip() for name in next(reader, [])]
            _check_columns(path, header)
            positions = [header.index(column) for column in CSV_COLUMNS]
            rows, lines_read = [], reader.line_num
            for fields in reader:
                if any(field.strip() for field in fields):
                    values = [fields[i].strip() if i < len(fields) else "" for i in positions]
                    rows.append((lines_read + 1, dict(zip(CSV_COLUMNS, values))))
                lines_read = reader.line_num
    except FileNotFoundError:
        raise ImageDataError(f"pair CSV {path} does not exist") from None
    except IsADirectoryError:
        raise ImageDataError(f"pair CSV {path} is a folder; give the CSV file itself") from None
    except UnicodeDecodeError as error:
        raise ImageDataError(f"pair CSV {path} cannot be parsed: it is not UTF-8 text ({error})") from None
    except csv.Error as error:
        raise ImageDataError(f"pair CSV {path} cannot be parsed: {error}") from None
    return rows


def _check_columns(path: Path, header: list[str]) -> None:
    missing = [column for column in CSV_COLUMNS if column not in header]
    if not missing:
        return
    present = ", ".join(repr(name) for name in header) or "none"
    looks_like_data = any(Path(name).suffix.lower() in IMAGE_SUFFIXES for name in header)
    hint = "; its first line looks like data: add a header line" if looks_like_data else ""
    raise ImageDataError(
        f"pair CSV {path} has no column {', '.join(missing)} in its header (line 1); columns present: "
        f"{present}; the header must name left_path, right_path and label{hint}"
    )


def _parse_pairs(path: Path, rows: list[tuple[int, dict[str, str]]], image_size: int, channels: int) -> ImagePairFiles:
    """Labels as numbers and paths made absolute; empty or non-numeric cells are reported by line."""
    bad_labels = [f"line {line} ({row['label']!r})" for line, row in rows if not _is_finite_number(row["label"])]
    if bad_labels:
        raise ImageDataError(
            f"pair CSV {path}: {len(bad_labels)} row(s) have an empty or non-numeric label: "
            f"{_listing(bad_labels)}; every row needs a finite number in column 'label'"
        )
    empty_paths = [
        f"line {line} ({column})" for line, row in rows for column in CSV_COLUMNS[:2] if not row[column]
    ]
    if empty_paths:
        raise ImageDataError(
            f"pair CSV {path}: {len(empty_paths)} empty image path(s): {_listing(empty_paths)}; "
            "every row needs a left_path and a right_path"
        )
    folder = path.parent.absolute()
    return ImagePairFiles(
        left=[_resolve(row["left_path"], folder) for _, row in rows],
        right=[_resolve(row["right_path"], folder) for _, row in rows],
        labels=[float(row["label"]) for _, row in rows],
        image_size=image_size,
        channels=channels,
    )


def _is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _resolve(text: str, folder: Path) -> str:
    """An absolute path; a relative one is read from the CSV's folder, not the working directory."""
    return os.path.normpath(folder / text)


def _check_binary_labels(path: Path, labels: np.ndarray, lines: list[int]) -> None:
    bad = [f"line {line} ({label:g})" for line, label in zip(lines, labels) if label not in (0.0, 1.0)]
    if bad:
        raise ImageDataError(
            f"pair CSV {path}: data.task 'similarity' needs labels 0 or 1, but {len(bad)} row(s) have others: "
            f"{_listing(bad)}; fix the labels or set data.task to 'regression'"
        )


def _check_files_exist(path: Path, pairs: ImagePairFiles, rows: list[tuple[int, dict[str, str]]]) -> None:
    exists: dict[str, bool] = {}
    missing = []
    for (line, row), left, right in zip(rows, pairs.left, pairs.right):
        for column, absolute in (("left_path", left), ("right_path", right)):
            if absolute not in exists:
                exists[absolute] = os.path.isfile(absolute)
            if not exists[absolute]:
                missing.append(f"line {line} {column} {row[column]!r}")
    if missing:
        raise ImageDataError(
            f"pair CSV {path}: {len(missing)} image file(s) do not exist: {_listing(missing)}; "
            f"relative paths are read from the CSV's folder {path.parent.absolute()}"
        )


# Class folders


def _pair_counts(num_pairs: int, fractions: dict[str, float]) -> dict[str, int]:
    """Pairs per split, proportional to the fractions, with a floor so every used split measures something."""
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int):
        raise ValueError(f"data.num_pairs must be an integer, got {num_pairs!r}")
    counts = {
        name: max(MIN_EVAL_PAIRS, round(num_pairs * fractions[name])) if fractions[name] else 0
        for name in ("validation", "test")
    }
    train = num_pairs - sum(counts.values())
    if train < MIN_TRAIN_PAIRS:
        raise ValueError(
            f"data.num_pairs = {num_pairs} is too few: validation and test take {counts['validation']} and "
            f"{counts['test']} (at least {MIN_EVAL_PAIRS} each when used), leaving {train} for training; "
            f"use at least {sum(counts.values()) + MIN_TRAIN_PAIRS}"
        )
    return {"train": train} | counts


def _list_classes(root: Path) -> dict[str, list[str]]:
    """Class name (its path under root, `group/class`) -> its images, sorted so a seed gives the same pairs on any disk."""
    if not root.exists():
        raise ImageDataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise ImageDataError(
            f"{root} is not a folder: data.source 'folder' needs {root}/<class>/<image> (a CSV is data.source 'csv')"
        )
    loose, folders = _contents(root)
    if not folders:
        hint = f"; move its {len(loose)} images into one folder per class" if loose else ""
        raise ImageDataError(f"image folder {root} has no class subfolders: expected {root}/<class>/<image>{hint}")
    found: dict[Path, list[str]] = {}
    mixed: list[str] = []
    for folder in folders:
        _collect_classes(folder, frozenset({os.path.realpath(root)}), found, mixed)
    if mixed:
        raise ImageDataError(
            f"{len(mixed)} folder(s) in {root} hold both images and folders of images: {_listing(mixed)}; a folder "
            "is either a class (its images) or a group (its class folders): move those images into a class "
            "folder of their own, or move the class folders out"
        )
    if not found:
        raise ImageDataError(
            f"image folder {root} has {len(folders)} class folder(s) but no images in them or below them: images "
            f"need one of the suffixes {_suffix_list()} (hidden files and other suffixes are ignored)"
        )
    by_path = sorted(found.items(), key=lambda item: item[0].relative_to(root).parts)
    classes = {folder.relative_to(root).as_posix(): images for folder, images in by_path}
    single = [str(root / name) for name, images in classes.items() if len(images) == 1]
    if single:
        raise ImageDataError(
            f"{len(single)} class folder(s) have only one image: {_listing(single)}; same-class pairs need at "
            "least 2 images per class: add images or remove these folders"
        )
    return classes


def _collect_classes(folder: Path, ancestors: frozenset[str], found: dict[Path, list[str]], mixed: list[str]) -> bool:
    """Add the classes at or below `folder` to `found`, and folders holding images and folders of images to `mixed`.

    Returns whether `folder` or a folder below it holds images. `ancestors` (real paths) stops a
    linked folder that points back up from recursing forever.
    """
    real = os.path.realpath(folder)
    if real in ancestors:
        raise ImageDataError(f"{folder} links back to the folder {real} it is in: remove the link")
    images, subfolders = _contents(folder)
    below = [_collect_classes(subfolder, ancestors | {real}, found, mixed) for subfolder in subfolders]
    if images and any(below):
        mixed.append(str(folder))
    elif images:
        found[folder] = images
    return bool(images) or any(below)


def _contents(folder: Path) -> tuple[list[str], list[Path]]:
    """The folder's images (paths) and its subfolders, each sorted; hidden entries and other suffixes left out."""
    images, folders = [], []
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            folders.append(entry)
        elif entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
            images.append(str(entry))
    return sorted(images), sorted(folders)


def _units(classes: dict[str, list[str]], split_by: SplitBy) -> list[list[list[str]]]:
    """What is split whole, each as its classes' image lists: one class, or a group's classes (in order)."""
    if split_by is SplitBy.CLASS:
        return [[images] for images in classes.values()]
    groups: dict[str, list[list[str]]] = {}
    for name, images in classes.items():
        groups.setdefault(name.split("/", 1)[0], []).append(images)
    return list(groups.values())


def _split_whole(
    root: Path,
    units: list[list[list[str]]],
    split_by: SplitBy,
    fractions: dict[str, float],
    rng: np.random.Generator,
) -> dict[str, list[list[str]]]:
    """Whole classes, or whole groups of classes, per split; each split needs 2 classes for different-class pairs.

    A used split takes its fraction of the units, rounded, and at least 1; at least 2 when some unit
    holds a single class, since one such unit would leave a split without different-class pairs.
    A class split, and a group split of a flat folder (each class its own group), thus take at
    least 2 classes per split and give the same pairs for the same seed.
    """
    count = len(units)
    minimum = 1 if all(len(unit) >= 2 for unit in units) else 2
    sizes = {
        name: max(minimum, round(count * fractions[name])) if fractions[name] else 0 for name in ("validation", "test")
    }
    sizes = {"train": count - sum(sizes.values())} | sizes
    if sizes["train"] < minimum:
        raise ImageDataError(_too_few_units(root, count, split_by, minimum, sizes))
    parts = _partition(count, sizes, rng)
    return {name: [images for i in sorted(indices) for images in units[i]] for name, indices in parts.items()}


def _too_few_units(root: Path, count: int, split_by: SplitBy, minimum: int, sizes: dict[str, int]) -> str:
    used = [name for name in SPLIT_NAMES if name == "train" or sizes[name]]
    if split_by is SplitBy.CLASS:
        found, need, remedy = f"{count} classes", "2 classes", "add classes or set data.split_by to 'image'"
    else:
        found = f"{count} group(s) (folders directly under it; a class directly under it is its own group)"
        need = "1 group with 2 classes" if minimum == 1 else "2 groups"
        remedy = "add groups or set data.split_by to 'class'"
    taken = " and ".join(f"{sizes[name]} ({name})" for name in used[1:])
    return (
        f"image folder {root} has {found}, too few to split by {split_by}: {', '.join(used)} each need at least "
        f"{need} to draw different-class pairs, and data.validation_fraction and data.test_fraction take "
        f"{taken} of the {count}, leaving too few for train; {remedy}"
    )


def _split_images(
    root: Path, classes: dict[str, list[str]], fractions: dict[str, float], rng: np.random.Generator
) -> dict[str, list[list[str]]]:
    """Each class's images split between train, validation and test; each image in one split."""
    image_lists = list(classes.values())
    counts = _images_per_split(np.array([len(images) for images in image_lists]), fractions, rng)
    per_split: dict[str, list[list[str]]] = {name: [] for name in SPLIT_NAMES}
    for index, images in enumerate(image_lists):
        sizes = {name: int(counts[name][index]) for name in SPLIT_NAMES}
        for name, indices in _partition(len(images), sizes, rng).items():
            if len(indices):
                per_split[name].append([images[i] for i in sorted(indices)])
    for name in SPLIT_NAMES:
        _check_image_split(root, name, per_split[name], fractions[name], image_lists)
    return per_split


def _images_per_split(
    sizes: np.ndarray, fractions: dict[str, float], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Images of each class per split: its share of the class, rounded, but never exactly 1.

    A class enters validation or test with at least 2 images: a single one gives no same-class
    pair. A class whose share is below 1.5 images either brings 2 or none: such classes take
    turns in a seeded order, so the split still gets about its share of the images. Classes of
    8 or more images (at fraction 0.2) are in every split.
    """
    remaining = sizes.copy()
    counts = {}
    for name in ("test", "validation"):
        shares = sizes * fractions[name]
        count = np.minimum(np.where(shares >= 1.5, np.floor(shares + 0.5), 0).astype(int), remaining)
        count[count == 1] = 0
        owed = 0.0
        for index in rng.permutation(len(sizes)):
            if count[index] == 0:
                owed += shares[index]
                if owed >= 1.0 and remaining[index] >= 2:
                    count[index], owed = 2, owed - 2.0
        remaining -= count
        counts[name] = count
    return {"train": remaining} | counts


def _check_image_split(
    root: Path, name: str, split_classes: list[list[str]], fraction: float, image_lists: list[list[str]]
) -> None:
    """A used split needs a class with 2 images (same-class pairs) and 2 classes (different-class pairs)."""
    if fraction == 0:
        return
    remedy = f"add images per class, {_fraction_hint(name)}, or set data.split_by to 'class'"
    if not any(len(images) >= 2 for images in split_classes):
        sizes = sorted(len(images) for images in image_lists)
        raise ImageDataError(
            f"data.split_by 'image' leaves no class with 2 images in the {name} split of {root}, so it has no "
            f"same-class pairs ({len(sizes)} classes of {sizes[0]} to {sizes[-1]} images); {remedy}"
        )
    if len(split_classes) < 2:
        raise ImageDataError(
            f"data.split_by 'image' leaves only one class in the {name} split of {root}, so it has no "
            f"different-class pairs; {remedy}"
        )


def _fraction_hint(split: str) -> str:
    if split == "train":
        return "lower data.validation_fraction and data.test_fraction"
    return f"raise data.{split}_fraction"


def _partition(count: int, sizes: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shuffle `range(count)` and cut it into consecutive parts of the given sizes, one per split."""
    order = rng.permutation(count)
    bounds = np.cumsum([sizes[name] for name in SPLIT_NAMES])[:-1]
    return dict(zip(SPLIT_NAMES, np.split(order, bounds)))


def _draw_pairs(
    classes: list[list[str]], count: int, image_size: int, channels: int, rng: np.random.Generator
) -> ImagePairFiles:
    """`count // 2` same-class and the rest different-class pairs from one split's classes, shuffled."""
    if count == 0:
        return ImagePairFiles(np.array([], np.str_), np.array([], np.str_), np.array([], np.float32), image_size, channels)
    paths = np.array([path for images in classes for path in images])
    sizes = np.array([len(images) for images in classes])
    starts = np.cumsum(sizes) - sizes
    num_same = count // 2
    same_left, same_right = _same_class_indices(starts, sizes, num_same, rng)
    different_left, different_right = _different_class_indices(starts, sizes, count - num_same, rng)
    labels = np.concatenate([np.ones(num_same), np.zeros(count - num_same)])
    order = rng.permutation(count)
    left = np.concatenate([same_left, different_left])[order]
    right = np.concatenate([same_right, different_right])[order]
    return ImagePairFiles(paths[left], paths[right], labels[order], image_size, channels)


def _same_class_indices(
    starts: np.ndarray, sizes: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A class (uniformly, among those with 2 images) and two different images of it, per pair."""
    classes = rng.choice(np.flatnonzero(sizes >= 2), size=count)
    first = rng.integers(0, sizes[classes])
    second = rng.integers(0, sizes[classes] - 1)
    second += second >= first  # skip `first`: an image is never paired with itself
    return starts[classes] + first, starts[classes] + second


def _different_class_indices(
    starts: np.ndarray, sizes: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Two different classes (uniformly) and one image of each, per pair."""
    first = rng.integers(0, len(sizes), size=count)
    second = rng.integers(0, len(sizes) - 1, size=count)
    second += second >= first
    return starts[first] + rng.integers(0, sizes[first]), starts[second] + rng.integers(0, sizes[second])


# Messages and arguments


def _listing(items: Sequence[str]) -> str:
    """The first few problems and how many more: enough to see the pattern without a wall of text."""
    shown = ", ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def _suffix_list() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES))
