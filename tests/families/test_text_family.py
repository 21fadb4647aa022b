"""The text pair family: a user's file validated, split with its lineage and read back; a model over raw strings; baselines."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from siamese.config import Config, ModelKind, Task, TextFileDataConfig, TextModelConfig, TextPairModelConfig
from siamese.data.sample_questions import sample_question_pairs
from siamese.data.tables import PairFileError
from siamese.data.text_pairs import TextPairs, WithRandomNegatives
from siamese.families import family_of

FAMILY = family_of(ModelKind.TEXT)
SMALL_MODEL = TextPairModelConfig(units=3, embedding_dim=5, vocabulary_size=40, sequence_length=6, head="concat")


def write_questions(path, rows: int = 60, seed: int = 0, **cells: dict[int, object]):
    """Write sample question pairs after overwriting cells: `column={row: value}`."""
    frame = sample_question_pairs(rows, seed)
    for column, values in cells.items():
        for row, value in values.items():
            frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return path


def config(path, **data) -> Config:
    return Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path=str(path), **data), model=SMALL_MODEL)


def load_all(run_config: Config, paths) -> dict[str, TextPairs]:
    return {name: FAMILY.load_split(run_config, path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    directory = tmp_path_factory.mktemp("text")
    run_config = config(write_questions(directory / "questions.csv"))
    return run_config, FAMILY.prepare_splits(run_config, directory)


def test_file_is_split_into_parquet_files_every_row_in_one_split(prepared):
    run_config, splits = prepared
    assert {name: path.name for name, path in splits.paths.items()} == {
        "train": "train.parquet", "validation": "validation.parquet", "test": "test.parquet",
    }  # fmt: skip
    loaded = load_all(run_config, splits.paths)
    assert {name: len(pairs) for name, pairs in loaded.items()} == splits.sizes
    assert all(set(np.unique(pairs.labels)) == {0.0, 1.0} for pairs in loaded.values())
    rows = np.concatenate([pairs.rows for pairs in loaded.values()])
    assert sorted(rows.tolist()) == list(range(60)), "every file row lands in exactly one split"
    assert splits.labels["test"] == f"{int(loaded['test'].labels.sum())} positive"


def test_the_run_records_where_its_pairs_came_from(prepared):
    run_config, splits = prepared
    source = splits.source
    assert source.path == str(Path(run_config.data.path).absolute())
    assert re.fullmatch(r"[0-9a-f]{64}", source.content_hash)
    assert (source.total_rows, source.dropped, source.dropped_rows) == (60, {}, 0)
    assert source.columns == ("question1", "question2", "is_duplicate")


def test_the_same_seed_gives_the_same_split(prepared, tmp_path):
    run_config, splits = prepared
    again = FAMILY.prepare_splits(run_config, tmp_path)
    np.testing.assert_array_equal(
        FAMILY.load_split(run_config, again.paths["test"]).rows, FAMILY.load_split(run_config, splits.paths["test"]).rows
    )


def test_invalid_rows_are_dropped_and_counted_or_stop_the_run_naming_the_file(prepared, tmp_path):
    broken = write_questions(tmp_path / "broken.csv", question1={3: ""}, is_duplicate={5: 7})
    splits = FAMILY.prepare_splits(config(broken, drop_invalid_rows=True), tmp_path)
    assert splits.source.content_hash != prepared[1].source.content_hash
    assert splits.source.dropped_rows == 2 and splits.source.total_rows == 60
    assert sum(splits.sizes.values()) == 58
    kept = np.concatenate([pairs.rows for pairs in load_all(config(broken), splits.paths).values()])
    assert 3 not in kept and 5 not in kept

    with pytest.raises(PairFileError, match="broken.csv"):
        FAMILY.prepare_splits(config(broken), tmp_path / "strict")


def test_a_file_too_small_for_its_splits_is_a_pair_file_error_naming_the_file(tmp_path):
    # 20 rows pass the row count, but one duplicate cannot give three splits both labels.
    labels = {row: 0 for row in range(20)} | {0: 1}
    path = write_questions(tmp_path / "few.csv", rows=20, is_duplicate=labels)
    with pytest.raises(PairFileError) as error:
        FAMILY.prepare_splits(config(path), tmp_path)
    assert str(error.value).startswith("few.csv: ")
    assert "has no pair labelled 1" in str(error.value) and "more rows are needed" in str(error.value)


def test_an_empty_validation_split_is_written_and_reads_back_empty(tmp_path):
    path = write_questions(tmp_path / "questions.csv", rows=40)
    run_config = config(path, validation_fraction=0.0)
    splits = FAMILY.prepare_splits(run_config, tmp_path)
    assert splits.sizes["validation"] == 0 and splits.sizes["test"] > 0
    assert len(FAMILY.load_split(run_config, splits.paths["validation"])) == 0


def test_a_split_column_in_the_config_gives_the_files_own_splits(tmp_path):
    path = tmp_path / "published.tsv"
    frame = sample_question_pairs(60, 0).assign(split=["train"] * 40 + ["test"] * 20)
    frame["question1"] = '"' + frame["question1"]  # a quote opened and never closed: text, as in MRPC
    frame.to_csv(path, sep="\t", index=False, quoting=3)  # csv.QUOTE_NONE
    splits = FAMILY.prepare_splits(config(path, split_column="split", validation_fraction=0.25), tmp_path)
    loaded = load_all(config(path), splits.paths)
    assert loaded["test"].rows.tolist() == list(range(40, 60))
    assert sorted(np.concatenate([loaded["train"].rows, loaded["validation"].rows]).tolist()) == list(range(40))
    assert len(loaded["validation"]) == 10 and loaded["train"].left[0].startswith('"')

    with pytest.raises(PairFileError, match=r"published\.tsv cannot be parsed as TSV with CSV quoting"):
        FAMILY.prepare_splits(config(path, quoting="csv"), tmp_path / "forced")


def test_build_learns_its_vocabulary_from_the_training_split_only(prepared):
    run_config, splits = prepared
    run_config = dataclasses.replace(run_config, model=dataclasses.replace(run_config.model, encoder="lstm"))
    train, test = (FAMILY.load_split(run_config, splits.paths[name]) for name in ("train", "test"))
    model = FAMILY.build(run_config, train, "float32")
    assert model.name == "siamese_text_pairs"
    assert all(tuple(tensor.shape) == (None,) and tensor.dtype == "string" for tensor in model.inputs)
    encoder = model.get_layer("encoder")
    vocabulary = [str(word) for word in encoder.get_layer("tokenizer").get_vocabulary()]
    train_words = {word for text in (*train.left, *train.right) for word in re.findall(r"[a-z0-9]+", text.lower())}
    assert vocabulary[:2] == ["", "[UNK]"] and set(vocabulary[2:]) <= train_words
    assert len(vocabulary) <= SMALL_MODEL.vocabulary_size
    assert encoder.get_layer("embedding").count_params() == len(vocabulary) * 5
    assert encoder.get_layer("lstm").units == 3
    assert "concat" in {layer.name for layer in model.layers}
    scores = model.predict(test.head(4).inputs(), verbose=0)
    assert scores.shape == (4, 1) and np.all((scores >= 0) & (scores <= 1))


def test_the_default_lexical_encoder_learns_its_bags_from_the_training_split_only(prepared):
    run_config, splits = prepared
    train, test = (FAMILY.load_split(run_config, splits.paths[name]) for name in ("train", "test"))
    model = FAMILY.build(run_config, train, "float32")
    encoder = model.get_layer("encoder")
    train_words = {word for text in (*train.left, *train.right) for word in re.findall(r"[a-z0-9]+", text.lower())}
    terms = [str(term) for term in encoder.get_layer("words_tf_idf").get_vocabulary()[1:]]  # after [UNK]
    assert terms and {word for term in terms for word in term.split()} <= train_words
    regulariser = model.get_layer("similarity").kernel_regularizer
    assert regulariser is not None and regulariser.l2 == pytest.approx(0.5 / len(train))
    scores = model.predict(test.head(4).inputs(), verbose=0)
    assert scores.shape == (4, 1) and np.all((scores >= 0) & (scores <= 1))


def test_baselines_are_scored_on_the_test_split_and_runs_are_named_after_the_file(prepared):
    run_config, splits = prepared
    train, validation, test = (FAMILY.load_split(run_config, splits.paths[name]) for name in ("train", "validation", "test"))
    baselines = FAMILY.baselines(run_config, train, validation, test)
    assert {"majority_accuracy", "majority_auc", "tfidf_cosine_auc", "tfidf_cosine_accuracy"} <= baselines.keys()
    assert baselines["majority_auc"] == 0.5
    assert FAMILY.loss(run_config) == "binary_crossentropy"
    assert FAMILY.example_pairs(test) is None
    assert FAMILY.data_name(run_config) == "questions.csv"


def test_the_character_bags_keep_up_to_vocabulary_size_terms_not_the_word_count(prepared):
    run_config, splits = prepared
    run_config = dataclasses.replace(run_config, model=dataclasses.replace(run_config.model, vocabulary_size=5000))
    train = FAMILY.load_split(run_config, splits.paths["train"])
    encoder = FAMILY.build(run_config, train, "float32").get_layer("encoder")
    train_words = {word for text in (*train.left, *train.right) for word in re.findall(r"[a-z0-9]+", text.lower())}
    characters = len(encoder.get_layer("characters_tf_idf").get_vocabulary())
    assert len(train_words) + 2 < characters <= 5000


def test_the_binary_bags_are_exactly_multi_hot_bags_of_the_same_terms(prepared):
    run_config, splits = prepared
    train, test = (FAMILY.load_split(run_config, splits.paths[name]) for name in ("train", "test"))
    encoder = FAMILY.build(run_config, train, "float32").get_layer("encoder")
    texts = np.asarray([*test.left[:20], "", "zzz qqq"], dtype=object)
    for kind in ("characters", "words"):
        vectorizer = encoder.get_layer(f"{kind}_tf_idf")
        multi_hot = keras.layers.TextVectorization.from_config(vectorizer.get_config() | {"output_mode": "multi_hot", "idf_weights": None})
        multi_hot.set_vocabulary(vectorizer.get_vocabulary()[1:])  # set_vocabulary adds [UNK] again
        binary = keras.Model(encoder.inputs, encoder.get_layer(f"{kind}_binary").output)
        np.testing.assert_array_equal(binary.predict(texts, verbose=0), multi_hot(texts).numpy())


def test_training_sees_random_pairs_labelled_unrelated_only_when_asked(prepared):
    run_config, splits = prepared
    train = load_all(run_config, splits.paths)["train"]
    model = FAMILY.build(run_config, train, "float32")
    assert FAMILY.trainer(run_config, model, train) == (model, train), "the default trains on the file's pairs alone"
    asked = dataclasses.replace(run_config, model=dataclasses.replace(SMALL_MODEL, head="monotone", random_negatives=0.5))
    trainer, mixed = FAMILY.trainer(asked, model, train)
    assert trainer is model and isinstance(mixed, WithRandomNegatives)
    assert (mixed.pairs, mixed.per_pair, mixed.unrelated) == (train, 0.5, 0.0)
    graded = dataclasses.replace(asked, data=dataclasses.replace(asked.data, task=Task.REGRESSION))
    graded_train = TextPairs(train.left, train.right, np.linspace(1.0, 5.0, len(train)), train.rows)
    assert FAMILY.trainer(graded, model, graded_train)[1].unrelated == 1.0, "the bottom of a graded file's scale"
