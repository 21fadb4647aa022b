"""Weight-sharing verification: passes on the Siamese model, catches the unshared twin."""

from __future__ import annotations

import json
from dataclasses import dataclass

import keras
import numpy as np
import pytest

from siamese.config import SequenceDataConfig
from siamese.data.sequences import PairSet, generate_sequence_pairs
from siamese.models.text import build_text_model, build_unshared_text_model
from siamese.sharing import SharingReport, layer_calls, shared_encoder, trace_branches, verify_weight_sharing


@dataclass(frozen=True)
class Verified:
    model: keras.Model
    weights_before: list[np.ndarray]
    report: SharingReport


@pytest.fixture(scope="module")
def probe() -> PairSet:
    """A small probe batch: 8 variable-length pairs of 6 timesteps."""
    return generate_sequence_pairs(SequenceDataConfig(num_pairs=10, timesteps=6), np.random.default_rng(0)).take(np.arange(8))


def verify(model: keras.Model, probe: PairSet) -> Verified:
    weights_before = [np.copy(weights) for weights in model.get_weights()]
    return Verified(model, weights_before, verify_weight_sharing(model, probe.left, probe.right, probe.labels))


# Each verification trains a step and saves and reloads the model (about a second): verify once per model.
@pytest.fixture(scope="module", params=["concat", "symmetric"])
def shared(request, probe) -> Verified:
    return verify(build_text_model(head=request.param), probe)


@pytest.fixture(scope="module")
def unshared(probe) -> Verified:
    return verify(build_unshared_text_model(head="concat"), probe)


def test_siamese_model_passes_every_check(shared):
    report = shared.report
    assert report.passed, report.failures()
    assert report.failures() == []
    names = {check.name for check in report.checks}
    for name in ("same_encoder_object", "shared_variables", "parameter_count", "identical_encodings", "one_step_update"):
        assert name in names and f"after_reload/{name}" in names
    assert "after_reload/same_predictions" in names


def test_siamese_model_parameter_arithmetic(shared):
    report = shared.report
    assert report.encoder_params == 20_608
    assert report.head_params == 65
    assert report.total_params == 20_673
    assert report.unshared_params == 41_281
    assert report.params_saved == 20_608
    assert report.max_encoding_difference <= 1e-6


def test_unshared_twin_fails_with_named_checks(unshared):
    report = unshared.report
    assert not report.passed
    failed = {check.name for check in report.checks if not check.passed}
    assert {"same_encoder_object", "shared_variables", "parameter_count"} <= failed
    assert {"after_reload/same_encoder_object", "after_reload/shared_variables"} <= failed
    assert any(failure.startswith("same_encoder_object: ") for failure in report.failures())
    assert report.total_params == 41_281
    assert report.params_saved == 0


def assert_weights_restored(verified: Verified) -> None:
    weights_after = verified.model.get_weights()
    assert len(weights_after) == len(verified.weights_before)
    for before, after in zip(verified.weights_before, weights_after):
        np.testing.assert_array_equal(before, after)


def test_verification_restores_the_siamese_models_weights(shared):
    assert_weights_restored(shared)


def test_verification_restores_the_unshared_models_weights(unshared):
    assert_weights_restored(unshared)


def test_report_to_dict_is_json_serialisable(shared, unshared):
    for report in (shared.report, unshared.report):
        as_dict = json.loads(json.dumps(report.to_dict()))
        assert as_dict["passed"] is report.passed
        assert as_dict["params_saved"] == report.params_saved
        assert len(as_dict["checks"]) == len(report.checks)
        assert set(as_dict["checks"][0]) == {"name", "passed", "detail"}


@pytest.fixture(scope="module")
def compiled_and_saved(probe, tmp_path_factory) -> tuple[Verified, keras.optimizers.Optimizer]:
    """A compiled Siamese model verified against the `.keras` file it was saved to."""
    model = build_text_model(head="concat")
    optimizer = keras.optimizers.Adam()
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    path = tmp_path_factory.mktemp("saved") / "trained.keras"
    model.save(path)
    weights_before = [np.copy(weights) for weights in model.get_weights()]
    report = verify_weight_sharing(model, probe.left, probe.right, probe.labels, saved_path=path)
    return Verified(model, weights_before, report), optimizer


def test_verification_against_the_saved_file_runs_every_check(compiled_and_saved, shared):
    verified, _ = compiled_and_saved
    assert verified.report.passed, verified.report.failures()
    assert [check.name for check in verified.report.checks] == [check.name for check in shared.report.checks]
    assert_weights_restored(verified)


def test_verification_leaves_the_compile_state_alone(compiled_and_saved, shared):
    verified, optimizer = compiled_and_saved
    assert verified.model.optimizer is optimizer
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 0
    assert not shared.model.compiled  # an uncompiled model stays uncompiled


def test_after_reload_checks_read_the_given_file(probe, tmp_path):
    # The Siamese model checked against an unshared twin's file: only the after-reload checks fail.
    path = tmp_path / "unshared.keras"
    build_unshared_text_model(head="concat").save(path)
    report = verify_weight_sharing(build_text_model(head="concat"), probe.left, probe.right, probe.labels, saved_path=path)
    failed = {check.name for check in report.checks if not check.passed}
    assert {"after_reload/same_encoder_object", "after_reload/shared_variables", "after_reload/same_predictions"} <= failed
    assert all(name.startswith("after_reload/") for name in failed)


@pytest.mark.parametrize("name", ["missing.keras", "model.h5"])
def test_saved_path_must_be_an_existing_keras_file(probe, tmp_path, name):
    (tmp_path / "model.h5").touch()
    with pytest.raises(ValueError, match="existing .keras file"):
        verify_weight_sharing(build_text_model(), probe.left, probe.right, probe.labels, saved_path=tmp_path / name)


def test_sides_of_different_lengths_are_verified(probe):
    # Left and right padded to different lengths cannot share one batch: each side is called on its own.
    report = verify_weight_sharing(build_text_model(head="concat"), probe.left, probe.right[:, :4], probe.labels)
    assert report.passed, report.failures()


def test_model_without_two_inputs_is_rejected(probe):
    sequence = keras.Input(shape=(None, 128), name="sequence")
    model = keras.Model(sequence, keras.layers.Dense(1, name="score")(sequence), name="one_input")
    with pytest.raises(ValueError, match="two inputs"):
        verify_weight_sharing(model, probe.left, probe.right, probe.labels)


def test_model_whose_output_ignores_one_input_is_rejected(probe):
    left = keras.Input(shape=(None, 128), name="left")
    right = keras.Input(shape=(None, 128), name="right")
    encoding = keras.layers.LSTM(4, name="lstm")(left)
    model = keras.Model([left, right], keras.layers.Dense(1, name="score")(encoding), name="left_only")
    with pytest.raises(ValueError, match="does not combine a left and a right branch"):
        verify_weight_sharing(model, probe.left, probe.right, probe.labels)


# The one helper that finds the shared encoder, for this check and for training's fast path


def test_shared_encoder_is_found_by_identity_in_every_shared_model():
    from siamese.data.sample_questions import sample_question_pairs
    from siamese.models.text import build_text_pair_model, build_tokenizer
    from siamese.models.vision import build_vision_model

    texts = sample_question_pairs(8, seed=0)["question1"].tolist()
    models = [
        build_text_model(head="concat"),
        build_text_model(head="symmetric"),
        build_text_pair_model(build_tokenizer(texts, sequence_length=4), embedding_dim=4, units=3),
        build_vision_model(
            backbone="compact", image_size=16, channels=3, head="symmetric", pooling="avg", task="similarity", filters=4
        ),
    ]
    for model in models:
        found = shared_encoder(model)
        assert found is not None and found.layer is model.get_layer(index=2), model.name  # after the two inputs
        branches = trace_branches(model)
        assert branches.layers[0] == branches.layers[1] == [found.layer]
    # The symmetric vision head pools each side after the encoder: the branch ends there, the encoder does not.
    assert found.encodings != trace_branches(models[-1]).outputs


def test_no_shared_encoder_in_the_unshared_twin_or_a_model_without_two_inputs():
    assert shared_encoder(build_unshared_text_model(head="concat")) is None
    left, right = keras.Input(shape=(4,), name="left"), keras.Input(shape=(4,), name="right")
    dense = keras.layers.Dense(3, name="dense")
    assert shared_encoder(keras.Model(left, dense(left))) is None
    scaled = keras.layers.Rescaling(2.0, name="scale")(left)  # the left side is scaled before the shared layer
    assert shared_encoder(keras.Model([left, right], keras.layers.Concatenate()([dense(scaled), dense(right)]))) is None


def test_layer_calls_list_each_call_once_callees_first():
    model = build_text_model(head="symmetric")
    calls = layer_calls(model)
    encoder = model.get_layer("encoder")
    assert [call.layer for call in calls].count(encoder) == 2
    position = {id(output): index for index, call in enumerate(calls) for output in call.outputs}
    for index, call in enumerate(calls):
        assert all(position.get(id(argument), -1) < index for argument in call.inputs)
    assert calls[-1].outputs[0] is model.outputs[0]
