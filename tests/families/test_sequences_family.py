"""The generated-sequences family: splits written as shards and read back, the reference LSTM(32), its loss and name."""

from __future__ import annotations

import numpy as np
import pytest

from siamese.config import Config, ModelKind, SequenceDataConfig, TextModelConfig
from siamese.data.shards import PairShards
from siamese.families import family_of

FAMILY = family_of(ModelKind.SEQUENCES)


def config(**data) -> Config:
    return Config(kind=ModelKind.SEQUENCES, data=SequenceDataConfig(**{"num_pairs": 50, "timesteps": 5} | data))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sequences")
    return FAMILY.prepare_splits(config(), directory), directory


def test_splits_are_written_as_shards_with_their_sizes_and_labels(prepared):
    splits, directory = prepared
    assert sorted(path.name for path in directory.iterdir()) == ["test.shards", "train.shards", "validation.shards"]
    assert splits.paths == {name: directory / f"{name}.shards" for name in ("train", "validation", "test")}
    assert sum(splits.sizes.values()) == 50 and splits.sizes["test"] == 10
    assert splits.source is None, "generated data has no user file to trace"
    for name, path in splits.paths.items():
        loaded = FAMILY.load_split(config(), path)
        assert isinstance(loaded, PairShards) and len(loaded) == splits.sizes[name]
        assert splits.labels[name] == f"{int(loaded.labels.sum())} positive"


def test_split_round_trip_gives_the_generated_pairs_at_the_configured_shape(prepared):
    splits, _ = prepared
    test = FAMILY.load_split(config(), splits.paths["test"]).head(4)
    assert test.left.shape == (4, 5, 128) and test.left.dtype == np.float32
    assert set(np.unique(test.labels)) <= {0.0, 1.0}


def test_the_same_seed_generates_the_same_splits(prepared, tmp_path):
    splits, _ = prepared
    again = FAMILY.prepare_splits(config(), tmp_path)
    first, second = (FAMILY.load_split(config(), paths["test"]).head(10) for paths in (splits.paths, again.paths))
    np.testing.assert_array_equal(first.left, second.left)
    np.testing.assert_array_equal(first.labels, second.labels)


@pytest.mark.parametrize("head", ["concat", "symmetric"])
def test_build_gives_the_reference_shared_lstm(prepared, head):
    splits, _ = prepared
    reference = Config(kind=ModelKind.SEQUENCES, model=TextModelConfig(head=head))
    model = FAMILY.build(reference, FAMILY.load_split(config(), splits.paths["train"]), "float32")
    assert model.name == "siamese_text"
    assert [tuple(tensor.shape) for tensor in model.inputs] == [(None, None, 128)] * 2
    assert tuple(model.output.shape) == (None, 1)
    assert model.count_params() == 20_673 and model.get_layer("encoder").count_params() == 20_608


def test_build_follows_features_units_and_the_dtype_policy(prepared):
    splits, _ = prepared
    small = Config(kind=ModelKind.SEQUENCES, data=SequenceDataConfig(features=7), model=TextModelConfig(units=3))
    model = FAMILY.build(small, FAMILY.load_split(config(), splits.paths["train"]), "mixed_float16")
    assert tuple(model.inputs[0].shape) == (None, None, 7)
    assert model.get_layer("encoder").count_params() == 4 * (3 * (7 + 3) + 3)
    assert model.get_layer("encoder").get_layer("lstm").dtype_policy.name == "mixed_float16"


def test_similarity_loss_no_baselines_no_example_pictures_and_a_name_for_runs(prepared):
    splits, _ = prepared
    test = FAMILY.load_split(config(), splits.paths["test"])
    assert FAMILY.loss(config()) == "binary_crossentropy"
    assert FAMILY.baselines(config(), test, test, test) == {}
    assert FAMILY.example_pairs(test) is None
    assert FAMILY.data_name(config(mode="random")) == "random"
