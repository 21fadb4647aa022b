"""Pretrained word vectors: GloVe and word2vec/fastText text files (plain, .gz) aligned to a vocabulary; bad files."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest

from siamese.data.word_vectors import WordVectorsError, load_word_vectors

DIMENSION = 4
FILE_WORDS = ["the", "cat", "dog", "sat", "on"]  # frequent first, as published files are
VOCABULARY = ["", "[UNK]", "the", "cat", "mat", "sat"]  # "mat" is not in the file


def vectors(words: list[str], seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {word: rng.normal(size=DIMENSION).astype(np.float32) for word in words}


def write(path: Path, lines: list[str]) -> Path:
    """Writes lines as UTF-8, gzip-compressed when the name ends in .gz."""
    text = "".join(f"{line}\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as file:
            file.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def vector_lines(table: dict[str, np.ndarray]) -> list[str]:
    return [" ".join([word, *(repr(float(value)) for value in vector)]) for word, vector in table.items()]


def glove(path: Path, table: dict[str, np.ndarray]) -> Path:
    return write(path, vector_lines(table))


def word2vec(path: Path, table: dict[str, np.ndarray]) -> Path:
    return write(path, [f"{len(table)} {DIMENSION}", *vector_lines(table)])


@pytest.mark.parametrize(
    ("name", "writer"),
    [("glove.txt", glove), ("glove.txt.gz", glove), ("vectors.vec", word2vec), ("vectors.vec.gz", word2vec)],
)
def test_vectors_are_aligned_to_the_vocabulary(tmp_path, name, writer):
    table = vectors(FILE_WORDS)
    result = load_word_vectors(writer(tmp_path / name, table), VOCABULARY)

    assert result.matrix.shape == (len(VOCABULARY), DIMENSION) and result.matrix.dtype == np.float32
    assert result.dimension == DIMENSION
    np.testing.assert_array_equal(result.matrix[0], 0.0)  # padding
    for row, word in enumerate(VOCABULARY):
        if word in table:
            np.testing.assert_array_equal(result.matrix[row], table[word])
    assert np.abs(result.matrix[[1, 4]]).min() > 0  # [UNK] and "mat": random, not zeros
    assert result.found == 3
    assert result.coverage == pytest.approx(3 / 4)  # padding and [UNK] are not words
    assert result.missing == ("mat",)
    assert result.path == tmp_path / name


def test_the_vocabulary_of_a_real_tokenizer_lines_up(tmp_path):
    from siamese.models.text import build_tokenizer

    vocabulary = build_tokenizer(["The cat sat.", "the dog sat on the mat"]).get_vocabulary()
    table = vectors(FILE_WORDS)
    result = load_word_vectors(glove(tmp_path / "glove.txt", table), vocabulary)

    for word in FILE_WORDS:
        np.testing.assert_array_equal(result.matrix[vocabulary.index(word)], table[word])
    assert result.missing == ("mat",)


def test_other_casing_is_used_only_as_a_fallback(tmp_path):
    table = vectors(["Paris", "London", "london", "the"])
    path = glove(tmp_path / "glove.txt", table)
    vocabulary = ["", "[UNK]", "paris", "london", "the"]

    result = load_word_vectors(path, vocabulary)
    np.testing.assert_array_equal(result.matrix[2], table["Paris"])
    np.testing.assert_array_equal(result.matrix[3], table["london"])  # the exact match wins, though later
    assert result.found == 3

    strict = load_word_vectors(path, vocabulary, lowercase_fallback=False)
    assert strict.found == 2 and strict.missing == ("paris",)


def test_missing_rows_are_seeded_and_scaled_like_the_found_vectors(tmp_path):
    rng = np.random.default_rng(2)
    table = {word: (3.0 * rng.normal(size=DIMENSION)).astype(np.float32) for word in FILE_WORDS}
    path = glove(tmp_path / "glove.txt", table)
    vocabulary = ["", "[UNK]", *FILE_WORDS, *(f"unseen{i}" for i in range(500))]

    first, again, other = (load_word_vectors(path, vocabulary, seed=seed) for seed in (0, 0, 1))

    np.testing.assert_array_equal(first.matrix, again.matrix)
    assert not np.array_equal(first.matrix[-1], other.matrix[-1])
    found_std = np.stack(list(table.values())).std()
    assert first.matrix[len(FILE_WORDS) + 2 :].std() == pytest.approx(found_std, rel=0.1)
    assert len(first.missing) == 10 and first.missing[0] == "unseen0"  # the most frequent first


def test_fasttext_trailing_spaces_crlf_blank_lines_and_words_with_spaces_are_read(tmp_path):
    table = vectors(["new york", "the", "cat"])
    lines = [f"{len(table)} {DIMENSION} ", *(f"{line} \r" for line in vector_lines(table)), ""]
    result = load_word_vectors(write(tmp_path / "crawl.vec", lines), ["", "[UNK]", "cat", "the"])

    np.testing.assert_array_equal(result.matrix[2], table["cat"])
    np.testing.assert_array_equal(result.matrix[3], table["the"])


def test_the_result_is_frozen(tmp_path):
    result = load_word_vectors(glove(tmp_path / "glove.txt", vectors(FILE_WORDS)), VOCABULARY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.found = 0  # type: ignore[misc]


def test_a_missing_file_is_never_downloaded(tmp_path):
    with pytest.raises(WordVectorsError, match=r"not found: .*nowhere\.txt.*never downloaded"):
        load_word_vectors(tmp_path / "nowhere.txt", VOCABULARY)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["the 1 2 3 4", "cat 1 2 3"], r"line 2: 3 values, expected 4 \(the dimension of line 1\)"),
        (["2 4", "the 1 2 3 4", "cat 1 2"], r"line 3: 2 values, expected 4 \(the dimension of the header\)"),
        (["the 1 2 x 4"], r"line 1: a non-numeric value in the vector of 'the'"),
        (["dog 1 2 3 4", "the 1 nan 3 4"], r"line 2: the vector of 'the' has a non-finite value"),
        (["the"], r"line 1: a word with no values"),
        ([], r"is empty"),
        (["0 4"], r"has a header but no word vectors"),
        (["3 4", "the 1 2 3 4", "cat 1 2 3 4"], r"header declares 3 vectors but the file has 2"),
        (["1 0"], r"header declares dimension 0"),
    ],
)
def test_a_bad_file_is_named_with_its_line(tmp_path, lines, message):
    path = write(tmp_path / "bad.txt", lines)
    with pytest.raises(WordVectorsError, match=message) as caught:
        load_word_vectors(path, VOCABULARY)
    assert str(path) in str(caught.value)


def test_no_vocabulary_word_in_the_file_is_an_error_naming_both_sides(tmp_path):
    path = glove(tmp_path / "glove.txt", vectors(["le", "chat"]))
    with pytest.raises(WordVectorsError, match=r"none of the 4 vocabulary words.*\['le', 'chat'\].*\['the', 'cat'"):
        load_word_vectors(path, VOCABULARY)


def test_binary_and_broken_gzip_files_are_refused(tmp_path):
    binary = tmp_path / "GoogleNews-vectors-negative300.bin"
    binary.write_bytes(b"1 4\n\x00\x01")
    with pytest.raises(WordVectorsError, match="binary word2vec files are not supported"):
        load_word_vectors(binary, VOCABULARY)

    not_gzip = glove(tmp_path / "glove.txt", vectors(FILE_WORDS)).rename(tmp_path / "glove.txt.gz")
    with pytest.raises(WordVectorsError, match="cannot read word vectors file"):
        load_word_vectors(not_gzip, VOCABULARY)


@pytest.mark.parametrize("vocabulary", [["the", "cat"], ["", "[UNK]"], ["[UNK]", "", "the"]])
def test_the_vocabulary_must_come_from_text_vectorization(tmp_path, vocabulary):
    path = glove(tmp_path / "glove.txt", vectors(FILE_WORDS))
    with pytest.raises(ValueError, match="TextVectorization vocabulary"):
        load_word_vectors(path, vocabulary)
