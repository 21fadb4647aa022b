"""Configuration: defaults, TOML files, command-line overrides and the errors a user sees."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
from pathlib import Path

import pytest
from shipped_configs import CONFIG_DIR, SHIPPED_CONFIGS, load_shipped, needs_data_file

from siamese.config import (
    KIND_SECTIONS,
    MAX_EPOCHS,
    MAX_FEATURES,
    MAX_IMAGE_SIZE,
    MAX_PAIRS,
    MAX_SEED,
    MAX_VOCABULARY_SIZE,
    PATIENCE,
    REAL_IMAGE_PATIENCE,
    Augment,
    Augmentation,
    Backbone,
    Config,
    ConfigError,
    DataMode,
    DevicePreference,
    GateConfig,
    Head,
    ImageDataConfig,
    ImageSource,
    Loss,
    ModelKind,
    Precision,
    SequenceDataConfig,
    Task,
    TextFileDataConfig,
    TextModelConfig,
    TextPairModelConfig,
    TrainingConfig,
    VisionModelConfig,
    check_free_disk,
    load_config,
)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid_and_give_the_reference_model_settings():
    config = Config()
    assert config.model.units == 32
    assert config.data.features == 128
    assert config.data.mode is DataMode.PARAPHRASE
    assert config.training.precision is Precision.AUTO
    assert config.training.devices is DevicePreference.AUTO
    assert load_config() == config


def test_load_config_reads_a_toml_file(tmp_path):
    path = write_toml(
        tmp_path,
        'seed = 7\n[data]\nmode = "random"\nnum_pairs = 500\n[model]\nhead = "concat"\n'
        "[training]\nepochs = 2\nlearning_rate = 0.01\n",
    )
    config = load_config(path)
    assert config.seed == 7
    assert config.data.mode is DataMode.RANDOM
    assert config.data.num_pairs == 500
    assert config.model.head is Head.CONCAT
    assert config.training.epochs == 2
    assert config.training.learning_rate == 0.01
    # Untouched fields keep their defaults.
    assert config.data.timesteps == SequenceDataConfig().timesteps
    assert config.training.batch_size == TrainingConfig().batch_size


def test_overrides_parse_strings_as_toml_literals_and_win_over_the_file(tmp_path):
    path = write_toml(tmp_path, "[training]\nepochs = 5\n")
    config = load_config(
        path,
        overrides={"training.epochs": "3", "data.noise": "0.25", "model.head": "concat", "seed": "11"},
    )
    assert config.training.epochs == 3
    assert isinstance(config.training.epochs, int)
    assert config.data.noise == 0.25
    assert config.model.head is Head.CONCAT  # a bare word is not a TOML literal: kept as a string
    assert config.seed == 11


def test_overrides_accept_typed_values_without_a_file():
    config = load_config(overrides={"data.num_pairs": 123, "training.precision": "float32"})
    assert config.data.num_pairs == 123
    assert config.training.precision is Precision.FLOAT32


def test_to_params_flattens_every_field_to_strings():
    params = Config(data=SequenceDataConfig(num_pairs=300), model=TextModelConfig(head="concat")).to_params()
    assert params["data.num_pairs"] == "300"
    assert params["model.head"] == "concat"
    assert params["seed"] == "0" and params["kind"] == "sequences"
    assert params["training.precision"] == "auto"
    assert all(isinstance(value, str) for value in params.values())
    expected_fields = 2 + sum(len(section.__dataclass_fields__) for section in (SequenceDataConfig, TextModelConfig, TrainingConfig, GateConfig))
    assert len(params) == expected_fields


def test_to_dict_round_trips_through_config_from_a_file(tmp_path):
    import tomllib

    config = Config(seed=3, data=SequenceDataConfig(mode="random", noise=0.1), training=TrainingConfig(precision="float32"))
    as_dict = config.to_dict()
    assert as_dict["data"]["mode"] == "random"
    lines = [f"seed = {as_dict['seed']}"]
    for section in ("data", "model", "training"):
        lines.append(f"[{section}]")
        lines += [f"{key} = {value!r}".replace("'", '"') for key, value in as_dict[section].items()]
    path = write_toml(tmp_path, "\n".join(lines) + "\n")
    assert tomllib.loads(path.read_text())  # the file we wrote is valid TOML
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.num_pairs": 0}, "data.num_pairs must be an integer >= 10, got 0"),
        ({"training.epochs": -1}, "training.epochs must be an integer >= 1, got -1"),
        ({"training.batch_size": 0}, "training.batch_size must be an integer >= 1, got 0"),
        ({"model.units": 0}, "model.units must be an integer >= 1, got 0"),
        ({"training.learning_rate": 0}, "training.learning_rate must be a number > 0.0, got 0"),
        ({"training.patience": -1}, "training.patience must be an integer >= 0, got -1"),
        ({"training.reduce_lr_patience": 1.5}, "training.reduce_lr_patience must be an integer >= 0, got 1.5"),
        ({"training.reduce_lr_factor": 1}, "training.reduce_lr_factor must be a number > 0.0 and < 1.0, got 1"),
        ({"data.test_fraction": 1.5}, "data.test_fraction must be a number > 0.0 and < 1.0, got 1.5"),
        ({"data.mode": "noise"}, "data.mode must be one of paraphrase, random; got 'noise'"),
        ({"model.head": "dot"}, "model.head must be one of concat, symmetric, monotone, manhattan, cosine; got 'dot'"),
        ({"training.devices": "tpu"}, "training.devices must be one of auto, cpu, gpu; got 'tpu'"),
        ({"model.units": True}, "model.units must be an integer >= 1, got True"),
        ({"data.num_pairs": 100.0}, "data.num_pairs must be an integer >= 10, got 100.0"),
        ({"data.noise": "loud"}, "data.noise must be a number >= 0.0, got 'loud'"),
        ({"data.validation_fraction": 0.5, "data.test_fraction": 0.45}, "must leave at least 10% for training"),
        ({"data.num_pair": 100}, "unknown key 'data.num_pair'"),
        ({"training.epoch": 1}, "allowed: epochs, batch_size, learning_rate, precision, devices"),
        ({"optimizer.name": "adam"}, "unknown key 'optimizer'"),
    ],
)
def test_invalid_values_and_keys_raise_a_config_error_naming_them(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=overrides)
    assert message in str(error.value)


def test_unknown_top_level_section_lists_the_allowed_ones(tmp_path):
    path = write_toml(tmp_path, "[optimiser]\nname = 'adam'\n")
    with pytest.raises(ConfigError, match="unknown key 'optimiser'") as error:
        load_config(path)
    assert "allowed: data, gate, kind, model, seed, training" in str(error.value)
    assert str(path) in str(error.value)


def test_section_that_is_not_a_table_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"\[data\] .* must be a table"):
        load_config(write_toml(tmp_path, "data = 3\n"))


def test_negative_seed_is_rejected():
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got -1"):
        Config(seed=-1)


def test_dataclasses_validate_on_direct_construction_too():
    with pytest.raises(ConfigError, match="data.timesteps must be an integer >= 4, got 2"):
        SequenceDataConfig(timesteps=2)
    with pytest.raises(ConfigError, match="training.precision must be one of auto, float32, mixed_float16"):
        TrainingConfig(precision="float16")


def test_a_file_that_does_not_parse_names_the_file(tmp_path):
    path = write_toml(tmp_path, "[training\nepochs = 3\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert "is not valid TOML" in str(error.value)


def test_a_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="does not exist") as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_configs_directory_ships_configs():
    assert SHIPPED_CONFIGS, f"no *.toml in {CONFIG_DIR}"


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=[path.name for path in SHIPPED_CONFIGS])
def test_every_shipped_config_loads(path, tmp_path):
    config = load_shipped(path, tmp_path)
    assert isinstance(config, Config)
    if needs_data_file(path):
        assert config.data.path == str(tmp_path / "questions.csv")
    else:
        assert config.data.num_pairs >= 10


def test_unreadable_config_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)


def test_override_into_a_scalar_is_a_config_error(tmp_path):
    path = tmp_path / "seeded.toml"
    path.write_text("seed = 3\n")
    with pytest.raises(ConfigError, match="'seed' is not a table"):
        load_config(path, overrides={"seed.x": "1"})


def test_kind_vision_takes_the_vision_sections_and_their_defaults():
    config = load_config(overrides={"kind": "vision", "data.image_size": "80", "model.backbone": "xception"})
    assert config.kind is ModelKind.VISION
    assert isinstance(config.data, ImageDataConfig) and isinstance(config.model, VisionModelConfig)
    assert config.data.image_size == 80 and config.model.backbone is Backbone.XCEPTION
    assert config.data.source is ImageSource.STEREO
    assert config.task is Task.SIMILARITY and Config().task is Task.SIMILARITY
    params = config.to_params()
    assert params["kind"] == "vision" and params["model.backbone"] == "xception" and "data.timesteps" not in params


@pytest.mark.parametrize(
    ("source", "recipe"),
    [
        ("stereo", ("compact", "fusion", "avg", 16)),
        ("folder", ("conv4", "symmetric", "flatten", 8)),
        ("csv", ("conv4", "symmetric", "flatten", 8)),
    ],
)
def test_unset_vision_model_fields_take_the_data_sources_recipe(source, recipe):
    config = Config(kind="vision", data=ImageDataConfig(source=source, path="" if source == "stereo" else "x"))
    assert (config.model.backbone, config.model.head, config.model.pooling, config.model.filters) == recipe
    params = config.to_params()
    assert [params[f"model.{key}"] for key in ("backbone", "head", "pooling", "filters")] == [str(value) for value in recipe]


@pytest.mark.parametrize(
    ("kind", "data", "patience"),
    [
        ("sequences", None, PATIENCE),
        ("text", TextFileDataConfig(path="pairs.csv"), PATIENCE),
        ("vision", ImageDataConfig(), PATIENCE),
        ("vision", ImageDataConfig(source="folder", path="x"), REAL_IMAGE_PATIENCE),
        ("vision", ImageDataConfig(source="csv", path="x.csv"), REAL_IMAGE_PATIENCE),
    ],
)
def test_unset_patience_is_longer_for_real_images(kind, data, patience):
    assert Config(kind=kind, data=data).training.patience == patience
    assert Config(kind=kind, data=data, training=TrainingConfig(patience=1)).training.patience == 1


def test_contrastive_vision_loss_needs_similarity_and_a_symmetric_head():
    folder = ImageDataConfig(source="folder", path="x")
    assert Config(kind="vision", data=folder, model=VisionModelConfig(loss="contrastive")).model.loss is Loss.CONTRASTIVE
    with pytest.raises(ConfigError, match="needs data.task 'similarity' and a symmetric head .* head 'fusion'"):
        Config(kind="vision", model=VisionModelConfig(loss="contrastive"))  # stereo's recipe: fusion
    with pytest.raises(ConfigError, match="got task 'regression'"):
        Config(kind="vision", data=ImageDataConfig(task="regression"), model=VisionModelConfig(loss="contrastive", head="l1"))


def test_explicit_vision_model_fields_override_the_recipe():
    model = VisionModelConfig(head="l1", pooling="", filters=4)  # "" is unset, as in a TOML file
    config = Config(kind="vision", data=ImageDataConfig(source="folder", path="x"), model=model)
    assert (config.model.backbone, config.model.head, config.model.pooling, config.model.filters) == ("conv4", "l1", "flatten", 4)


def test_vision_config_file_round_trips_through_to_dict(tmp_path):
    config = Config(kind="vision", data=ImageDataConfig(task="regression", channels=1), model=VisionModelConfig(head="concat"))
    lines = [f'kind = "{config.kind}"', f"seed = {config.seed}"]
    for section in ("data", "model", "training"):
        lines.append(f"[{section}]")
        lines += [f"{key} = {value!r}".replace("'", '"') for key, value in config.to_dict()[section].items()]
    assert load_config(write_toml(tmp_path, "\n".join(lines) + "\n")) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "audio"}, "kind must be one of sequences, text, vision; got 'audio'"),
        ({"kind": "vision", "data.timesteps": 5}, "unknown key 'data.timesteps' for a vision model"),
        ({"kind": "vision", "data.timesteps": 5}, """('data.timesteps' is read by kind sequences: set kind = "sequences")"""),
        ({"data.image_size": 32}, "unknown key 'data.image_size' for a sequences model (generated sequences)"),
        ({"data.image_size": 32}, """('data.image_size' is read by kind vision: set kind = "vision")"""),
        ({"kind": "sequences", "data.path": "q.csv"}, """('data.path' is read by kind text and vision: set kind = "text")"""),
        ({"kind": "vision", "model.backbone": "xception"}, "model.backbone 'xception' needs data.image_size >= 71, got 48"),
        ({"kind": "vision", "data.image_size": 8}, "data.image_size must be an integer >= 16, got 8"),
        ({"kind": "vision", "data.channels": 2}, "data.channels must be 1 (grayscale) or 3 (RGB), got 2"),
        ({"kind": "vision", "data.source": "folder"}, "data.path is required when data.source is 'folder'"),
        ({"kind": "vision", "data.source": "csv"}, "data.path is required when data.source is 'csv'"),
        (
            {"kind": "vision", "data.source": "folder", "data.path": "x", "data.task": "regression"},
            "data.task must be 'similarity' when data.source is 'folder'",
        ),
        ({"kind": "vision", "model.head": "cosine"}, "model.head must be one of concat, fusion, symmetric, l1; got 'cosine'"),
        ({"kind": "vision", "data.split_by": "person"}, "data.split_by must be one of auto, class, image, group; got 'person'"),
        ({"kind": "vision", "model.pooling": "sum"}, "model.pooling must be one of avg, max, flatten; got 'sum'"),
        ({"kind": "vision", "data.augment": "always"}, "data.augment must be one of auto, on, off; got 'always'"),
        ({"kind": "vision", "data.training_pairs": "all"}, "data.training_pairs must be one of auto, drawn, in_batch; got 'all'"),
        (
            {"kind": "vision", "data.source": "csv", "data.path": "x.csv", "data.training_pairs": "in_batch"},
            "data.training_pairs 'in_batch' needs the classes of a class folder (data.source 'folder'), not 'csv'",
        ),
        ({"kind": "vision", "data.translation": 0.5}, "data.translation must be a number >= 0.0 and < 0.5, got 0.5"),
        ({"kind": "vision", "data.rotation": -0.1}, "data.rotation must be a number >= 0.0 and < 0.5, got -0.1"),
        ({"kind": "vision", "data.zoom": 1}, "data.zoom must be a number >= 0.0 and < 1.0, got 1"),
        ({"kind": "vision", "data.contrast": "strong"}, "data.contrast must be a number >= 0.0 and < 1.0, got 'strong'"),
        ({"kind": "vision", "data.contrast": True}, "data.contrast must be a number >= 0.0 and < 1.0, got True"),
    ],
)
def test_invalid_vision_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=overrides)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("source", "augment", "augmented"),
    [
        ("folder", "auto", True),
        ("csv", "auto", True),
        ("stereo", "auto", False),  # independent shifts of the two views would change their disparity
        ("folder", "", True),  # blank means auto
        ("folder", "off", False),
        ("csv", "off", False),
        ("stereo", "on", True),
    ],
)
def test_augmentation_is_on_for_real_images_and_off_for_generated_stereo_unless_set(source, augment, augmented):
    path = "" if source == "stereo" else "images"
    data = ImageDataConfig(source=source, path=path, augment=augment)
    assert data.augmentation == (Augmentation() if augmented else None)
    assert data.augment is (Augment.AUTO if augment == "" else Augment(augment))


@pytest.mark.parametrize(
    ("source", "training_pairs", "in_batch"),
    [("folder", "auto", True), ("folder", "", True), ("folder", "drawn", False), ("csv", "auto", False), ("stereo", "auto", False)],
)
def test_class_folders_train_on_every_pair_of_a_batch_unless_set(source, training_pairs, in_batch):
    data = ImageDataConfig(source=source, path="" if source == "stereo" else "images", training_pairs=training_pairs)
    assert data.in_batch_training is in_batch


def test_augmentation_strengths_are_read_from_the_data_section_and_zero_is_allowed():
    config = load_config(
        overrides={"kind": "vision", "data.source": "csv", "data.path": "pairs.csv", "data.zoom": 0, "data.rotation": 0.1}
    )
    assert config.data.augmentation == Augmentation(translation=0.1, rotation=0.1, zoom=0.0, contrast=0.2)
    assert isinstance(config.data.zoom, float)
    params = config.to_params()
    assert {key: params[f"data.{key}"] for key in ("augment", "translation", "rotation", "zoom", "contrast")} == {
        "augment": "auto", "translation": "0.1", "rotation": "0.1", "zoom": "0.0", "contrast": "0.2",
    }  # fmt: skip


def test_augmentation_validates_on_direct_construction_naming_the_argument():
    with pytest.raises(ConfigError, match=r"^translation must be a number >= 0.0 and < 0.5, got 0.6$"):
        Augmentation(translation=0.6)
    assert Augmentation(translation=0, rotation=0, zoom=0, contrast=0).translation == 0.0


def test_sections_of_the_wrong_kind_are_rejected():
    with pytest.raises(ConfigError, match=r"\[data\] of a vision run must be a ImageDataConfig, got SequenceDataConfig"):
        Config(kind="vision", data=SequenceDataConfig())


# Text pairs from a file


def test_a_data_path_selects_text_pairs_from_a_file_and_keeps_the_text_model():
    config = load_config(overrides={"data.path": "pairs.csv", "data.threshold": "4", "model.vocabulary_size": 50})
    assert isinstance(config.data, TextFileDataConfig) and isinstance(config.model, TextModelConfig)
    assert config.kind is ModelKind.TEXT and config.task is Task.SIMILARITY
    assert config.data.path == "pairs.csv" and config.data.left_column == ""
    assert config.data.threshold == 4.0 and type(config.data.threshold) is float  # an integer score becomes a float
    assert config.data.drop_invalid_rows is False
    assert (config.data.format, config.data.quoting, config.data.split_column) == ("auto", "auto", "")
    assert load_config(overrides={"data.path": "p.tsv", "data.quoting": ""}).data.quoting == "auto"  # blank: detect
    assert config.model.vocabulary_size == 50
    assert isinstance(load_config(overrides={"data.num_pairs": 50}).data, SequenceDataConfig)


def test_a_data_path_in_a_toml_file_selects_text_pairs_from_a_file(tmp_path):
    path = write_toml(
        tmp_path,
        '[data]\npath = "q.parquet"\nleft_column = "a"\nright_column = "b"\nlabel_column = "y"\n'
        "drop_invalid_rows = true\nvalidation_fraction = 0.0\n",
    )
    assert load_config(path).data == TextFileDataConfig(
        path="q.parquet", left_column="a", right_column="b", label_column="y", drop_invalid_rows=True, validation_fraction=0.0
    )


def test_text_model_defaults_give_the_reference_lstm_input_width():
    model = TextModelConfig()
    assert (model.vocabulary_size, model.sequence_length, model.embedding_dim) == (20_000, 40, 128)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.path": ""}, "data.path must name a CSV, TSV or Parquet file of text pairs"),
        ({"data.path": 3}, "data.path must be a string, got 3"),
        ({"data.path": "q.csv", "data.left_column": 1}, "data.left_column must be a string, got 1"),
        ({"data.path": "q.csv", "data.label_column": ["y"]}, "data.label_column must be a string, got ['y']"),
        ({"data.path": "q.csv", "data.threshold": True}, "data.threshold must be a number (the score at which a pair counts as similar), got True"),
        ({"data.path": "q.csv", "data.threshold": "high"}, "data.threshold must be a number (the score at which a pair counts as similar), got 'high'"),
        ({"data.path": "q.csv", "data.threshold": float("nan")}, "data.threshold must be a number (the score at which a pair counts as similar), got nan"),
        ({"data.path": "q.csv", "data.threshold": "inf"}, "data.threshold must be a number (the score at which a pair counts as similar), got inf"),
        ({"data.path": "q.csv", "data.drop_invalid_rows": 1}, "data.drop_invalid_rows must be true or false, got 1"),
        ({"data.path": "q.csv", "data.drop_invalid_rows": "yes"}, "data.drop_invalid_rows must be true or false, got 'yes'"),
        ({"data.path": "q.txt", "data.quoting": "single"}, "data.quoting must be one of auto, csv, none; got 'single'"),
        ({"data.path": "q.txt", "data.format": "xlsx"}, "data.format must be one of auto, csv, tsv, parquet; got 'xlsx'"),
        ({"data.path": "q.csv", "data.split_column": 1}, "data.split_column must be a string, got 1"),
        ({"data.path": "q.csv", "data.test_fraction": 0}, "data.test_fraction must be a number > 0.0 and < 1.0, got 0"),
        ({"data.path": "q.csv", "data.validation_fraction": -0.1}, "data.validation_fraction must be a number >= 0.0 and < 1.0, got -0.1"),
        ({"data.path": "q.csv", "data.validation_fraction": 0.7, "data.test_fraction": 0.25}, "must leave at least 10% for training"),
        ({"model.vocabulary_size": 2}, "model.vocabulary_size must be an integer >= 3, got 2"),
        ({"model.vocabulary_size": 100.0}, "model.vocabulary_size must be an integer >= 3, got 100.0"),
        ({"model.sequence_length": 0}, "model.sequence_length must be an integer >= 1, got 0"),
        ({"model.embedding_dim": 0}, "model.embedding_dim must be an integer >= 1, got 0"),
        ({"model.embedding_dim": True}, "model.embedding_dim must be an integer >= 1, got True"),
    ],
)
def test_invalid_text_file_and_text_model_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=overrides)
    assert message in str(error.value)


def test_unknown_keys_name_which_kind_of_text_data_they_were_read_for():
    with pytest.raises(ConfigError) as error:
        load_config(overrides={"data.path": "q.csv", "data.num_pairs": 100})
    message = str(error.value)
    assert "unknown key 'data.num_pairs'" in message and "text pairs from a file" in message
    assert "allowed: path, left_column, right_column, label_column, threshold, task, drop_invalid_rows" in message

    with pytest.raises(ConfigError) as error:
        load_config(overrides={"data.threshold": 0.5})  # no path: generated sequences, which have no threshold
    message = str(error.value)
    assert "unknown key 'data.threshold'" in message and "generated" in message
    assert "text pairs from a file" not in message
    assert "allowed: mode, num_pairs, timesteps, features, noise" in message


def test_a_text_file_section_is_accepted_for_text_and_rejected_for_other_kinds():
    data = TextFileDataConfig(path="q.csv")
    config = Config(kind=ModelKind.TEXT, data=data)
    assert config.data is data and isinstance(config.model, TextModelConfig)
    with pytest.raises(ConfigError, match=r"\[data\] of a vision run must be a ImageDataConfig, got TextFileDataConfig"):
        Config(kind="vision", data=data)
    with pytest.raises(ConfigError, match=r"\[data\] of a sequences run must be a SequenceDataConfig, got TextFileDataConfig"):
        Config(data=data)  # the kind is never guessed from a section's type
    with pytest.raises(ConfigError, match=r"\[data\] of a text run must be a TextFileDataConfig, got ImageDataConfig"):
        Config(kind="text", data=ImageDataConfig())
    with pytest.raises(ConfigError, match="data.path must name a CSV, TSV or Parquet file of text pairs"):
        Config(kind="text")  # text pairs need their file


def test_to_params_of_a_text_file_config_records_the_file_options():
    unthresholded = Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path="q.csv")).to_params()
    assert unthresholded["data.path"] == "q.csv"
    assert unthresholded["data.threshold"] == "None"
    assert unthresholded["data.drop_invalid_rows"] == "False"
    assert unthresholded["model.vocabulary_size"] == "20000" and unthresholded["model.embedding_dim"] == "128"
    assert "data.num_pairs" not in unthresholded and "data.features" not in unthresholded
    expected_fields = 2 + sum(len(section.__dataclass_fields__) for section in (TextFileDataConfig, TextPairModelConfig, TrainingConfig, GateConfig))
    assert len(unthresholded) == expected_fields

    thresholded = Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path="q.csv", threshold=0.5, drop_invalid_rows=True)).to_params()
    assert thresholded["data.threshold"] == "0.5" and thresholded["data.drop_invalid_rows"] == "True"


@pytest.mark.parametrize(("validation", "test"), [(0.6, 0.3), (0.5, 0.4), (0.0, 0.9)])
def test_fractions_leaving_exactly_ten_percent_for_training_are_accepted(validation, test):
    config = load_config(None, {"data.validation_fraction": validation, "data.test_fraction": test})
    assert config.data.validation_fraction + config.data.test_fraction == pytest.approx(0.9)


def test_gate_defaults_follow_the_task():
    similarity, regression = Config(), load_config(None, {"kind": "vision", "data.task": "regression"})
    assert (similarity.gate.metric_for(similarity.task), similarity.gate.quality_bar(similarity.task)) == ("roc_auc", 0.6)
    assert (regression.gate.metric_for(regression.task), regression.gate.quality_bar(regression.task)) == ("mae", None)
    custom = load_config(None, {"gate.metric": "accuracy", "gate.min_quality": 0.8})
    assert (custom.gate.metric_for(custom.task), custom.gate.quality_bar(custom.task)) == ("accuracy", 0.8)
    assert similarity.gate.min_test_pairs == custom.gate.min_test_pairs == 50, "an explicit bar still needs pairs to judge on"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gate.metric": "f1"}, "gate.metric must be one of accuracy, log_loss, mae, pearson, rmse, roc_auc"),
        ({"gate.metric": "mae"}, "gate.metric 'mae' does not fit a similarity model; use one of roc_auc, accuracy, log_loss"),
        ({"gate.min_improvement": -0.1}, "gate.min_improvement must be a number >= 0.0"),
        ({"gate.bootstrap_samples": 10}, "gate.bootstrap_samples must be an integer >= 100"),
        ({"gate.min_test_pairs": -1}, "gate.min_test_pairs must be an integer >= 0"),
        ({"gate.confidence": 1.0}, "gate.confidence must be a number >= 0.5 and < 1.0"),
    ],
)
def test_invalid_gate_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


# The text pair model: encoder, loss, margin, dropout


def test_text_pair_model_defaults_and_enums():
    model = load_config(overrides={"data.path": "q.csv", "model.encoder": "bilstm", "model.loss": "contrastive", "model.margin": 0.3}).model
    assert isinstance(model, TextPairModelConfig)
    assert (model.encoder, model.loss, model.margin) == ("bilstm", "contrastive", 0.3)
    defaults = TextPairModelConfig()
    assert (defaults.encoder, defaults.loss, defaults.head, defaults.embeddings, defaults.fine_tune_embeddings, defaults.random_negatives) == (
        "lexical", "binary_crossentropy", "symmetric", "", False, 0.0
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.encoder": "transformer"}, "model.encoder"),
        ({"model.loss": "triplet"}, "model.loss"),
        ({"model.margin": 0.0}, "model.margin must be a number > 0.0 and < 1.0, got 0.0"),
        ({"model.margin": 1.0}, "model.margin must be a number > 0.0 and < 1.0, got 1.0"),
        ({"model.margin": True}, "model.margin must be a number"),
        ({"model.dropout": -0.1}, "model.dropout must be a number >= 0.0 and < 1.0, got -0.1"),
        ({"model.dropout": 1.0}, "model.dropout must be a number >= 0.0 and < 1.0, got 1.0"),
        ({"model.fine_tune_embeddings": "yes"}, "model.fine_tune_embeddings must be true or false, got 'yes'"),
        ({"model.random_negatives": -1}, "model.random_negatives must be a number >= 0.0 and < 16, got -1"),
        ({"model.random_negatives": 16}, "model.random_negatives must be a number >= 0.0 and < 16, got 16"),
        ({"model.random_negatives": float("inf")}, "model.random_negatives must be a finite number"),
        ({"model.embeddings": "glove.txt"}, "model.embeddings needs a learned encoder"),
        ({"model.loss": "contrastive", "model.head": "concat"}, "model.loss 'contrastive' needs a symmetric head"),
    ],
)
def test_invalid_text_pair_model_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(overrides={"data.path": "q.csv"} | overrides)
    assert message in str(error.value)


@pytest.mark.parametrize(("field", "value"), [("encoder", "transformer"), ("loss", "triplet")])
def test_an_unknown_encoder_or_loss_is_named_with_the_choices(field, value):
    with pytest.raises(ConfigError) as error:
        TextPairModelConfig(**{field: value})
    message = str(error.value)
    assert f"model.{field}" in message and value in message
    choices = {"encoder": ["lexical", "bilstm", "lstm"], "loss": ["binary_crossentropy", "contrastive"]}[field]
    assert all(choice in message for choice in choices)


def test_contrastive_loss_is_accepted_with_every_symmetric_head():
    for head in ("symmetric", "manhattan", "cosine"):
        assert TextPairModelConfig(loss="contrastive", head=head).loss == "contrastive"


# Limits: every float finite, sane maxima, the free disk


KIND_OVERRIDES = {ModelKind.SEQUENCES: {}, ModelKind.TEXT: {"data.path": "q.csv"}, ModelKind.VISION: {"kind": "vision"}}


def float_keys() -> list[tuple[ModelKind, str]]:
    """Every float field of every kind's sections, found from the dataclasses: a new one is covered too."""
    keys = []
    for kind, sections in KIND_SECTIONS.items():
        for section, cls in (sections | {"training": TrainingConfig, "gate": GateConfig}).items():
            keys += [(kind, f"{section}.{field.name}") for field in dataclasses.fields(cls) if "float" in str(field.type)]
    return keys


def test_the_float_fields_found_include_each_kind_and_section():
    found = set(float_keys())
    assert (ModelKind.SEQUENCES, "training.learning_rate") in found and (ModelKind.VISION, "data.zoom") in found
    assert (ModelKind.TEXT, "data.threshold") in found and (ModelKind.SEQUENCES, "gate.min_quality") in found


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 10**400])
@pytest.mark.parametrize(("kind", "key"), float_keys())
def test_every_float_refuses_infinity_and_nan_naming_its_key(kind, key, value):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=KIND_OVERRIDES[kind] | {key: value})
    assert str(error.value).startswith(f"{key} must be a") or (key.endswith("_fraction") and key in str(error.value))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"training.learning_rate": "inf"}, "training.learning_rate must be a finite number > 0.0, got inf"),  # as --set passes it
        ({"data.noise": "nan"}, "data.noise must be a finite number >= 0.0, got nan"),
        ({"gate.min_improvement": "inf"}, "gate.min_improvement must be a finite number >= 0.0, got inf"),
        ({"seed": 10**30}, f"seed must be an integer from 0 to {MAX_SEED:,}, got {10**30:,}"),
        ({"seed": MAX_SEED + 1}, "seed must be an integer from 0 to 4,294,967,295, got 4,294,967,296"),
        ({"training.epochs": 10**9}, "training.epochs must be an integer from 1 to 10,000, got 1,000,000,000"),
        ({"data.num_pairs": 10**12}, "data.num_pairs must be an integer from 10 to 100,000,000, got 1,000,000,000,000"),
        ({"data.features": MAX_FEATURES + 1}, "data.features must be an integer from 1 to 65,536, got 65,537"),
        ({"kind": "vision", "data.num_pairs": MAX_PAIRS + 1}, "data.num_pairs must be an integer from 10 to 100,000,000"),
        ({"kind": "vision", "data.image_size": 4096}, "data.image_size must be an integer from 16 to 1,024, got 4,096"),
        ({"data.path": "q.csv", "model.vocabulary_size": 10**8}, "model.vocabulary_size must be an integer from 3 to 10,000,000"),
    ],
)
def test_values_beyond_their_limit_are_refused_with_the_number_and_the_maximum(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=overrides)
    assert str(error.value).startswith(message)


def test_each_maximum_itself_is_accepted():
    config = load_config(overrides={"seed": MAX_SEED, "training.epochs": MAX_EPOCHS, "data.num_pairs": MAX_PAIRS, "data.features": MAX_FEATURES})
    assert (config.seed, config.training.epochs, config.data.num_pairs, config.data.features) == (MAX_SEED, MAX_EPOCHS, MAX_PAIRS, MAX_FEATURES)
    assert load_config(overrides={"kind": "vision", "data.image_size": MAX_IMAGE_SIZE}).data.image_size == MAX_IMAGE_SIZE
    assert load_config(overrides={"data.path": "q.csv", "model.vocabulary_size": MAX_VOCABULARY_SIZE}).model.vocabulary_size == MAX_VOCABULARY_SIZE


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (SequenceDataConfig(num_pairs=100, timesteps=20, features=128), 100 * (2 * 4 * 20 * 128 + 4)),  # float32 sides, a label
        (ImageDataConfig(num_pairs=100, image_size=48, channels=3), 100 * (2 * 48 * 48 * 3 + 4)),  # uint8 images, a label
        (ImageDataConfig(image_size=16, channels=1), 2000 * (2 * 16 * 16 + 4)),  # unset: 2,000 stereo pairs
        (ImageDataConfig(source="folder", path="faces", image_size=1024), 0),  # files are written as paths
        (TextFileDataConfig(path="q.csv"), 0),
    ],
)
def test_generated_bytes_count_what_each_source_writes(data, expected):
    assert data.generated_bytes == expected


def test_generated_pairs_larger_than_the_free_disk_are_refused_with_both_sizes(tmp_path):
    config = load_config(overrides={"data.num_pairs": MAX_PAIRS, "data.timesteps": 1000, "data.features": MAX_FEATURES})
    needed = config.data.generated_bytes  # 52 PB: more than any disk
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(ConfigError) as error:
        check_free_disk(config, tmp_path / "not" / "yet")  # the work directory need not exist yet
    message = str(error.value)
    assert message.startswith(f"100,000,000 generated pairs would write {needed:,} bytes")
    assert f"to {tmp_path / 'not' / 'yet'}, which has " in message and "lower data.num_pairs" in message
    reported_free = int(re.search(r"which has ([\d,]+) bytes", message).group(1).replace(",", ""))
    assert abs(reported_free - free) < 2**30  # other writers may change it a little meanwhile
    assert not (tmp_path / "not").exists()


def test_generated_stereo_pairs_are_checked_too(tmp_path):
    config = load_config(overrides={"kind": "vision", "data.num_pairs": MAX_PAIRS, "data.image_size": MAX_IMAGE_SIZE})
    with pytest.raises(ConfigError, match=r"^100,000,000 generated pairs would write 629,146,000,000,000 bytes \(585,937.9 GiB\)"):
        check_free_disk(config, tmp_path)


def test_plans_that_fit_and_data_that_is_not_generated_pass_the_disk_check(tmp_path):
    check_free_disk(load_config(), tmp_path)  # 4,000 default pairs: 84 MB
    check_free_disk(load_config(overrides={"kind": "vision", "data.source": "folder", "data.path": "faces"}), tmp_path)
