"""Pretrained word vectors the user already has, aligned to a tokenizer's vocabulary.

Reads the text formats that GloVe, word2vec and fastText publish: one `word v1 ... vD` line per
word, with a `count dimension` header line for word2vec/fastText (detected) and none for GloVe,
optionally gzip-compressed (`.gz`). Nothing is ever downloaded: the file must be on disk.

Published files hold millions of words (gigabytes), so the file is streamed line by line and
only the vocabulary's words are kept; only their values are parsed. Every line is split from the
right on the dimension, so a word may contain spaces; a line with too few values (a truncated or
mixed file) is reported with its line number, while one with too many is read as a word with a
space and simply matches no vocabulary word. A GloVe file whose first line is two integers
("7 0") would be taken for a header: only possible with dimension 1.

The result is an embedding matrix whose row `i` is the vector of vocabulary word `i`, ready to
initialise an `Embedding` layer (frozen or fine-tuned: the caller decides).
"""

from __future__ import annotations

import contextlib
import gzip
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

# A TextVectorization vocabulary starts with these two entries; neither is a word to look up.
_RESERVED = ("", "[UNK]")
# UTF-8, with or without a byte order mark. Some published files hold a few words with broken
# byte sequences (cut mid-character); "replace" turns those into words no vocabulary contains,
# instead of aborting a gigabyte read over them.
_ENCODING = "utf-8-sig"
_DECODE_ERRORS = "replace"
_HEADER = re.compile(r"(\d+) (\d+)")  # word2vec/fastText: "count dimension"
_EXAMPLES = 5  # words named in messages
_MISSING_EXAMPLES = 10  # missing words kept on the result, for the caller's log


class WordVectorsError(ValueError):
    """A word vectors file that cannot be used; the message names the file and, where known, the line."""


@dataclass(frozen=True)
class WordVectors:
    """Vectors aligned to a vocabulary: `matrix[i]` belongs to `vocabulary[i]`.

    Row 0 (padding) is zeros. Rows of words not in the file, and of `[UNK]`, are random normal
    vectors with the found vectors' standard deviation (see `load_word_vectors`).
    """

    path: Path
    matrix: np.ndarray  # float32, (len(vocabulary), dimension)
    dimension: int
    found: int  # vocabulary words (padding and [UNK] excluded) that have a vector in the file
    coverage: float  # found / number of vocabulary words, in [0, 1]
    missing: tuple[str, ...]  # the first missing words in vocabulary order (most frequent first)


@dataclass(frozen=True)
class _Scan:
    """What one pass over the file kept."""

    dimension: int
    vectors: dict[str, np.ndarray]  # vocabulary word -> vector
    count: int  # vector lines read
    declared: int | None  # as in _Layout
    first_words: tuple[str, ...]  # for a message when nothing matched


def load_word_vectors(
    path: str | Path, vocabulary: Sequence[str], *, lowercase_fallback: bool = True, seed: int = 0
) -> WordVectors:
    """Read a GloVe/word2vec/fastText text file and align its vectors to `vocabulary`.

    Words are matched exactly first. With `lowercase_fallback`, a word found only with other
    casing ("Paris" for the tokenizer's lower-cased "paris") is used too, its first occurrence
    winning: files list frequent words first. Missing words (and `[UNK]`) get random normal
    vectors drawn from `seed` with the found vectors' standard deviation, not zeros: zero rows
    would make every missing word identical and indistinguishable from padding (a masking layer
    would drop them), and, when frozen, carry nothing; random rows of the same scale keep them
    distinct and trainable. Every row is drawn before the found vectors are copied in, so a
    missing word's vector does not depend on which other words were found.

    Args:
        path: the vectors file; `.gz` is read as gzip. Binary word2vec (`.bin`) is not supported.
        vocabulary: a TextVectorization vocabulary, `get_vocabulary()`: `""`, `"[UNK]"`, words.
        lowercase_fallback: also match file words whose lower-case form is a vocabulary word.
        seed: seeds the random vectors of missing words.

    Returns:
        The aligned matrix with its dimension, how many words were found, the coverage and the
        first missing words; the caller logs the coverage.

    Raises:
        ValueError: `vocabulary` is not a TextVectorization vocabulary with at least one word.
        WordVectorsError: the file is missing, binary or unreadable, a line has the wrong number
            of values or a non-numeric one, the file has no vectors, the header's count does not
            match the file, or no vocabulary word is in the file (surely the wrong file or tokenizer).
    """
    path = _checked(path)
    words = _words(vocabulary)
    with _lines(path) as lines:
        scan = _scan(lines, path, frozenset(words), lowercase_fallback)
    _check_complete(scan, path, words)
    return WordVectors(
        path=path,
        matrix=_aligned(words, scan, seed),
        dimension=scan.dimension,
        found=len(scan.vectors),
        coverage=len(scan.vectors) / len(words),
        missing=tuple(word for word in words if word not in scan.vectors)[:_MISSING_EXAMPLES],
    )


def _checked(path: str | Path) -> Path:
    """The path, if it is a text vectors file on disk."""
    path = Path(path)
    if not path.is_file():
        raise WordVectorsError(
            f"word vectors file not found: {path.resolve()}. Pretrained vectors are never downloaded: "
            "put a GloVe, word2vec or fastText text file (optionally .gz) there, or give no vectors "
            "file to train the embedding from scratch"
        )
    if path.name.lower().endswith((".bin", ".bin.gz")):
        raise WordVectorsError(
            f"{path}: binary word2vec files are not supported; save it in the text format, e.g. with "
            "gensim: KeyedVectors.load_word2vec_format(path, binary=True).save_word2vec_format(out)"
        )
    return path


def _words(vocabulary: Sequence[str]) -> list[str]:
    """The vocabulary's words, after padding and [UNK]: matrix row `i + 2` is `words[i]`."""
    if tuple(vocabulary[:2]) != _RESERVED or len(vocabulary) < 3:
        raise ValueError(
            "vocabulary must be a TextVectorization vocabulary: '' (padding), '[UNK]', then at least "
            f"one word; got {list(vocabulary[:3])!r} ({len(vocabulary)} entries)"
        )
    return list(vocabulary[2:])


@contextlib.contextmanager
def _lines(path: Path) -> Iterator[TextIO]:
    """The file as text lines, gunzipped by suffix; read failures become WordVectorsError.

    Lines end at "\\n" only: a stray "\\r" or Unicode line separator inside a word stays in it.
    """
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding=_ENCODING, errors=_DECODE_ERRORS, newline="\n") as lines:
            yield lines
    except (OSError, EOFError) as error:  # not gzip, truncated gzip, unreadable
        raise WordVectorsError(f"cannot read word vectors file {path}: {error}") from error


def _scan(lines: Iterable[str], path: Path, wanted: frozenset[str], lowercase_fallback: bool) -> _Scan:
    """One pass: the dimension, and the vectors of the wanted words (exact matches win)."""
    records, layout = _layout(_nonblank(lines), path)
    exact: dict[str, np.ndarray] = {}
    folded: dict[str, np.ndarray] = {}
    first_words: list[str] = []
    count = 0
    for number, line in records:
        parts = line.rsplit(" ", layout.dimension)  # from the right: a word may contain spaces
        if len(parts) != layout.dimension + 1:
            raise WordVectorsError(
                f"{path} line {number}: {line.count(' ')} values, expected {layout.dimension} "
                f"(the dimension of {layout.source}); a truncated or mixed file?"
            )
        word = parts[0]
        count += 1
        if len(first_words) < _EXAMPLES:
            first_words.append(word)
        if word in wanted:
            if word not in exact:
                exact[word] = _values(parts, number, path)
        elif lowercase_fallback and (lower := word.lower()) in wanted and lower not in folded:
            folded[lower] = _values(parts, number, path)
    return _Scan(layout.dimension, {**folded, **exact}, count, layout.declared, tuple(first_words))


@dataclass(frozen=True)
class _Layout:
    """How the file's vector lines are to be read."""

    dimension: int
    declared: int | None  # the header's vector count; None without a header (GloVe)
    source: str  # where the dimension came from, for messages


def _layout(records: Iterator[tuple[int, str]], path: Path) -> tuple[Iterator[tuple[int, str]], _Layout]:
    """The vector lines and their layout: from a `count dimension` header, else from the first line."""
    first = next(records, None)
    if first is None:
        raise WordVectorsError(f"{path} is empty: it has no word vectors")
    number, line = first
    header = _HEADER.fullmatch(line)
    if header:
        layout = _Layout(int(header[2]), int(header[1]), "the header")
        if layout.dimension < 1:
            raise WordVectorsError(
                f"{path} line {number}: the header declares dimension {layout.dimension}; expected >= 1"
            )
        return records, layout
    layout = _Layout(line.count(" "), None, f"line {number}")  # GloVe: the first vector line sets it
    if layout.dimension < 1:
        raise WordVectorsError(f"{path} line {number}: a word with no values: {line[:50]!r}")
    return _chained(first, records), layout


def _nonblank(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line end and trailing spaces), blank lines skipped.

    fastText ends each line with a space; blank lines (a trailing one) carry nothing.
    """
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n ")
        if line:
            yield number, line


def _chained(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """`first`, then `rest`: the GloVe first line is a vector line too."""
    yield first
    yield from rest


def _values(parts: list[str], number: int, path: Path) -> np.ndarray:
    """The vector of one split line, checked to be finite numbers."""
    try:
        vector = np.asarray(parts[1:], dtype=np.float32)
    except ValueError as error:
        raise WordVectorsError(
            f"{path} line {number}: a non-numeric value in the vector of {parts[0]!r}: {error}"
        ) from None
    if not np.isfinite(vector).all():
        raise WordVectorsError(f"{path} line {number}: the vector of {parts[0]!r} has a non-finite value (nan or inf)")
    return vector


def _check_complete(scan: _Scan, path: Path, words: list[str]) -> None:
    """The file had vectors, as many as its header says, and at least one vocabulary word."""
    if scan.count == 0:
        raise WordVectorsError(f"{path} has a header but no word vectors")
    if scan.declared is not None and scan.declared != scan.count:
        raise WordVectorsError(
            f"{path}: the header declares {scan.declared:,} vectors but the file has {scan.count:,}; "
            "a truncated download or an edited file? Fix the file or its header"
        )
    if not scan.vectors:
        raise WordVectorsError(
            f"{path}: none of the {len(words):,} vocabulary words is in the file ({scan.count:,} vectors), "
            f"surely the wrong file or tokenizer. The file starts with {list(scan.first_words)!r}; "
            f"the vocabulary with {words[:_EXAMPLES]!r}"
        )


def _aligned(words: list[str], scan: _Scan, seed: int) -> np.ndarray:
    """The (len(words) + 2, dimension) matrix: padding zeros, found vectors, random rows elsewhere."""
    scale = float(np.stack(list(scan.vectors.values())).std())
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, scale, size=(len(words) + len(_RESERVED), scan.dimension)).astype(np.float32)
    matrix[0] = 0.0
    for row, word in enumerate(words, start=len(_RESERVED)):
        if word in scan.vectors:
            matrix[row] = scan.vectors[word]
    return matrix
