"""Search spaces: `[tune]` tables read and checked against the config before any work, trial configs, family spaces."""

from __future__ import annotations

import pytest

from siamese.config import ConfigError, TextEncoder, config_toml, load_config
from siamese.tuning import Choice, FloatRange, IntRange, check_sweep_size, search_space_for, search_space_from, trial_config

TEXT = load_config(None, {"kind": "text", "data.path": "questions.csv"})


class FixedTrial:
    """Answers each suggestion with its low end, or its last choice: what sampling asks for, without a tuner."""

    def __init__(self) -> None:
        self.asked: list[tuple] = []

    def suggest_float(self, name, low, high, *, log=False):
        self.asked.append(("float", name, low, high, log))
        return low

    def suggest_int(self, name, low, high, *, step=1, log=False):
        self.asked.append(("int", name, low, high, step, log))
        return low

    def suggest_categorical(self, name, choices):
        self.asked.append(("categorical", name, tuple(choices)))
        return choices[-1]


def test_a_tune_table_reads_ranges_log_ranges_steps_and_choices_in_either_spelling():
    space = search_space_from(
        {
            "training.learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
            "model": {"units": {"low": 16, "high": 64, "step": 16}, "head": ["symmetric", "cosine"]},
        },
        TEXT,
    )
    assert dict(space.dimensions) == {
        "training.learning_rate": FloatRange(1e-4, 1e-1, log=True),
        "model.units": IntRange(16, 64, step=16),
        "model.head": Choice(("symmetric", "cosine")),
    }
    trial = FixedTrial()
    assert space.sample(trial) == {"training.learning_rate": 1e-4, "model.units": 16, "model.head": "cosine"}
    assert ("float", "training.learning_rate", 1e-4, 1e-1, True) in trial.asked
    assert search_space_from(space.to_dict(), TEXT) == space  # what a run's params show reads back the same


@pytest.mark.parametrize(
    ("table", "named", "says"),
    [
        ({"model.nope": {"low": 1, "high": 2}}, "model.nope", "unknown key"),
        ({"data.path": ["a.csv", "b.csv"]}, "data.path", "unknown key"),  # which pairs are judged is not a hyperparameter
        ({"training.devices": ["cpu", "gpu"]}, "training.devices", "unknown key"),
        ({"training.learning_rate": {"low": 0.1, "high": 0.01}}, "training.learning_rate", "empty range"),
        ({"training.learning_rate": {"low": 0.01, "high": 0.01}}, "training.learning_rate", "empty range"),
        ({"training.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, "training.learning_rate", "above zero"),
        ({"model.dropout": {"low": -0.5, "high": 0.5, "log": True}}, "model.dropout", "above zero"),
        ({"training.learning_rate": {"low": -1.0, "high": 0.1}}, "training.learning_rate", "valid config"),
        ({"model.head": ["symmetric", "bogus"]}, "model.head", "bogus"),
        ({"model.head": ["symmetric"]}, "model.head", "at least two"),
        ({"model.units": {"low": 8}}, "model.units", "missing high"),
        ({"model.units": {"low": 8, "high": 64, "step": 0}}, "model.units", "step"),
        ({"training.learning_rate": {"low": 0.001, "high": float("inf")}}, "training.learning_rate", "finite"),
        ({}, "declares no dimension", "declares no dimension"),
    ],
)
def test_an_invalid_space_is_refused_naming_the_key(table, named, says):
    with pytest.raises(ConfigError) as error:
        search_space_from(table, TEXT)
    assert named in str(error.value) and says in str(error.value)


def test_image_augmentation_may_vary_but_not_what_decides_the_splits():
    folder = load_config(None, {"kind": "vision", "data.source": "folder", "data.path": "letters"})
    assert search_space_from({"data.rotation": {"low": 0.0, "high": 0.1}}, folder).keys == ("data.rotation",)
    with pytest.raises(ConfigError, match="data.validation_fraction"):
        search_space_from({"data.validation_fraction": {"low": 0.1, "high": 0.3}}, folder)


def test_a_trial_config_is_the_base_with_the_values_set_and_checked():
    config = trial_config(TEXT, {"training.learning_rate": 0.003, "model.encoder": "bilstm"})
    assert config.training.learning_rate == 0.003 and config.model.encoder is TextEncoder.BILSTM
    assert config.data == TEXT.data
    with pytest.raises(ConfigError, match="contrastive"):  # a combination the config refuses
        trial_config(TEXT, {"model.loss": "contrastive", "model.head": "concat"})


def test_the_base_configs_own_values_are_a_trial_when_the_space_holds_them():
    space = search_space_from({"training.learning_rate": {"low": 1e-3, "high": 3e-2}, "model.head": ["symmetric", "cosine"]}, TEXT)
    assert space.values_of(TEXT) == {"training.learning_rate": 0.01, "model.head": "symmetric"}
    narrow = search_space_from({"training.learning_rate": {"low": 1e-4, "high": 1e-3}}, TEXT)
    assert narrow.values_of(TEXT) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "sequences"},
        {"kind": "text", "data.path": "q.csv"},
        {"kind": "text", "data.path": "q.csv", "model.encoder": "bilstm"},
        {"kind": "text", "data.path": "q.csv", "data.task": "regression"},
        {"kind": "vision"},
        {"kind": "vision", "data.source": "folder", "data.path": "letters"},
        {"kind": "vision", "model.backbone": "xception", "data.image_size": 71},
    ],
)
def test_every_familys_own_space_is_valid_and_holds_the_defaults(overrides):
    config = load_config(None, overrides)
    space = search_space_for(config)
    assert {"training.learning_rate", "training.batch_size"} <= set(space.keys)
    assert space.values_of(config) is not None  # the defaults are the sweep's first trial


def test_a_learned_encoder_gets_its_size_searched_and_the_lexical_one_does_not():
    assert "model.units" not in search_space_for(TEXT).keys
    bilstm = trial_config(TEXT, {"model.encoder": "bilstm"})
    assert {"model.units", "model.dropout"} <= set(search_space_for(bilstm).keys)


def test_a_config_written_as_toml_reads_back_equal_and_a_tune_table_beside_it_is_allowed(tmp_path):
    config = trial_config(TEXT, {"training.learning_rate": 0.0031, "model.head": "cosine"})
    path = tmp_path / "best.toml"
    path.write_text(config_toml(config) + '\n[tune]\n"training.batch_size" = [64, 128]\n', encoding="utf-8")
    assert load_config(path) == config


@pytest.mark.parametrize(("trials", "parallel", "named"), [(0, 2, "trials"), (10_001, 2, "trials"), (True, 2, "trials"), (4, 0, "parallel"), (4, 2000, "parallel")])
def test_a_sweep_size_that_cannot_be_meant_is_refused(trials, parallel, named):
    with pytest.raises(ConfigError, match=f"^{named} must be an integer from 1 to"):
        check_sweep_size(trials, parallel)
    check_sweep_size(4, None)  # parallel None: as many as the cluster runs
