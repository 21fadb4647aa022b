"""The family registry: every kind has one recipe, what it ships as, and old config files that still pick the right one."""

from __future__ import annotations

import pytest

from siamese.config import KIND_SECTIONS, Config, ImageDataConfig, ModelKind, SequenceDataConfig, TextFileDataConfig, TextPairModelConfig, load_config
from siamese.families import FAMILIES, Family, ModelFormat, family_of

# What users and the registry see: changing any of these strands registered versions and MLflow experiments.
SHIPPED_AS = {
    ModelKind.SEQUENCES: ("siamese-text", "siamese-text-sequences", ModelFormat.KERAS),
    ModelKind.TEXT: ("siamese-text", "siamese-text", ModelFormat.RAW_TEXT),
    ModelKind.VISION: ("siamese-vision", "siamese-vision", ModelFormat.KERAS),
}


@pytest.mark.parametrize("kind", list(ModelKind))
def test_every_kind_has_one_family_and_its_config_sections(kind):
    family = family_of(kind)
    assert isinstance(family, Family) and family.kind is kind
    assert family_of(str(kind)) is family is FAMILIES[kind]
    assert set(KIND_SECTIONS[kind]) == {"data", "model"}


@pytest.mark.parametrize("kind", list(ModelKind))
def test_each_family_ships_under_its_experiment_and_registered_name(kind):
    family = family_of(kind)
    assert (family.experiment, family.registered_name, family.model_format) == SHIPPED_AS[kind]


def test_registered_names_are_one_per_input_contract():
    text = family_of(ModelKind.TEXT)
    names = [family.registered_name for family in FAMILIES.values()] + [text.graded_registered_name, text.collection_registered_name]
    assert len(names) == len(set(names)), "two families with different inputs may not share a registered model"


def test_graded_text_models_register_apart_from_similarity_ones():
    """A graded model answers on its file's scale (0-5): its versions must never be gated against a 0/1 champion."""
    family = family_of(ModelKind.TEXT)
    similarity = Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path="pairs.csv"))
    graded = Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path="pairs.csv", task="regression"))
    assert family.registered_model_name(similarity) == "siamese-text"
    assert family.registered_model_name(graded) == "siamese-text-graded"
    collection = Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path="pairs.csv"), model=TextPairModelConfig(random_negatives=1.0))
    assert family.registered_model_name(collection) == "siamese-text-collection", "judged against its own kind, not pair champions"
    sequences = family_of(ModelKind.SEQUENCES)
    assert sequences.registered_model_name(Config()) == sequences.registered_name


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="audio"):
        family_of("audio")


@pytest.mark.parametrize(
    ("toml", "kind", "data"),
    [
        ("", ModelKind.SEQUENCES, SequenceDataConfig),
        ('kind = "text"\n[data]\nmode = "random"\n', ModelKind.SEQUENCES, SequenceDataConfig),  # before `sequences` existed
        ('kind = "text"\n', ModelKind.SEQUENCES, SequenceDataConfig),
        ('kind = "sequences"\n[data]\nnum_pairs = 50\n', ModelKind.SEQUENCES, SequenceDataConfig),
        ('[data]\npath = "pairs.csv"\n', ModelKind.TEXT, TextFileDataConfig),
        ('kind = "text"\n[data]\npath = "pairs.csv"\n', ModelKind.TEXT, TextFileDataConfig),
        ('kind = "vision"\n', ModelKind.VISION, ImageDataConfig),
    ],
)
def test_config_files_old_and_new_pick_the_family_that_reads_them(tmp_path, toml, kind, data):
    path = tmp_path / "run.toml"
    path.write_text(toml)
    config = load_config(path)
    assert config.kind is kind and isinstance(config.data, data)
    assert family_of(config.kind).kind is kind


def test_a_legacy_text_config_trains_and_registers_as_generated_sequences():
    config = load_config(overrides={"kind": "text", "data.num_pairs": 50})
    family = family_of(config.kind)
    assert family.registered_name == "siamese-text-sequences" and family.model_format is ModelFormat.KERAS
