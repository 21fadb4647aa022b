"""Labelled text pairs from a table file: which columns, which rows are usable, how to split.

A pair file is a CSV, TSV or Parquet table (read by `siamese.data.tables`, which also decides what
its quote characters mean) with two text columns and a label: the Quora layout `question1,
question2, is_duplicate`, MRPC's `#1 String, #2 String, Quality` and other common layouts are
recognised without options; anything else is named explicitly. Every row is checked with a
pandera schema before training, and every problem is reported at once with the column, the
count and the lines to fix, because a long run should not stop at the first bad row, and a
model should not silently learn from rows it misread. A graded score (0-5, 1-5, ...) becomes a 0/1
label at a threshold, or is kept as a number to predict (`graded`, `data.task = "regression"`).

Splits group a pair with its swapped twin and its exact duplicates (after normalising case and
whitespace), so the test set never contains a pair the model was trained on in other clothes.
A file that carries its published split in a column (`data.split_column`) is split as published
instead, so a published result can be reproduced (`split_by_column`).
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import pandera.pandas as pa

from siamese.data.pairs import SPLIT_NAMES, PairSplits, array_dataset, check_fractions
from siamese.data.tables import AtomicTableWriter, PairFileError, ReadOptions, describe_rows, read_columns, read_table

if TYPE_CHECKING:
    import tensorflow as tf

MIN_ROWS = 20  # each of three splits needs both labels, with some room to spare
WORDLESS = "only punctuation, symbols or emoji"  # what a text without a letter or digit holds
KNOWN_TEXT_COLUMNS = (
    ("question1", "question2"),  # Quora Question Pairs
    ("left", "right"),
    ("sentence1", "sentence2"),  # GLUE MRPC/RTE, SNLI
    ("text1", "text2"),
    ("text_a", "text_b"),
    ("s1", "s2"),
    ("q1", "q2"),
    ("#1 String", "#2 String"),  # Microsoft Research Paraphrase Corpus
)
KNOWN_LABEL_COLUMNS = (
    "is_duplicate",
    "label",
    "is_paraphrase",
    "duplicate",
    "is_similar",
    "similarity",
    "score",
    "target",
    "quality",  # MRPC
)
# A split column's values (case-insensitive) -> the split. "trial" is validation: SICK's TRIAL set is
# its development set. "eval" is not accepted: some sets mean validation by it, others test.
SPLIT_VALUES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "development": "validation",
    "trial": "validation",
    "test": "test",
    "testing": "test",
}
SAVED_COLUMNS = ("left", "right", "label", "row")
# Graded scores are split within score quantiles (5: quintiles), so low, middle and high scores all reach
# every split; stratifying by exact value would send every score seen once or twice to train.
GRADED_STRATA = 5

_COLUMN_KEYS = {
    "left": "data.left_column",
    "right": "data.right_column",
    "label": "data.label_column",
    "split": "data.split_column",
}
_BOOLEAN_WORDS = {"true": 1.0, "false": 0.0}
_SPLIT_NEEDS = {False: "pairs of both labels", True: "at least two different scores"}  # by `graded`
_DROP_HINT = "fix these rows, or drop invalid rows with data.drop_invalid_rows = true"
_SPLIT_HINT = (
    "a split value is one of "
    + "; ".join(
        f"{split}: {', '.join(value for value, named in SPLIT_VALUES.items() if named == split)}" for split in SPLIT_NAMES
    )
    + " (in any case), or name another column with data.split_column"
)


@dataclass(frozen=True)
class PairColumns:
    """The file's own names of the two text columns and the label column (None: no label)."""

    left: str
    right: str
    label: str | None


@dataclass(frozen=True)
class TextPairs:
    """Text pairs held in memory, with a label (0/1, or a graded score) and the source row of each.

    `left` and `right` are object arrays of Python `str` (what Keras text layers take),
    `labels` float32 (0/1, or the file's graded scores), `rows` int64: each pair's 0-based data row
    in the file it came from, so a score or a mistake can be traced back to a line. Lists are
    accepted and converted.
    One of the containers of the pair-data protocol (`siamese.data.pairs`).
    """

    left: np.ndarray
    right: np.ndarray
    labels: np.ndarray
    rows: np.ndarray

    suffix: ClassVar[str] = ".parquet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "left", np.asarray(self.left, dtype=object).reshape(-1))
        object.__setattr__(self, "right", np.asarray(self.right, dtype=object).reshape(-1))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "rows", np.asarray(self.rows, dtype=np.int64).reshape(-1))
        if not len(self.left) == len(self.right) == len(self.labels) == len(self.rows):
            raise ValueError(
                f"left, right, labels and rows must have one entry per pair, got {len(self.left)}, "
                f"{len(self.right)}, {len(self.labels)} and {len(self.rows)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self) -> dict[str, np.ndarray]:
        """The model's inputs, keyed by input name."""
        return {"left": self.left, "right": self.right}

    def take(self, indices: np.ndarray | slice) -> TextPairs:
        return TextPairs(self.left[indices], self.right[indices], self.labels[indices], self.rows[indices])

    def head(self, count: int) -> TextPairs:
        """The first `count` pairs (already in memory, as text: the model tokenises inside)."""
        return self.take(slice(0, count))

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, autotune: bool | None = None) -> tf.data.Dataset:
        """`Pairs.dataset`: string batches sliced from the arrays, autotuning off unless `autotune` (`array_dataset`)."""
        return array_dataset(self.inputs(), self.labels, batch_size, shuffle, seed, autotune)

    def pairs_with_timestep_equal_to(self, value: float) -> None:
        """Raw strings are not sequences of feature vectors: nothing for a `Masking` layer to find."""
        return None

    def save(self, path: str | Path) -> Path:
        """Write a Parquet table (`left, right, label, row`) that `load` reads back exactly; atomic.

        Steps hand each other this file. An empty set (an unused validation split) is written
        with its columns, so it loads back empty.
        """
        frame = pd.DataFrame(
            {
                "left": pd.Series(self.left, dtype=str),
                "right": pd.Series(self.right, dtype=str),
                "label": self.labels,
                "row": self.rows,
            }
        )
        with AtomicTableWriter(path) as writer:
            writer.write(frame)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> TextPairs:
        """Read a file written by `save`.

        Raises:
            PairFileError: the file is missing, unreadable or lacks one of the saved columns.
        """
        frame = read_table(path, columns=SAVED_COLUMNS)
        return cls(
            left=frame["left"].to_numpy(dtype=object),
            right=frame["right"].to_numpy(dtype=object),
            labels=frame["label"].to_numpy(dtype=np.float32),
            rows=frame["row"].to_numpy(dtype=np.int64),
        )


@dataclass(frozen=True)
class WithRandomNegatives:
    """Training pairs plus, in every batch, pairs of two texts drawn at random, labelled unrelated.

    A pair file's negatives are hard ones: two questions on one topic that mean different
    things. A model trained on them alone never sees two unrelated texts, and may score them
    high (a feature present on one side only can raise its score): harmless on the file's own
    pairs, fatal across a collection, where nearly every pair is unrelated (BENCHMARKS.md,
    "Duplicates in a collection"). Each batch of `n` pairs gets `ceil(per_pair * n)` more, two
    different texts of the split's pool each, labelled `unrelated` (0, or the bottom of a graded
    file's scale), drawn anew every pass from `seed`. Two texts drawn at random are almost
    never duplicates; the pool holds thousands of texts.
    Only `dataset` differs from `pairs`: the pairs' count, labels and subsets are the file's.
    """

    pairs: TextPairs
    per_pair: float
    unrelated: float = 0.0

    suffix: ClassVar[str] = TextPairs.suffix

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labels(self) -> np.ndarray:
        return self.pairs.labels

    def take(self, indices: np.ndarray | slice) -> TextPairs:
        return self.pairs.take(indices)

    def head(self, count: int) -> TextPairs:
        return self.pairs.head(count)

    def pairs_with_timestep_equal_to(self, value: float) -> None:
        return None

    def save(self, path: str | Path) -> Path:
        return self.pairs.save(path)

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, autotune: bool | None = None) -> tf.data.Dataset:
        """The pairs' batches (`TextPairs.dataset`), each followed by its random pairs."""
        import tensorflow as tf

        pool = pd.unique(np.concatenate([self.pairs.left, self.pairs.right]))
        texts, size = tf.constant(pool.astype(str)), len(pool)

        def add_random_pairs(inputs, labels, draw):
            extra = tf.cast(tf.math.ceil(self.per_pair * tf.cast(tf.shape(labels)[0], tf.float32)), tf.int32)
            first = tf.random.stateless_uniform([extra], seed=draw, maxval=size, dtype=tf.int32)
            # the second text is another one: an offset of 1..size-1 from the first
            offset = tf.random.stateless_uniform([extra], seed=draw[::-1], minval=1, maxval=max(size, 2), dtype=tf.int32)
            second = (first + offset) % size
            joined = {
                "left": tf.concat([inputs["left"], tf.gather(texts, first)], 0),
                "right": tf.concat([inputs["right"], tf.gather(texts, second)], 0),
            }
            return joined, tf.concat([labels, tf.fill([extra], tf.cast(self.unrelated, labels.dtype))], 0)

        batches = self.pairs.dataset(batch_size, shuffle, seed, autotune)
        if size < 2 or self.per_pair <= 0:
            return batches
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)  # a seed pair per batch
        return tf.data.Dataset.zip(batches, draws).map(lambda pairs, draw: add_random_pairs(*pairs, draw))


@dataclass(frozen=True)
class LoadedPairs:
    """Pairs read from a file, and what a run records about where they came from."""

    pairs: TextPairs
    columns: PairColumns
    source: str  # absolute path of the file
    total_rows: int  # data rows in the file, usable or not
    dropped: dict[str, int]  # reason -> rows dropped for it (each row under its first reason); empty if none
    content_hash: str  # sha256 of the file's bytes: the exact data a run trained on
    splits: np.ndarray | None = None  # with a split column: each pair's split (a SPLIT_NAMES entry)

    @property
    def dropped_rows(self) -> int:
        return sum(self.dropped.values())


def detect_columns(
    available: Sequence[str],
    *,
    left: str | None = None,
    right: str | None = None,
    label: str | None = None,
    require_label: bool = True,
    source: str,
) -> PairColumns:
    """Decide which columns hold the two texts and the label, returning the file's own spelling.

    Names given explicitly win; otherwise the known layouts (`KNOWN_TEXT_COLUMNS`,
    `KNOWN_LABEL_COLUMNS`) are tried in order, case-insensitively.

    Args:
        available: the file's column names (`read_columns`).
        left, right, label: explicit names (`data.left_column` and so on).
        require_label: False for files to score, which need no label (then None if absent).
        source: the file, as messages name it.

    Raises:
        PairFileError: an explicit column is missing, only one text column is named, one column
            is named for two roles, or no known layout matches; lists the file's columns and
            how to name them.
    """
    available = [str(name) for name in available]
    if (left is None) != (right is None):
        given = _COLUMN_KEYS["left" if left is not None else "right"]
        raise PairFileError(
            f"{source}: name both text columns (data.left_column and data.right_column); only {given} was given"
        )
    if left is not None and right is not None:
        left, right = _explicit(available, left, "left", source), _explicit(available, right, "right", source)
    else:
        left, right = _known_text_columns(available, source)
    if label is not None:
        label = _explicit(available, label, "label", source)
    else:
        label = next(
            (found for name in KNOWN_LABEL_COLUMNS if (found := _find(available, name)) not in (None, left, right)),
            None,
        )
        if label is None and require_label:
            raise PairFileError(
                f"{source}: cannot tell which column holds the 0/1 label; its columns are: "
                f"{', '.join(available)}; known label columns are {', '.join(KNOWN_LABEL_COLUMNS)}. "
                "Name it with data.label_column"
            )
    named = [name for name in (left, right, label) if name is not None]
    if len(set(named)) < len(named):
        raise PairFileError(
            f"{source}: column {_repeated(named)!r} is named for two roles (left {left!r}, right {right!r}, "
            f"label {label!r}); each needs its own column"
        )
    return PairColumns(left, right, label)


def load_text_pairs(
    path: str | Path,
    *,
    left_column: str | None = None,
    right_column: str | None = None,
    label_column: str | None = None,
    threshold: float | None = None,
    graded: bool = False,
    drop_invalid_rows: bool = False,
    min_rows: int = MIN_ROWS,
    split_column: str | None = None,
    options: ReadOptions = ReadOptions(),
) -> LoadedPairs:
    """Read, check and convert a labelled pair file for training.

    Args:
        path: a `.csv`, `.tsv`/`.tab`/`.txt` or `.parquet`/`.pq` file with a header.
        left_column, right_column, label_column: explicit column names; detected when None.
        threshold: None: the label is 0/1 (also `true`/`false`). A number: the label column is a
            graded score and a pair is a duplicate (1) when its score is at least this.
        graded: the label column is a graded score (0-5, 1-5, ...) kept as it is, to predict as a
            number (`data.task = "regression"`); not with a threshold.
        drop_invalid_rows: drop rows that fail a check (counted in `dropped`) instead of failing.
        min_rows: fewer usable rows than this is an error.
        split_column: a column naming each row's split (`SPLIT_VALUES`); its values are checked
            like the label's, and `LoadedPairs.splits` holds them. None: no split column.
        options: the file's format and quoting (`data.format`, `data.quoting`); detected by default.

    Returns:
        LoadedPairs; text is kept as written (not stripped), `rows` are the file's data rows.

    Raises:
        PairFileError: the file is missing or unparseable (naming the line and the option to try,
            never blaming rows for it); its columns cannot be found; rows are invalid (one line
            per problem: column, count, first lines); too few usable rows; or only one label.
            Each message names the file.
        ValueError: `threshold` or `min_rows` is not a usable number, or `graded` with a threshold.
    """
    _check_arguments(threshold, min_rows, graded)
    path = Path(path)
    source = str(path)
    available = read_columns(path, options)
    columns = detect_columns(available, left=left_column, right=right_column, label=label_column, source=source)
    split = _split_column(available, split_column, columns, source)
    frame = read_table(path, columns=[columns.left, columns.right, columns.label, *split], options=options)
    failures = _failures(frame, _rules(columns, threshold, graded) + [rule for name in split for rule in _split_rules(name)])
    if failures and not drop_invalid_rows:
        problems = (_problem_line(path, frame, rule, indices, options) for rule, indices in failures)
        raise PairFileError("\n".join([*problems, _DROP_HINT]))
    invalid, dropped = _attribute(len(frame), failures)
    usable = frame[~invalid]
    labels = _labels(usable[columns.label], threshold)
    _check_usable(source, labels, len(frame), dropped, min_rows, threshold, graded)
    pairs = TextPairs(
        left=usable[columns.left].astype(str).to_numpy(dtype=object),
        right=usable[columns.right].astype(str).to_numpy(dtype=object),
        labels=labels,
        rows=np.flatnonzero(~invalid),
    )
    splits = usable[split[0]].map(_split_name).to_numpy(dtype=object) if split else None
    return LoadedPairs(pairs, columns, str(path.absolute()), len(frame), dropped, _sha256(path), splits)


def split_by_column(
    pairs: TextPairs, splits: np.ndarray, validation_fraction: float, seed: int, graded: bool = False
) -> PairSplits[TextPairs]:
    """The splits a file names in its split column (`LoadedPairs.splits`): a published split, reproduced.

    Pairs are not regrouped: a published split is used as published, twins and all. A file
    with no validation rows (many ship train and test only) gets `validation_fraction` of its
    train rows as validation, chosen as `split_text_pairs` chooses (twins together, stratified,
    seeded); with `validation_fraction` 0 validation stays empty. `graded`: labels are graded
    scores (`load_text_pairs`), and each split needs two different scores instead of both labels.

    Raises:
        ValueError: train or test is empty or lacks a label (or a second score), or so is the
            validation split (given or carved); says which.
    """
    indices = {name: np.flatnonzero(splits == name) for name in SPLIT_NAMES}
    carve = len(indices["validation"]) == 0 and validation_fraction > 0
    if carve:
        train = indices["train"]
        within_train, _ = _grouped_split(pairs.take(train), 0.0, validation_fraction, seed, graded)
        indices["train"], indices["validation"] = train[within_train["train"]], train[within_train["test"]]
    problems = [
        problem
        for name in SPLIT_NAMES
        if name != "validation" or len(indices[name]) or validation_fraction > 0
        for problem in (_missing_scores if graded else _missing_labels)(pairs, indices[name], name)
    ]
    if problems:
        carved = "; validation is carved from its train rows (data.validation_fraction)" if carve else ""
        raise ValueError(
            f"{'; '.join(problems)}: with data.split_column the splits are the file's{carved}, "
            f"and each needs {_SPLIT_NEEDS[graded]}"
        )
    return PairSplits(**{name: pairs.take(indices[name]) for name in SPLIT_NAMES})


def split_text_pairs(
    pairs: TextPairs, validation_fraction: float, test_fraction: float, seed: int, graded: bool = False
) -> PairSplits[TextPairs]:
    """Split into train, validation and test, keeping each pair's twins together; stratified.

    Rows whose two texts are the same unordered pair after normalising (casefold, strip,
    collapse whitespace) form a group: a pair, its swapped twin and exact duplicates always
    land in one split. A group's label is its highest. Within each label, groups are ordered by
    a hash of the seed and the group's texts, so the split depends on the seed and the data, not
    on the row order or the Python process. `round(fraction * groups)` go to test and
    validation, the rest to train. Each split keeps the original row order. `graded`: labels are
    graded scores, and groups are stratified by score quantile (`GRADED_STRATA`) instead of label.

    Raises:
        ValueError: the fractions are out of range, or a split (validation only when
            `validation_fraction` > 0) would lack a label (graded: hold fewer than two different
            scores); says which and that more rows are needed.
    """
    check_fractions(validation_fraction, test_fraction)
    indices, groups_per_label = _grouped_split(pairs, validation_fraction, test_fraction, seed, graded)
    _check_split_labels(pairs, indices, groups_per_label, validation_fraction, test_fraction, graded)
    return PairSplits(**{name: pairs.take(indices[name]) for name in SPLIT_NAMES})


def _grouped_split(
    pairs: TextPairs, validation_fraction: float, test_fraction: float, seed: int, graded: bool = False
) -> tuple[dict[str, np.ndarray], dict[float, int]]:
    """Each split's row indices (as `split_text_pairs` describes), and the number of groups per label."""
    group_ids: dict[str, int] = {}
    group_of_row = np.fromiter(
        (group_ids.setdefault(_pair_key(left, right), len(group_ids)) for left, right in zip(pairs.left, pairs.right)),
        dtype=np.int64,
        count=len(pairs),
    )
    keys = list(group_ids)  # keys[group id]
    group_labels = np.full(len(keys), -np.inf, dtype=np.float32)
    np.maximum.at(group_labels, group_of_row, pairs.labels)
    split_of_group = np.zeros(len(keys), dtype=np.int8)  # a position in SPLIT_NAMES: 0 is train
    strata = _score_strata(group_labels) if graded else group_labels
    for stratum in np.unique(strata):
        members = sorted(np.flatnonzero(strata == stratum).tolist(), key=lambda group: _rank(seed, keys[group]))
        num_test = round(test_fraction * len(members))
        num_validation = round(validation_fraction * len(members))
        split_of_group[members[:num_test]] = SPLIT_NAMES.index("test")
        split_of_group[members[num_test : num_test + num_validation]] = SPLIT_NAMES.index("validation")
    split_of_row = split_of_group[group_of_row]
    indices = {name: np.flatnonzero(split_of_row == code) for code, name in enumerate(SPLIT_NAMES)}
    labels, counts = np.unique(group_labels, return_counts=True)
    return indices, dict(zip(labels.tolist(), counts.tolist()))


def unscorable_rows(left: pd.Series, right: pd.Series) -> pd.Series:
    """Why each row of a file to score cannot be scored, or None when it can (index of `left`).

    Blank means what it means for training (`load_text_pairs`): missing, or only whitespace. A text
    without a letter or digit (only punctuation, symbols or emoji) has no word for a model to know:
    the word tokenizers strip punctuation and map the rest to the unknown token, so its score
    (about 0.5) would be the same whatever it is paired with, not a judgement.
    """
    checks = (
        (_blank(left), "empty or missing left text"),
        (_blank(right), "empty or missing right text"),
        (_wordless(left), f"no words in left text ({WORDLESS})"),
        (_wordless(right), f"no words in right text ({WORDLESS})"),
    )
    reasons = np.full(len(left), None, dtype=object)
    for failed, reason in reversed(checks):  # the first check that fails names the row's problem
        reasons[failed.to_numpy()] = reason
    return pd.Series(reasons, index=left.index, dtype=object)


def unscorable_texts(texts: pd.Series) -> pd.Series:
    """Why each text of a collection cannot be encoded, or None when it can (the checks of `unscorable_rows`, one side)."""
    reasons = np.full(len(texts), None, dtype=object)
    reasons[_wordless(texts).to_numpy()] = f"no words in text ({WORDLESS})"
    reasons[_blank(texts).to_numpy()] = "empty or missing text"
    return pd.Series(reasons, index=texts.index, dtype=object)


KNOWN_COLLECTION_COLUMNS = ("text", "question", "query", "sentence", "utterance", "title", "question1", "left", "sentence1")


def detect_text_column(available: Sequence[str], *, column: str | None = None, source: str) -> str:
    """The one column of a collection that holds its texts: `column` when given, else a known name, else the only column.

    Raises:
        PairFileError: `column` is missing, or no column is known and there are several; lists the columns.
    """
    available = [str(name) for name in available]
    if column is not None:
        found = _find(available, column)
        if found is None:
            raise PairFileError(f"{source}: has no column {column!r}; its columns are: {', '.join(available)}")
        return found
    known = next((found for name in KNOWN_COLLECTION_COLUMNS if (found := _find(available, name)) is not None), None)
    if known is not None:
        return known
    if len(available) == 1:
        return available[0]
    raise PairFileError(
        f"{source}: cannot tell which column holds the texts; its columns are: {', '.join(available)}; known names are "
        f"{', '.join(KNOWN_COLLECTION_COLUMNS)}. Name it with --text-column"
    )


# Columns


def _find(available: Sequence[str], name: str) -> str | None:
    """The file's spelling of `name`: an exact match first, then one that differs only in case."""
    if name in available:
        return name
    return next((column for column in available if column.casefold() == name.casefold()), None)


def _explicit(available: Sequence[str], name: str, role: str, source: str) -> str:
    found = _find(available, name)
    if found is None:
        raise PairFileError(
            f"{source} has no column {name!r} ({_COLUMN_KEYS[role]}); its columns are: {', '.join(available)}"
        )
    return found


def _known_text_columns(available: Sequence[str], source: str) -> tuple[str, str]:
    for left, right in KNOWN_TEXT_COLUMNS:
        found_left, found_right = _find(available, left), _find(available, right)
        if found_left is not None and found_right is not None:
            return found_left, found_right
    layouts = ", ".join(f"{left}/{right}" for left, right in KNOWN_TEXT_COLUMNS)
    raise PairFileError(
        f"{source}: cannot tell which columns hold the two texts; its columns are: {', '.join(available)}; "
        f"known layouts are {layouts}. Name them with data.left_column, data.right_column and data.label_column"
    )


def _repeated(names: list[str]) -> str:
    return next(name for name in names if names.count(name) > 1)


def _split_column(available: Sequence[str], name: str | None, columns: PairColumns, source: str) -> tuple[str, ...]:
    """The file's spelling of `data.split_column`, as a tuple to append to the columns read; () when not named."""
    if not name:
        return ()
    found = _explicit(available, name, "split", source)
    if found in (columns.left, columns.right, columns.label):
        raise PairFileError(
            f"{source}: column {found!r} is named as the split column (data.split_column) and holds the "
            f"pairs' text or label (left {columns.left!r}, right {columns.right!r}, label {columns.label!r})"
        )
    return (found,)


# Row checks


@dataclass(frozen=True)
class _Rule:
    """One pandera check on one column, and how its failures are reported and counted."""

    column: str
    name: str  # the pandera check's name: failure cases are matched back to the rule by it
    problem: str  # "3 rows <problem>"
    reason: str  # key in LoadedPairs.dropped
    check: Callable[[pd.Series], pd.Series]  # True where the row passes
    show_values: bool = False
    hint: str = ""


def _rules(columns: PairColumns, threshold: float | None, graded: bool = False) -> list[_Rule]:
    """The checks in the order a dropped row is attributed: left text, right text, label."""
    rules = [
        _Rule(column, f"{side}_text", "with empty or missing text", f"empty or missing text in {column!r}", _has_text)
        for side, column in (("left", columns.left), ("right", columns.right))
    ]
    label = columns.label
    if threshold is None and not graded:
        return rules + [
            _Rule(label, "label_present", "with no label", f"missing label in {label!r}", _has_text),
            _Rule(
                label,
                "label_binary",
                "with labels that are not 0 or 1",
                f"label not 0 or 1 in {label!r}",
                _is_binary_or_blank,
                show_values=True,
                hint="for graded scores set a threshold (data.threshold)",
            ),
        ]
    return rules + [
        _Rule(label, "score_present", "with no score", f"missing score in {label!r}", _has_text),
        _Rule(
            label,
            "score_number",
            "with scores that are not numbers",
            f"score not a number in {label!r}",
            _is_number_or_blank,
            show_values=True,
            hint=(
                "graded scores (data.task = regression) must be numbers"
                if graded
                else f"with a threshold (data.threshold = {threshold:g}) the label column must hold numbers"
            ),
        ),
    ]


def _split_rules(column: str) -> list[_Rule]:
    """The split column's checks: present, and a value `SPLIT_VALUES` knows."""
    return [
        _Rule(column, "split_present", "with no split", f"missing split in {column!r}", _has_text),
        _Rule(
            column,
            "split_known",
            "with split values that name no split",
            f"unknown split in {column!r}",
            _is_split_or_blank,
            show_values=True,
            hint=_SPLIT_HINT,
        ),
    ]


def _failures(frame: pd.DataFrame, rules: list[_Rule]) -> list[tuple[_Rule, np.ndarray]]:
    """Each rule that some rows fail, with those rows (sorted data-row indices), in rule order."""
    schema = pa.DataFrameSchema(
        {
            column: pa.Column(
                checks=[
                    pa.Check(rule.check, name=rule.name, ignore_na=False) for rule in rules if rule.column == column
                ],
                nullable=True,  # missing cells are the checks' business: reported with the blank ones
            )
            for column in dict.fromkeys(rule.column for rule in rules)
        }
    )
    try:
        schema.validate(frame, lazy=True)  # lazy: every failure at once, not the first
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return []
    failures = []
    for rule in rules:
        matched = cases[(cases["column"] == rule.column) & (cases["check"] == rule.name)]
        indices = np.unique(matched["index"].to_numpy(dtype=np.int64))
        if len(indices):
            failures.append((rule, indices))
    return failures


def _problem_line(path: Path, frame: pd.DataFrame, rule: _Rule, indices: np.ndarray, options: ReadOptions) -> str:
    count = f"{len(indices)} row{'s' if len(indices) > 1 else ''}"
    where = describe_rows(path, indices, options=options)
    if rule.show_values:
        where += ": " + ", ".join(repr(value) for value in frame[rule.column].iloc[indices[:5]].tolist())
    hint = f"; {rule.hint}" if rule.hint else ""
    return f"{path}: column {rule.column!r}: {count} {rule.problem} ({where}){hint}"


def _attribute(num_rows: int, failures: list[tuple[_Rule, np.ndarray]]) -> tuple[np.ndarray, dict[str, int]]:
    """Rows failing any rule, and the count per reason with each row under its first failure.

    Counting a row once keeps `dropped_rows` equal to the number of rows removed.
    """
    invalid = np.zeros(num_rows, dtype=bool)
    dropped: dict[str, int] = {}
    for rule, indices in failures:
        new = int(np.count_nonzero(~invalid[indices]))
        if new:
            dropped[rule.reason] = new
        invalid[indices] = True
    return invalid, dropped


def _check_usable(
    source: str,
    labels: np.ndarray,
    total: int,
    dropped: dict[str, int],
    min_rows: int,
    threshold: float | None,
    graded: bool = False,
) -> None:
    if len(labels) < min_rows:
        of = f" (of {total}; {sum(dropped.values())} invalid rows dropped)" if dropped else ""
        raise PairFileError(
            f"{source} has {len(labels)} usable rows{of}; at least {min_rows} are needed so that the train, "
            f"validation and test splits each get {_SPLIT_NEEDS[graded]}"
        )
    values = np.unique(labels)
    if len(values) == 1 and graded:
        raise PairFileError(
            f"{source}: all {len(labels)} scores are {values[0]:g}: a graded score (data.task = regression) "
            "needs different scores to learn from"
        )
    if len(values) == 1:
        which = "at or above" if values[0] == 1 else "below"
        cause = (
            f"; every score is {which} the threshold {threshold:g} (data.threshold)" if threshold is not None else ""
        )
        raise PairFileError(
            f"{source}: all {len(labels)} labels are {values[0]:g}: training needs both duplicate (1) and "
            f"non-duplicate (0) pairs{cause}"
        )


def _labels(values: pd.Series, threshold: float | None) -> np.ndarray:
    """0/1 float32 labels from checked cells: the 0/1 value itself, or score >= threshold."""
    scores = values.map(_number).to_numpy(dtype=np.float64)
    if threshold is not None:
        scores = (scores >= threshold).astype(np.float64)
    return scores.astype(np.float32)


def _blank(values: pd.Series) -> pd.Series:
    """Missing, or only whitespace: one definition for training and scoring files."""
    return values.isna() | values.astype(str).str.strip().eq("").fillna(False).astype(bool)


def _wordless(values: pd.Series) -> pd.Series:
    """Text without a Unicode letter or digit (`[^\\W_]`); missing values count as blank, not as this."""
    return values.notna() & ~values.astype(str).str.contains(r"[^\W_]", regex=True)


def _has_text(values: pd.Series) -> pd.Series:
    return ~_blank(values)


def _is_binary_or_blank(values: pd.Series) -> pd.Series:
    """Blank cells pass: they fail the presence check, and are reported once, there."""
    return _blank(values) | values.map(lambda value: _number(value) in (0.0, 1.0))


def _is_split_or_blank(values: pd.Series) -> pd.Series:
    return _blank(values) | values.map(lambda value: _split_name(value) is not None)


def _split_name(value: object) -> str | None:
    """A split column's cell as a split (`SPLIT_VALUES`), or None."""
    return SPLIT_VALUES.get(str(value).strip().casefold())


def _is_number_or_blank(values: pd.Series) -> pd.Series:
    return _blank(values) | values.map(lambda value: _number(value) is not None)


def _number(value: object) -> float | None:
    """A cell as a finite number: numbers, booleans, and text such as "1", "0.0", "True"; else None."""
    if isinstance(value, str):
        text = value.strip().casefold()
        if text in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[text]
        try:
            number = float(text)
        except ValueError:
            return None
    elif isinstance(value, (numbers.Real, np.bool_)):
        number = float(value)
    else:
        return None
    return number if math.isfinite(number) else None


# Splitting


def _pair_key(left: str, right: str) -> str:
    """The same key for a pair, its swapped twin and copies differing only in case or spacing."""
    left, right = " ".join(left.casefold().split()), " ".join(right.casefold().split())
    return f"{left}\0{right}" if left <= right else f"{right}\0{left}"


def _rank(seed: int, key: str) -> tuple[bytes, str]:
    """A group's place in the seeded order; the key itself breaks (practically impossible) ties.

    Not hash(): Python salts it per process, and the split must be the same on every run.
    """
    return hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest(), key


def _missing_labels(pairs: TextPairs, indices: np.ndarray, name: str) -> list[str]:
    if len(indices) == 0:
        return [f"the {name} split is empty"]
    present = set(pairs.labels[indices].tolist())
    return [f"the {name} split has no pair labelled {label:g}" for label in (0.0, 1.0) if label not in present]


def _missing_scores(pairs: TextPairs, indices: np.ndarray, name: str) -> list[str]:
    """A graded split's problem: empty, or one score only (no scale to learn, no correlation to measure)."""
    if len(indices) == 0:
        return [f"the {name} split is empty"]
    scores = np.unique(pairs.labels[indices])
    return [f"the {name} split holds one score only ({scores[0]:g})"] if len(scores) == 1 else []


def _score_strata(scores: np.ndarray) -> np.ndarray:
    """Each score's quantile bin (`GRADED_STRATA` of them): edges come from the scores alone, not their order."""
    inner_edges = np.quantile(scores, np.linspace(0, 1, GRADED_STRATA + 1)[1:-1])
    return np.searchsorted(inner_edges, scores, side="right")


def _check_split_labels(
    pairs: TextPairs,
    indices: dict[str, np.ndarray],
    groups_per_label: dict[float, int],
    validation_fraction: float,
    test_fraction: float,
    graded: bool = False,
) -> None:
    problems = []
    for name in SPLIT_NAMES:
        if name == "validation" and validation_fraction == 0:
            continue
        if graded:
            problems += _missing_scores(pairs, indices[name], name)
            continue
        present = set(pairs.labels[indices[name]].tolist())
        for label in (0.0, 1.0):
            if label not in present:
                problems.append(
                    f"the {name} split has no pair labelled {label:g} "
                    f"({groups_per_label.get(label, 0)} distinct pairs have that label)"
                )
    if problems:
        raise ValueError(
            f"{'; '.join(problems)}: with data.validation_fraction = {validation_fraction} and "
            f"data.test_fraction = {test_fraction} every split needs {_SPLIT_NEEDS[graded]}; more rows are needed"
        )


# Arguments and files


def _check_arguments(threshold: float | None, min_rows: int, graded: bool) -> None:
    if graded and threshold is not None:
        raise ValueError(
            "data.threshold turns graded scores into 0/1 labels, and data.task 'regression' predicts them: "
            "set one or the other"
        )
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold)
    ):
        raise ValueError(f"data.threshold must be a finite number or None, got {threshold!r}")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise ValueError(f"min_rows must be an integer >= 1, got {min_rows!r}")


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
