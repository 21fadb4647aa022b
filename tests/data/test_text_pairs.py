"""Text pair files: column detection, row checks and their messages, dropping, splits, scoring rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from siamese.data.tables import AtomicTableWriter, PairFileError, ReadOptions
from siamese.data.text_pairs import (
    PairColumns,
    TextPairs,
    WithRandomNegatives,
    detect_columns,
    load_text_pairs,
    split_by_column,
    split_text_pairs,
    unscorable_rows,
)

DROP_HINT = "data.drop_invalid_rows = true"


def quora(rows: int = 30) -> pd.DataFrame:
    """The Quora Question Pairs layout, alternating labels, with numbers-as-text in an id column."""
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(rows)],
            "question1": [f"How do I learn topic {i}?" for i in range(rows)],
            "question2": [f"What is the best way to learn topic {i}?" for i in range(rows)],
            "is_duplicate": [str(i % 2) for i in range(rows)],
        }
    )


def write_table(path: Path, frame: pd.DataFrame) -> Path:
    with AtomicTableWriter(path) as writer:
        writer.write(frame)
    return path


def write_csv(path: Path, frame: pd.DataFrame, **cells: dict[int, str]) -> Path:
    """Write the frame after overwriting cells: `column={row: value}` (row 0 is line 2)."""
    frame = frame.copy()
    for column, values in cells.items():
        for row, value in values.items():
            frame.loc[row, column] = value
    return write_table(path, frame)


def text_pairs(left: list[str], right: list[str], labels: list[int]) -> TextPairs:
    return TextPairs(left, right, labels, np.arange(len(labels)))


def synthetic_pairs(count: int = 400, seed: int = 0) -> TextPairs:
    rng = np.random.default_rng(seed)
    return text_pairs(
        [f"question number {i}" for i in range(count)],
        [f"another question {i}" for i in range(count)],
        (rng.random(count) < 0.3).astype(int).tolist(),
    )


def members(pairs: TextPairs) -> set[tuple[str, str]]:
    return set(zip(pairs.left.tolist(), pairs.right.tolist()))


# Column detection


def test_quora_layout_is_detected_and_loaded_without_options(tmp_path):
    path = write_table(tmp_path / "train.csv", quora())
    loaded = load_text_pairs(path)

    assert loaded.columns == PairColumns("question1", "question2", "is_duplicate")
    assert len(loaded.pairs) == loaded.total_rows == 30
    assert loaded.dropped == {} and loaded.dropped_rows == 0
    assert loaded.source == str(path.absolute())
    assert loaded.pairs.left[3] == "How do I learn topic 3?" and type(loaded.pairs.left[3]) is str
    assert loaded.pairs.left.dtype == object and loaded.pairs.right.dtype == object
    assert loaded.pairs.labels.dtype == np.float32
    assert loaded.pairs.labels.tolist() == [float(i % 2) for i in range(30)]
    np.testing.assert_array_equal(loaded.pairs.rows, np.arange(30))
    assert set(loaded.pairs.inputs()) == {"left", "right"}


def test_graded_scores_become_labels_with_a_threshold(tmp_path):
    scores = [0.0, 1.2, 2.5, 3.0, 4.8, 5.0] * 4
    frame = pd.DataFrame(
        {"Sentence1": [f"a {i}" for i in range(24)], "Sentence2": [f"b {i}" for i in range(24)], "score": scores}
    )
    path = write_table(tmp_path / "sts.parquet", frame)  # numeric scores, not text

    loaded = load_text_pairs(path, threshold=3.0)

    assert loaded.columns == PairColumns("Sentence1", "Sentence2", "score")  # the file's own spelling
    assert loaded.pairs.labels.tolist() == [float(score >= 3.0) for score in scores]


def test_graded_scores_without_a_threshold_suggest_one(tmp_path):
    frame = pd.DataFrame({"sentence1": ["a"] * 24, "sentence2": ["b"] * 24, "score": ["0", "2.5", "5"] * 8})
    with pytest.raises(PairFileError, match=r"16 rows with labels that are not 0 or 1 .*set a threshold"):
        load_text_pairs(write_table(tmp_path / "sts.csv", frame))


def test_scores_that_are_not_numbers_are_named(tmp_path):
    frame = pd.DataFrame({"sentence1": ["a"] * 24, "sentence2": ["b"] * 24, "score": ["1.5", "4"] * 12})
    path = write_csv(tmp_path / "sts.csv", frame, score={3: "high", 10: "n/a"})
    with pytest.raises(PairFileError) as error:
        load_text_pairs(path, threshold=2.0)
    assert "column 'score': 2 rows with scores that are not numbers (lines 5, 12: 'high', 'n/a')" in str(error.value)


def test_explicit_columns_win_and_other_columns_are_ignored(tmp_path):
    frame = quora().rename(columns={"question1": "first", "question2": "second", "is_duplicate": "same"})
    frame["label"] = "not a label"  # a known label name, but the explicit one wins
    path = write_table(tmp_path / "pairs.tsv", frame)

    loaded = load_text_pairs(path, left_column="first", right_column="second", label_column="same")

    assert loaded.columns == PairColumns("first", "second", "same")
    assert loaded.pairs.right[0] == "What is the best way to learn topic 0?"


def test_a_missing_explicit_column_is_named_with_the_files_columns(tmp_path):
    path = write_table(tmp_path / "pairs.csv", quora())
    with pytest.raises(PairFileError) as error:
        load_text_pairs(path, left_column="q1", right_column="question2")
    assert str(error.value) == (
        f"{path} has no column 'q1' (data.left_column); its columns are: id, question1, question2, is_duplicate"
    )


def test_no_recognisable_layout_says_how_to_name_the_columns():
    with pytest.raises(PairFileError) as error:
        detect_columns(["a", "b", "c"], source="pairs.csv")
    message = str(error.value)
    assert message.startswith("pairs.csv: cannot tell which columns hold the two texts; its columns are: a, b, c")
    assert message.endswith("Name them with data.left_column, data.right_column and data.label_column")


def test_a_label_is_required_for_training_but_not_for_scoring():
    with pytest.raises(PairFileError, match=r"pairs\.csv: cannot tell which column holds the 0/1 label.*Name it with data\.label_column$"):
        detect_columns(["left", "right", "notes"], source="pairs.csv")
    assert detect_columns(["left", "right"], require_label=False, source="x") == PairColumns("left", "right", None)
    assert detect_columns(["Q1", "q2", "Label"], require_label=False, source="x") == PairColumns("Q1", "q2", "Label")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"left": "a"}, r"name both text columns \(data\.left_column and data\.right_column\); only data\.left_column was given"),
        ({"left": "a", "right": "a"}, "column 'a' is named for two roles"),
        ({"left": "a", "right": "b", "label": "b"}, "column 'b' is named for two roles"),
    ],
)
def test_inconsistent_explicit_columns_are_rejected(options, message):
    with pytest.raises(PairFileError, match=message):
        detect_columns(["a", "b", "label"], source="pairs.csv", **options)


# Bad files


def test_missing_column_in_a_known_layout_is_reported(tmp_path):
    path = write_table(tmp_path / "pairs.csv", quora().drop(columns="is_duplicate"))
    with pytest.raises(PairFileError) as error:
        load_text_pairs(path)
    assert "cannot tell which column holds the 0/1 label; its columns are: id, question1, question2" in str(error.value)


def test_empty_and_missing_text_and_bad_labels_are_all_reported_with_lines(tmp_path):
    path = write_csv(
        tmp_path / "pairs.csv",
        quora(),
        question2={2: "", 7: "   ", 10: None},
        is_duplicate={3: "2", 6: "maybe", 12: ""},
    )
    with pytest.raises(PairFileError) as error:
        load_text_pairs(path)
    lines = str(error.value).splitlines()
    assert lines == [
        f"{path}: column 'question2': 3 rows with empty or missing text (lines 4, 9, 12)",
        f"{path}: column 'is_duplicate': 1 row with no label (line 14)",
        f"{path}: column 'is_duplicate': 2 rows with labels that are not 0 or 1 (lines 5, 8: '2', 'maybe'); "
        "for graded scores set a threshold (data.threshold)",
        f"fix these rows, or drop invalid rows with {DROP_HINT}",
    ]


def test_many_bad_rows_are_counted_and_the_first_few_named(tmp_path):
    path = write_csv(tmp_path / "pairs.csv", quora(), question1={row: "" for row in range(3, 30, 2)})
    with pytest.raises(PairFileError) as error:
        load_text_pairs(path)
    assert "'question1': 14 rows with empty or missing text (lines 5, 7, 9, 11, 13 and 9 more)" in str(error.value)


def test_parquet_rows_are_named_by_row_number(tmp_path):
    frame = quora().assign(is_duplicate=[i % 2 for i in range(30)])  # integer labels
    frame.loc[4, "is_duplicate"] = 7
    with pytest.raises(PairFileError, match=r"'is_duplicate': 1 row with labels that are not 0 or 1 \(row 5: 7\)"):
        load_text_pairs(write_table(tmp_path / "pairs.parquet", frame))


@pytest.mark.parametrize(
    "labels", [[True, False], [1.0, 0.0], ["true", "FALSE"], [" 1", "0.0"], ["1", "0"]], ids=str
)
def test_binary_labels_are_accepted_in_their_usual_spellings(tmp_path, labels):
    frame = quora(rows=20).assign(is_duplicate=labels * 10)
    loaded = load_text_pairs(write_table(tmp_path / "pairs.parquet", frame))
    assert loaded.pairs.labels.tolist() == [1.0, 0.0] * 10


def test_too_few_rows_names_the_count_and_the_minimum(tmp_path):
    path = write_table(tmp_path / "pairs.csv", quora(rows=12))
    with pytest.raises(PairFileError, match=r"pairs\.csv has 12 usable rows; at least 20 are needed"):
        load_text_pairs(path)
    assert len(load_text_pairs(path, min_rows=10).pairs) == 12


def test_one_class_only_is_rejected(tmp_path):
    path = write_table(tmp_path / "pairs.csv", quora(rows=40).assign(is_duplicate="1"))
    with pytest.raises(PairFileError) as error:
        load_text_pairs(path)
    assert str(error.value) == (
        f"{path}: all 40 labels are 1: training needs both duplicate (1) and non-duplicate (0) pairs"
    )


def test_a_threshold_above_every_score_is_explained(tmp_path):
    frame = pd.DataFrame({"s1": ["a"] * 20, "s2": ["b"] * 20, "similarity": np.linspace(0, 5, 20)})
    with pytest.raises(PairFileError, match=r"all 20 labels are 0: .*every score is below the threshold 6"):
        load_text_pairs(write_table(tmp_path / "pairs.parquet", frame), threshold=6)


def test_an_unparseable_file_is_named_as_a_parse_problem_not_as_bad_rows(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("question1,question2,is_duplicate\n" + "a,b,1\n" * 30 + 'a,"b,1\nc,d\n')
    with pytest.raises(PairFileError) as error:
        load_text_pairs(path)
    message = str(error.value)
    assert message.startswith(f"{path} cannot be parsed as CSV: with CSV quoting, the record from line 32 to line 33")
    assert "with quotes as text (no quoting), line 33 has 2 fields where the header has 3" in message
    assert "rows with" not in message and DROP_HINT not in message


def test_bad_arguments_are_rejected(tmp_path):
    path = write_table(tmp_path / "pairs.csv", quora())
    with pytest.raises(ValueError, match="threshold"):
        load_text_pairs(path, threshold=float("nan"))
    with pytest.raises(ValueError, match="min_rows"):
        load_text_pairs(path, min_rows=0)


# Dropping invalid rows


def test_drop_invalid_rows_removes_each_bad_row_once_and_counts_it_under_its_first_reason(tmp_path):
    path = write_csv(
        tmp_path / "pairs.csv",
        quora(),
        question1={5: ""},
        question2={2: "", 5: " ", 9: None},  # row 5 fails twice: counted under question1
        is_duplicate={3: "2", 6: "maybe"},
    )
    loaded = load_text_pairs(path, drop_invalid_rows=True)

    assert loaded.dropped == {
        "empty or missing text in 'question1'": 1,
        "empty or missing text in 'question2'": 2,
        "label not 0 or 1 in 'is_duplicate'": 2,
    }
    assert loaded.dropped_rows == 5 == loaded.total_rows - len(loaded.pairs)
    assert loaded.pairs.rows.tolist() == [row for row in range(30) if row not in {2, 3, 5, 6, 9}]
    assert loaded.pairs.left[2] == "How do I learn topic 4?"  # rows and texts stay aligned


def test_dropping_can_leave_too_few_rows(tmp_path):
    path = write_csv(tmp_path / "pairs.csv", quora(rows=22), question2={0: "", 1: "", 2: ""})
    with pytest.raises(PairFileError, match=r"has 19 usable rows \(of 22; 3 invalid rows dropped\); at least 20"):
        load_text_pairs(path, drop_invalid_rows=True)


def test_text_is_kept_as_written(tmp_path):
    path = write_csv(tmp_path / "pairs.csv", quora(), question1={0: "  padded  text "}, question2={0: "007"})
    loaded = load_text_pairs(path)
    assert loaded.pairs.left[0] == "  padded  text "
    assert loaded.pairs.right[0] == "007"


def test_content_hash_follows_the_files_bytes(tmp_path):
    path = write_table(tmp_path / "pairs.csv", quora())
    first = load_text_pairs(path).content_hash
    assert len(first) == 64 and first == load_text_pairs(path).content_hash
    write_csv(path, quora(), question1={0: "changed"})
    assert load_text_pairs(path).content_hash != first


# TextPairs


def test_text_pairs_save_and_load_round_trip(tmp_path):
    pairs = TextPairs(["a", 'quote "q"', "ü\ttab"], ["x", "  y", "NA"], [1, 0, 1], [4, 9, 12])
    path = pairs.save(tmp_path / "split" / "train.parquet")
    loaded = TextPairs.load(path)

    assert loaded.left.tolist() == pairs.left.tolist() and loaded.right.tolist() == pairs.right.tolist()
    assert loaded.labels.dtype == np.float32 and loaded.labels.tolist() == [1.0, 0.0, 1.0]
    assert loaded.rows.dtype == np.int64 and loaded.rows.tolist() == [4, 9, 12]
    subset = loaded.take(np.array([2, 0]))
    assert subset.left.tolist() == ["ü\ttab", "a"] and subset.rows.tolist() == [12, 4]


def test_an_empty_set_saves_and_loads(tmp_path):
    empty = synthetic_pairs(10).take(np.array([], dtype=np.int64))
    loaded = TextPairs.load(empty.save(tmp_path / "validation.parquet"))
    assert len(loaded) == 0 and loaded.left.dtype == object


def test_text_pairs_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="one entry per pair"):
        TextPairs(["a", "b"], ["c"], [0, 1], [0, 1])


# Splitting


def test_split_is_deterministic_and_independent_of_row_order():
    pairs = synthetic_pairs()
    first = split_text_pairs(pairs, 0.15, 0.15, seed=7)
    again = split_text_pairs(pairs, 0.15, 0.15, seed=7)
    shuffled = split_text_pairs(pairs.take(np.random.default_rng(1).permutation(len(pairs))), 0.15, 0.15, seed=7)
    other_seed = split_text_pairs(pairs, 0.15, 0.15, seed=8)

    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(first, name).rows, getattr(again, name).rows)
        assert members(getattr(first, name)) == members(getattr(shuffled, name))
        # Within a split the original row order is kept.
        assert getattr(first, name).rows.tolist() == sorted(getattr(first, name).rows.tolist())
    assert members(first.test) != members(other_seed.test)
    assert len(first.train) + len(first.validation) + len(first.test) == len(pairs)


def test_swapped_twins_and_near_duplicates_never_straddle_splits():
    base = synthetic_pairs(200)
    swapped = [f"  {text.upper()} " for text in base.right]  # and in other case and spacing
    spaced = [text.replace(" ", "  ") for text in base.left]
    left = base.left.tolist() + swapped + spaced
    right = base.right.tolist() + base.left.tolist() + base.right.tolist()
    labels = base.labels.tolist() * 3
    pairs = text_pairs(left, right, labels)

    splits = split_text_pairs(pairs, 0.2, 0.2, seed=0)

    def groups(split: TextPairs) -> set[int]:
        return {int(row) % 200 for row in split.rows}

    assert not groups(splits.train) & groups(splits.test)
    assert not groups(splits.train) & groups(splits.validation)
    assert not groups(splits.validation) & groups(splits.test)


@pytest.mark.parametrize("seed", range(5))
def test_twins_with_different_labels_stay_together(seed):
    base = synthetic_pairs(300)
    pairs = text_pairs(
        [*base.left, "shared question b", "Shared question A"],
        [*base.right, "shared question a", "shared question B"],
        [*base.labels, 0, 1],
    )
    splits = split_text_pairs(pairs, 0.2, 0.2, seed=seed)
    placed = [set(split.rows.tolist()) & {300, 301} for split in (splits.train, splits.validation, splits.test)]
    assert sorted(placed, key=len) == [set(), set(), {300, 301}]


def test_every_split_has_both_labels_in_roughly_the_right_proportions():
    pairs = synthetic_pairs(1000)
    splits = split_text_pairs(pairs, 0.1, 0.2, seed=0)
    positives = pairs.labels.mean()
    for split, fraction in ((splits.train, 0.7), (splits.validation, 0.1), (splits.test, 0.2)):
        assert set(split.labels.tolist()) == {0.0, 1.0}
        assert len(split) == pytest.approx(fraction * 1000, abs=2)
        assert split.labels.mean() == pytest.approx(positives, abs=0.01)


def test_validation_may_be_empty():
    splits = split_text_pairs(synthetic_pairs(100), 0.0, 0.2, seed=0)
    assert len(splits.validation) == 0
    assert len(splits.train) + len(splits.test) == 100


def test_a_split_without_a_label_says_which_and_asks_for_more_rows():
    pairs = text_pairs([f"l{i}" for i in range(20)], [f"r{i}" for i in range(20)], [1, 1] + [0] * 18)
    with pytest.raises(ValueError) as error:
        split_text_pairs(pairs, 0.2, 0.2, seed=0)
    message = str(error.value)
    assert "the validation split has no pair labelled 1 (2 distinct pairs have that label)" in message
    assert "the test split has no pair labelled 1" in message and "train split" not in message
    assert message.endswith("more rows are needed")


@pytest.mark.parametrize(
    ("validation", "test", "message"),
    [
        (-0.1, 0.2, "data.validation_fraction must be a number >= 0.0 and < 1.0, got -0.1"),
        (0.2, 1.0, "data.test_fraction must be a number > 0.0 and < 1.0, got 1.0"),
        (0.5, 0.45, "data.validation_fraction + data.test_fraction must leave at least 10% for training"),
    ],
)
def test_split_fractions_are_checked_by_the_config_rule(validation, test, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        split_text_pairs(synthetic_pairs(50), validation, test, seed=0)


def test_no_message_names_a_command_line_flag(tmp_path):
    """The library speaks in config keys; the command line translates them to its flags."""
    path = write_csv(tmp_path / "pairs.csv", quora(), question2={2: ""}, is_duplicate={3: "2"})
    failures = []
    for attempt in (
        lambda: load_text_pairs(path),
        lambda: load_text_pairs(path, left_column="nope", right_column="question2"),
        lambda: load_text_pairs(path, threshold=0.5),
        lambda: detect_columns(["a", "b"], left="a", source="x"),
        lambda: detect_columns(["a", "b", "c"], source="x"),
        lambda: detect_columns(["left", "right"], source="x"),
        lambda: split_text_pairs(text_pairs(["a"] * 20, [f"r{i}" for i in range(20)], [1, 1] + [0] * 18), 0.2, 0.2, 0),
    ):
        with pytest.raises(ValueError) as error:
            attempt()
        failures.append(str(error.value))
    assert all("--" not in message and "data." in message for message in failures), failures


# Scoring files


def test_unscorable_rows_name_the_empty_side():
    left = pd.Series(["a", "", None, "b", "  ", "c"], index=[10, 11, 12, 13, 14, 15])
    right = pd.Series(["x", "y", "z", None, "", "\t"], index=[10, 11, 12, 13, 14, 15])
    reasons = unscorable_rows(left, right)
    assert reasons.index.tolist() == [10, 11, 12, 13, 14, 15]
    assert reasons.tolist() == [
        None,
        "empty or missing left text",
        "empty or missing left text",
        "empty or missing right text",
        "empty or missing left text",
        "empty or missing right text",
    ]


# Files as they come: quotes as text, the MRPC layout, format and quoting options, published splits

SHARED_MRPC = Path(__file__).resolve().parents[3] / "shared" / "data" / "msrp_train.tsv"


def mrpc_lines(rows: int = 30) -> str:
    """MRPC's layout as published: BOM, CRLF, tabs, quotes that are text (some opened and never closed)."""
    lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    for i in range(rows):
        right = f'"The pie business {i} does not fit.' if i % 3 == 0 else f'He called it "pie {i}", of course.'
        lines.append(f"{i % 2}\t{100 + i}\t{200 + i}\tThe pie business {i} doesn't fit.\t{right}")
    return "\ufeff" + "\r\n".join(lines) + "\r\n"


def test_the_mrpc_layout_loads_every_row_without_options(tmp_path):
    path = tmp_path / "msr_paraphrase_train.txt"
    path.write_bytes(mrpc_lines().encode())
    loaded = load_text_pairs(path)
    assert loaded.columns == PairColumns("#1 String", "#2 String", "Quality")
    assert len(loaded.pairs) == loaded.total_rows == 30 and loaded.dropped == {}
    assert loaded.pairs.right[0] == '"The pie business 0 does not fit.'
    assert loaded.pairs.right[1] == 'He called it "pie 1", of course.'
    assert loaded.pairs.labels[:3].tolist() == [0.0, 1.0, 0.0]


def test_forcing_csv_quoting_on_mrpc_names_the_parse_problem_and_the_option(tmp_path):
    path = tmp_path / "mrpc.tsv"
    path.write_bytes(mrpc_lines().encode())
    with pytest.raises(PairFileError) as error:
        load_text_pairs(path, options=ReadOptions(quoting="csv"))
    message = str(error.value)
    assert message.startswith(f"{path} cannot be parsed as TSV with CSV quoting (data.quoting = csv): ")
    assert message.endswith("set data.quoting = none") and "empty or missing text" not in message


@pytest.mark.skipif(not SHARED_MRPC.is_file(), reason="the shared MRPC file is only on development machines")
def test_the_published_mrpc_train_file_loads_all_4076_rows():
    loaded = load_text_pairs(SHARED_MRPC)
    assert loaded.total_rows == len(loaded.pairs) == 4076 and loaded.dropped_rows == 0


def published_split(tmp_path: Path, splits: list[str], name: str = "pairs.csv") -> Path:
    frame = quora(len(splits)).assign(Set=splits)
    return write_table(tmp_path / name, frame)


def test_a_split_column_is_read_case_insensitively_and_its_splits_are_kept(tmp_path):
    names = ["TRAIN", "training", "train", "Train"] * 5 + ["dev", "Validation", "trial", "val"] + ["test", "Test"] * 3
    path = published_split(tmp_path, names)
    loaded = load_text_pairs(path, split_column="set")
    assert loaded.splits.tolist() == ["train"] * 20 + ["validation"] * 4 + ["test"] * 6

    splits = split_by_column(loaded.pairs, loaded.splits, validation_fraction=0.2, seed=0)
    assert splits.train.rows.tolist() == list(range(20))
    assert splits.validation.rows.tolist() == [20, 21, 22, 23]
    assert splits.test.rows.tolist() == list(range(24, 30))


def test_without_validation_rows_validation_is_carved_from_train_with_the_seed(tmp_path):
    path = published_split(tmp_path, ["train"] * 40 + ["test"] * 10)
    loaded = load_text_pairs(path, split_column="Set")
    splits = split_by_column(loaded.pairs, loaded.splits, validation_fraction=0.25, seed=3)
    assert len(splits.validation) == 10 and len(splits.train) == 30
    assert set(splits.validation.labels.tolist()) == {0.0, 1.0}
    assert splits.test.rows.tolist() == list(range(40, 50))
    assert set(splits.train.rows.tolist()) | set(splits.validation.rows.tolist()) == set(range(40))
    again = split_by_column(loaded.pairs, loaded.splits, validation_fraction=0.25, seed=3)
    assert again.validation.rows.tolist() == splits.validation.rows.tolist()
    assert len(split_by_column(loaded.pairs, loaded.splits, validation_fraction=0.0, seed=3).validation) == 0


def test_unknown_split_values_name_the_column_the_values_and_the_lines(tmp_path):
    path = published_split(tmp_path, ["train"] * 25 + ["eval", "holdout"] + ["test"] * 3)
    with pytest.raises(PairFileError) as error:
        load_text_pairs(path, split_column="Set")
    message = str(error.value)
    assert f"{path}: column 'Set': 2 rows with split values that name no split (lines 27, 28: 'eval', 'holdout')" in message
    assert "validation: validation, valid, val, dev, development, trial" in message and DROP_HINT in message


def test_a_split_column_must_exist_and_hold_neither_text_nor_label(tmp_path):
    path = published_split(tmp_path, ["train"] * 30)
    with pytest.raises(PairFileError, match=r"has no column 'fold' \(data\.split_column\)"):
        load_text_pairs(path, split_column="fold")
    with pytest.raises(PairFileError, match=r"'is_duplicate' is named as the split column \(data\.split_column\)"):
        load_text_pairs(path, split_column="is_duplicate")


def test_a_published_split_without_test_rows_or_a_label_says_so(tmp_path):
    path = published_split(tmp_path, ["train"] * 28 + ["dev"] * 2)
    loaded = load_text_pairs(path, split_column="Set")
    with pytest.raises(ValueError, match=r"the test split is empty: with data\.split_column the splits are the file's"):
        split_by_column(loaded.pairs, loaded.splits, validation_fraction=0.2, seed=0)
    few_train = load_text_pairs(published_split(tmp_path, ["train"] * 4 + ["test"] * 26, "few.csv"), split_column="Set")
    with pytest.raises(ValueError, match=r"the validation split is empty: .*validation is carved from its train rows"):
        split_by_column(few_train.pairs, few_train.splits, validation_fraction=0.25, seed=0)


def test_rows_with_unknown_split_values_can_be_dropped_and_counted(tmp_path):
    path = published_split(tmp_path, ["train"] * 20 + ["eval"] * 2 + ["dev"] * 4 + ["test"] * 4)
    loaded = load_text_pairs(path, split_column="Set", drop_invalid_rows=True)
    assert loaded.dropped == {"unknown split in 'Set'": 2} and len(loaded.splits) == 28


def _pairs(count: int) -> TextPairs:
    return TextPairs([f"left {i}" for i in range(count)], [f"right {i}" for i in range(count)], np.ones(count), np.arange(count))


def _batches(dataset) -> list[tuple[list[str], list[str], list[float]]]:
    return [
        ([text.decode() for text in inputs["left"].numpy()], [text.decode() for text in inputs["right"].numpy()], labels.numpy().tolist())
        for inputs, labels in dataset
    ]


def test_random_negatives_follow_each_batch_as_two_different_texts_labelled_unrelated():
    pairs = _pairs(10)
    batches = _batches(WithRandomNegatives(pairs, per_pair=0.5, unrelated=0.25).dataset(4, shuffle=True, seed=3))
    assert [len(labels) for _, _, labels in batches] == [6, 6, 3]  # 4 + 2, 4 + 2, 2 + 1
    pool = set(pairs.left) | set(pairs.right)
    file_pairs = set(zip(pairs.left, pairs.right))
    for left, right, labels in batches:
        real = len(labels) - (len(labels) + 2) // 3
        assert labels[:real] == [1.0] * real and labels[real:] == [0.25] * (len(labels) - real)
        assert set(zip(left[:real], right[:real])) <= file_pairs
        drawn = list(zip(left[real:], right[real:]))
        assert all(first in pool and second in pool and first != second for first, second in drawn)


def test_random_negatives_are_drawn_anew_each_pass_and_repeat_with_the_seed():
    dataset = WithRandomNegatives(_pairs(50), per_pair=1.0).dataset(50, seed=7)
    first_pass, second_pass = _batches(dataset), _batches(dataset)
    assert first_pass != second_pass
    assert _batches(WithRandomNegatives(_pairs(50), per_pair=1.0).dataset(50, seed=7)) == first_pass
    assert first_pass[0][0][:50] == second_pass[0][0][:50]  # the file's pairs themselves, unshuffled, in order


def test_random_negatives_leave_the_pairs_count_subsets_and_file_alone(tmp_path):
    pairs = _pairs(10)
    mixed = WithRandomNegatives(pairs, per_pair=2.0)
    assert len(mixed) == 10 and mixed.labels is pairs.labels
    assert mixed.take(slice(0, 3)).left.tolist() == pairs.left[:3].tolist()
    assert TextPairs.load(mixed.save(tmp_path / "train.parquet")).left.tolist() == pairs.left.tolist()
    assert len(_batches(WithRandomNegatives(pairs, per_pair=0.0).dataset(10))[0][2]) == 10
