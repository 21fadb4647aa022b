"""Training: a tiny set is fitted, the paraphrase task is learned, random labels are not; how fit trains."""

from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np
import pytest

from siamese.config import SequenceDataConfig, TrainingConfig
from siamese.data.pairs import SPLIT_NAMES, PairSplits
from siamese.data.sequences import PairSet, generate_sequence_pairs, generate_sequence_splits, split_pairs
from siamese.data.shards import PairShards, pairs_per_shard, write_shards
from siamese.evaluation import evaluate_scores
from siamese.models.text import build_text_model
from siamese.training import (
    STEPS_PER_EXECUTION,
    AllPairsTrainer,
    FitOptions,
    StackedSiamese,
    TrainingCheckpoint,
    TrainingResult,
    compile_for_training,
    fit,
    monitored_metric,
    stopping_callbacks,
    training_model,
)


def seeded_splits(data: SequenceDataConfig, seed: int = 0) -> PairSplits:
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    return split_pairs(generate_sequence_pairs(data, rng), 0.2, 0.2, rng)


def train(data: SequenceDataConfig, training: TrainingConfig, head: str) -> tuple[keras.Model, PairSplits, TrainingResult]:
    splits = seeded_splits(data)
    model = build_text_model(features=data.features, units=32, head=head)
    compile_for_training(model, training)
    return model, splits, fit(model, splits.train, splits.validation, training, verbose=0)


def test_loss_goes_down_on_a_tiny_set():
    """Overfit a small batch: if this fails, nothing bigger will train either."""
    training = TrainingConfig(epochs=6, batch_size=16, learning_rate=3e-3, patience=0)  # every epoch, however validation goes
    _, splits, result = train(SequenceDataConfig(num_pairs=64, timesteps=6, features=16), training, head="symmetric")
    loss = result.history["loss"]
    assert loss[-1] < 0.9 * loss[0], loss
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "auc", "val_auc"} <= set(result.history)
    assert all(len(values) == 6 for values in result.history.values())
    assert all(isinstance(value, float) for value in loss)
    assert result.seconds > 0
    assert result.pairs_per_second == pytest.approx(len(splits.train) * 6 / result.seconds)


def test_fit_without_a_validation_split_reports_no_validation_metrics():
    splits = seeded_splits(SequenceDataConfig(num_pairs=40, timesteps=5, features=8))
    empty = splits.validation.take(np.arange(0))
    model = build_text_model(features=8, units=4, head="symmetric")
    training = TrainingConfig(epochs=3, batch_size=16, patience=1, reduce_lr_patience=1)
    compile_for_training(model, training)
    result = fit(model, splits.train, empty, training, verbose=0)
    assert "loss" in result.history
    assert not any(key.startswith("val_") for key in result.history)
    # Nothing to judge an epoch by: no early stopping, no plateau, the last weights kept.
    assert result.best_epoch is None and result.stopped_epoch == 3 and "learning_rate" not in result.history


def test_compile_for_training_uses_rmsprop_at_the_configured_rate():
    model = build_text_model(features=8, units=4)
    compile_for_training(model, TrainingConfig(learning_rate=3e-3))
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(3e-3)


def test_symmetric_model_learns_paraphrases():
    """The product claim: held-out ROC AUC above 0.9 (measured ~0.96) in seconds on a CPU."""
    data = SequenceDataConfig(mode="paraphrase", num_pairs=1000, timesteps=12, noise=0.3)
    training = TrainingConfig(epochs=8, learning_rate=3e-3, batch_size=64)
    model, splits, result = train(data, training, head="symmetric")
    scores = model.predict(splits.test.inputs(), verbose=0)
    auc = evaluate_scores(splits.test.labels, scores).metrics["roc_auc"]
    assert auc >= 0.90, f"test AUC {auc:.3f}; history {result.history}"
    assert result.history["val_loss"][-1] < result.history["val_loss"][0]


def test_random_labels_stay_at_chance():
    """The original script's settings: nothing to learn, so test AUC stays near 0.5 (measured ~0.55)."""
    data = SequenceDataConfig(mode="random", num_pairs=1000, timesteps=10)
    training = TrainingConfig(epochs=3, batch_size=64)
    model, splits, _ = train(data, training, head="concat")
    scores = model.predict(splits.test.inputs(), verbose=0)
    auc = evaluate_scores(splits.test.labels, scores).metrics["roc_auc"]
    assert abs(auc - 0.5) <= 0.15, f"test AUC {auc:.3f} on random labels"


def test_streamed_image_files_train_and_predict_in_order(tmp_path, write_class_folders):
    """Image files go through tf.data: training runs, and predictions match the in-memory pixels."""
    from siamese.data.image_pairs import pairs_from_class_folders
    from siamese.models.vision import build_vision_model
    from siamese.training import predict

    root = write_class_folders(tmp_path / "classes")
    shape = {"image_size": 16, "channels": 3}
    fractions = {"validation_fraction": 0.2, "test_fraction": 0.2}
    splits = pairs_from_class_folders(root, num_pairs=40, split_by="class", rng=np.random.default_rng(0), **fractions, **shape)
    keras.utils.set_random_seed(0)
    model = build_vision_model(
        backbone="compact", image_size=16, channels=3, head="symmetric", pooling="avg", task="similarity", filters=4
    )
    training = TrainingConfig(epochs=2, batch_size=8)
    compile_for_training(model, training)

    result = fit(model, splits.train, splits.validation, training, verbose=0, seed=1)

    assert len(result.history["loss"]) == 2 and np.isfinite(result.history["val_loss"]).all()
    streamed = predict(model, splits.test, batch_size=4)
    in_memory = splits.test.head(len(splits.test))
    expected = model.predict({"left": in_memory.left.astype("float32"), "right": in_memory.right.astype("float32")}, verbose=0)
    np.testing.assert_allclose(streamed, expected, atol=1e-5)


def test_regression_is_compiled_with_squared_error_and_error_metrics():
    model = build_text_model(features=8, units=4)
    compile_for_training(model, TrainingConfig(), task="regression")
    assert model.loss == "mean_squared_error"
    splits = seeded_splits(SequenceDataConfig(num_pairs=40, timesteps=5, features=8))
    result = fit(model, splits.train, splits.validation, TrainingConfig(epochs=1, batch_size=16), verbose=0)
    assert {"loss", "mae", "rmse", "val_mae", "val_rmse"} <= set(result.history)


# Training that stops by itself: early stopping, the best epoch's weights, a rate that drops on a plateau


def unlearnable_validation(seed: int = 0) -> tuple[PairSet, PairSet]:
    """Training pairs, and the same pairs with flipped labels: validation AUC falls as training learns.

    Its best epoch is therefore the first, and every later epoch is a plateau (measured: validation
    AUC 0.22, 0.08, 0.06, ...).
    """
    train = seeded_splits(SequenceDataConfig(num_pairs=60, timesteps=5, features=8), seed).train
    return train, PairSet(train.left, train.right, 1 - train.labels)


class CanonicalSnapshots(keras.callbacks.Callback):
    """The canonical model's weights at the end of every epoch, and the model Keras trained."""

    def __init__(self, canonical: keras.Model) -> None:
        super().__init__()
        self.canonical, self.weights, self.trained = canonical, [], None

    def on_epoch_end(self, epoch, logs=None):
        self.trained = self.model
        self.weights.append(self.canonical.get_weights())


def assert_same_weights(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("options", "patience"), [(FitOptions(), 2), (FitOptions.plain(), 2), (FitOptions(), 0)], ids=["stacked", "plain", "never-stops"]
)
def test_training_stops_after_patience_and_keeps_the_best_epochs_weights(options, patience):
    """Patience 0 runs every epoch; either way the canonical model (the one saved) ends with the best epoch's weights."""
    train, validation = unlearnable_validation()
    model = build_text_model(features=8, units=4, head="symmetric")
    training = TrainingConfig(epochs=5, batch_size=16, patience=patience)
    compile_for_training(model, training)
    snapshots = CanonicalSnapshots(model)

    result = fit(model, train, validation, training, callbacks=[snapshots], verbose=0, options=options)

    assert isinstance(snapshots.trained, StackedSiamese) if options.stacked_encoder else snapshots.trained is model
    val_auc = result.history["val_auc"]
    assert result.best_epoch == 1 == int(np.argmax(val_auc)) + 1
    assert result.stopped_epoch == (1 + patience if patience else training.epochs) == len(snapshots.weights) == len(val_auc)
    assert result.pairs_per_second == pytest.approx(len(train) * result.stopped_epoch / result.seconds)
    assert_same_weights(model.get_weights(), snapshots.weights[result.best_epoch - 1])
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), snapshots.weights[-1])), "the last epoch's weights"


def test_the_learning_rate_halves_on_a_plateau_and_each_epochs_rate_is_in_the_history():
    train, validation = unlearnable_validation()
    model = build_text_model(features=8, units=4, head="symmetric")
    training = TrainingConfig(epochs=3, batch_size=16, learning_rate=1e-2, patience=0, reduce_lr_patience=1, reduce_lr_factor=0.5)
    compile_for_training(model, training)

    result = fit(model, train, validation, training, verbose=0)

    # Epoch 1 is the best; the plateau at epoch 2 halves the rate for epoch 3, epoch 3's for the next.
    assert result.best_epoch == 1
    assert result.history["learning_rate"] == pytest.approx([1e-2, 1e-2, 5e-3])
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(2.5e-3)


def test_a_constant_learning_rate_when_reduction_is_off():
    train, validation = unlearnable_validation()
    model = build_text_model(features=8, units=4)
    training = TrainingConfig(epochs=3, batch_size=16, learning_rate=1e-2, patience=0, reduce_lr_patience=0)
    compile_for_training(model, training)
    result = fit(model, train, validation, training, verbose=0)
    assert "learning_rate" not in result.history
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-2)


def test_epochs_are_judged_by_the_compiled_tasks_headline_metric_else_the_validation_loss():
    model = build_text_model(features=8, units=4)
    for task, monitored in (("similarity", ("val_auc", "max")), ("regression", ("val_mae", "min"))):
        compile_for_training(model, TrainingConfig(), task=task)
        assert monitored_metric(model) == monitored
    model.compile(optimizer="rmsprop", loss="hinge")  # compiled by hand: only the loss is known to be reported
    assert monitored_metric(model) == ("val_loss", "min")


def test_regression_keeps_the_epoch_with_the_lowest_validation_mae():
    splits = seeded_splits(SequenceDataConfig(num_pairs=40, timesteps=5, features=8))
    model = build_text_model(features=8, units=4)
    training = TrainingConfig(epochs=4, batch_size=16, learning_rate=5e-2, patience=0)
    compile_for_training(model, training, task="regression")
    snapshots = CanonicalSnapshots(model)
    result = fit(model, splits.train, splits.validation, training, callbacks=[snapshots], verbose=0)
    assert result.best_epoch == int(np.argmin(result.history["val_mae"])) + 1
    assert_same_weights(model.get_weights(), snapshots.weights[result.best_epoch - 1])


# How fit trains: the stacked training model, its data and its settings


def trained_through(
    model: keras.Model, train, validation, training: TrainingConfig, options: FitOptions = FitOptions()
) -> keras.Model:
    """Fit, and return the model Keras trained (what callbacks see as `self.model`)."""
    seen = []

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model)

    fit(model, train, validation, training, callbacks=[Capture()], verbose=0, options=options)
    return seen[0]


def test_text_model_trains_through_one_stacked_encoder_call_on_its_own_variables():
    splits = seeded_splits(SequenceDataConfig(num_pairs=40, timesteps=5, features=8))
    model = build_text_model(features=8, units=4, head="symmetric")
    compile_for_training(model, TrainingConfig(epochs=1, batch_size=16))
    trainer = trained_through(model, splits.train, splits.validation, TrainingConfig(epochs=1, batch_size=16))
    assert isinstance(trainer, StackedSiamese)
    assert trainer.encoder.get_layer("lstm") is model.get_layer("encoder").get_layer("lstm")
    assert [id(v) for v in trainer.trainable_variables] == [id(v) for v in model.trainable_variables]
    assert trainer.optimizer is model.optimizer
    assert int(model.optimizer.iterations.numpy()) == 2  # 24 training pairs in batches of 16


def test_padded_sequences_keep_the_masking_layer_and_unpadded_ones_skip_it():
    padded = seeded_splits(SequenceDataConfig(num_pairs=40, timesteps=6, features=8))  # paraphrase: zero padding
    unpadded = seeded_splits(SequenceDataConfig(mode="random", num_pairs=40, timesteps=6, features=8))
    model = build_text_model(features=8, units=4)
    compile_for_training(model, TrainingConfig())

    def masking_layers(trainer):
        return [layer for layer in trainer.encoder.layers if isinstance(layer, keras.layers.Masking)]

    assert len(masking_layers(training_model(model, [padded.train, padded.validation]))) == 1
    assert len(masking_layers(training_model(model, [unpadded.train, padded.validation]))) == 1
    assert masking_layers(training_model(model, [unpadded.train, unpadded.validation])) == []
    # Trailing padding is what the mask is for: the skipped path must never see it.
    left = unpadded.train.left.copy()
    left[0, -2:] = 0.0
    with_padding = PairSet(left, unpadded.train.right, unpadded.train.labels)
    assert len(masking_layers(training_model(model, [with_padding]))) == 1


def test_shards_say_from_their_manifest_whether_the_masking_layer_is_needed(tmp_path):
    """The flow trains on shards: random data (never padded) skips the mask, paraphrase data keeps it."""
    import json

    from siamese.data.shards import MANIFEST

    model = build_text_model(features=8, units=4)
    compile_for_training(model, TrainingConfig())

    def masking_layers(pairs):
        return [layer for layer in training_model(model, pairs).encoder.layers if isinstance(layer, keras.layers.Masking)]

    def shards(mode: str) -> PairSplits[PairShards]:
        data = SequenceDataConfig(mode=mode, num_pairs=40, timesteps=6, features=8)
        blocks = generate_sequence_splits(data, np.random.default_rng(0), pairs_per_shard((6, 8)))
        (tmp_path / mode).mkdir()
        return PairSplits(
            **{name: write_shards(getattr(blocks, name), tmp_path / mode / f"{name}.shards", (6, 8)) for name in SPLIT_NAMES}
        )

    random, padded = shards("random"), shards("paraphrase")
    assert random.train.padded_pairs == 0 and padded.train.padded_pairs > 0
    assert masking_layers([random.train, random.validation]) == []
    assert len(masking_layers([random.train, padded.validation])) == 1
    # Shards written before the count was kept cannot tell: the mask stays.
    manifest_path = random.train.path / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["padded_pairs"]
    manifest_path.write_text(json.dumps(manifest))
    older = PairShards.load(random.train.path)
    assert older.padded_pairs is None
    assert len(masking_layers([older, random.validation])) == 1


def test_models_with_batch_statistics_train_as_they_are():
    """Batch normalisation would see both sides in one stacked batch: the vision model is not stacked."""
    from siamese.models.vision import build_vision_model

    model = build_vision_model(
        backbone="compact", image_size=16, channels=3, head="symmetric", pooling="avg", task="similarity", filters=4
    )
    compile_for_training(model, TrainingConfig())
    assert training_model(model) is model


@pytest.mark.parametrize("encoder", ["lstm", "bilstm"])
def test_text_pair_model_on_raw_strings_trains_stacked(encoder):
    from siamese.data.sample_questions import sample_question_pairs
    from siamese.data.text_pairs import TextPairs
    from siamese.models.text import build_text_pair_model, build_tokenizer

    frame = sample_question_pairs(48, seed=0)
    pairs = TextPairs(frame["question1"], frame["question2"], frame["is_duplicate"], np.arange(len(frame)))
    texts = [*pairs.left, *pairs.right]
    model = build_text_pair_model(build_tokenizer(texts, sequence_length=8), encoder=encoder, train_texts=texts, embedding_dim=4, units=3)
    training = TrainingConfig(epochs=2, batch_size=16)
    compile_for_training(model, training)
    trainer = trained_through(model, pairs.take(slice(0, 32)), pairs.take(slice(32, 48)), training)
    assert isinstance(trainer, StackedSiamese)
    assert any(isinstance(layer, keras.layers.TextVectorization) for layer in trainer.encoder.layers)


def test_multi_step_execution_only_for_runs_long_enough_to_pay_for_its_tracing():
    splits = seeded_splits(SequenceDataConfig(mode="random", num_pairs=60, timesteps=4, features=8))  # 36 train pairs
    model = build_text_model(features=8, units=4)
    short, long = TrainingConfig(epochs=1, batch_size=4), TrainingConfig(epochs=12, batch_size=4, patience=0)  # 9 and 108 steps
    compile_for_training(model, short)
    assert trained_through(model, splits.train, splits.validation, short).steps_per_execution == 1
    assert trained_through(model, splits.train, splits.validation, long).steps_per_execution == STEPS_PER_EXECUTION
    assert int(model.optimizer.iterations.numpy()) == 9 + 108  # the last call of each epoch stops at the epoch's end


def test_long_runs_reset_and_read_the_metrics_through_compiled_functions_with_the_same_results():
    """Compiled metric functions must report what Keras' eager ones do, every epoch."""
    splits = seeded_splits(SequenceDataConfig(num_pairs=48, timesteps=4, features=8))
    histories = {}
    for long_run in (False, True):
        keras.utils.set_random_seed(0)  # the same initial weights for both
        model = build_text_model(features=8, units=4, head="symmetric")
        compile_for_training(model, TrainingConfig())
        trainer = training_model(model, [splits.train, splits.validation], long_run=long_run)
        history = trainer.fit(
            splits.train.dataset(8, shuffle=True), shuffle=False, validation_data=splits.validation.dataset(32), epochs=3, verbose=0
        )
        assert trainer.compile_metric_functions is long_run
        assert set(trainer._metric_functions) == ({"reset", "result"} if long_run else set())
        histories[long_run] = history.history
    assert histories[True].keys() == histories[False].keys()
    for key in histories[False]:
        np.testing.assert_allclose(histories[True][key], histories[False][key], rtol=1e-5, err_msg=key)


def test_trained_model_reloads_with_its_optimizer_state_and_still_shares_its_encoder(tmp_path):
    from siamese.sharing import verify_weight_sharing

    splits = seeded_splits(SequenceDataConfig(num_pairs=40, timesteps=5, features=8))
    model = build_text_model(features=8, units=4, head="symmetric")
    training = TrainingConfig(epochs=2, batch_size=16)
    compile_for_training(model, training)
    fit(model, splits.train, splits.validation, training, verbose=0)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]  # the canonical graph
    for saved, trained in zip(reloaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved), keras.ops.convert_to_numpy(trained))
    probe = splits.test
    for trained in (model, reloaded):  # the check saves and reloads each again
        report = verify_weight_sharing(trained, probe.left, probe.right, probe.labels)
        assert report.passed, report.failures()


def test_in_memory_batches_reshuffle_every_epoch_and_repeat_with_the_seed():
    pairs = seeded_splits(SequenceDataConfig(mode="random", num_pairs=200, timesteps=4, features=2)).train
    identities = pairs.left.sum(axis=(1, 2))  # random sequences: one distinct number per pair

    def passes(shuffle: bool, seed: int = 0, count: int = 2) -> list[list[float]]:
        dataset = pairs.dataset(32, shuffle=shuffle, seed=seed)
        return [np.concatenate([inputs["left"].numpy().sum(axis=(1, 2)) for inputs, _ in dataset]).tolist() for _ in range(count)]

    first, second = passes(shuffle=True, seed=3)
    assert sorted(first) == sorted(second) == pytest.approx(sorted(identities.tolist()))  # every pair once an epoch
    assert first != second  # a new order each epoch
    assert passes(shuffle=True, seed=3) == [first, second]  # the same orders from the same seed
    assert passes(shuffle=True, seed=4)[0] != first
    assert passes(shuffle=False, count=1)[0] == pytest.approx(identities.tolist())  # prediction keeps the order


# FitOptions: every speed-up named, each can be turned off, none changes the math


class RecordedPairs:
    """Pairs in memory that record how `fit` asks for their dataset: fit needs nothing but the protocol."""

    suffix = ".npz"

    def __init__(self, pairs: PairSet) -> None:
        self.pairs, self.calls = pairs, []

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labels(self) -> np.ndarray:
        return self.pairs.labels

    def pairs_with_timestep_equal_to(self, value: float) -> int | None:
        return self.pairs.pairs_with_timestep_equal_to(value)

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, autotune: bool | None = None):
        self.calls.append({"batch_size": batch_size, "shuffle": shuffle, "seed": seed, "autotune": autotune})
        return self.pairs.dataset(batch_size, shuffle=shuffle, seed=seed, autotune=autotune)


@pytest.mark.parametrize(
    ("options", "validation_batch", "autotune"),
    [(FitOptions(), 64, None), (FitOptions(validation_batch_multiple=1, tf_data_autotuning=True), 16, True)],
)
def test_fit_asks_the_pairs_for_their_datasets_as_the_options_say(options, validation_batch, autotune):
    splits = seeded_splits(SequenceDataConfig(mode="random", num_pairs=40, timesteps=4, features=8))
    train, validation = RecordedPairs(splits.train), RecordedPairs(splits.validation)
    model = build_text_model(features=8, units=4)
    training = TrainingConfig(epochs=1, batch_size=16)
    compile_for_training(model, training)
    fit(model, train, validation, training, verbose=0, seed=5, options=options)
    assert train.calls == [{"batch_size": 16, "shuffle": True, "seed": 5, "autotune": autotune}]
    assert validation.calls == [{"batch_size": validation_batch, "shuffle": False, "seed": 0, "autotune": autotune}]


def test_plain_options_train_the_canonical_model_itself_as_keras_does():
    splits = seeded_splits(SequenceDataConfig(mode="random", num_pairs=60, timesteps=4, features=8))
    model = build_text_model(features=8, units=4)
    training = TrainingConfig(epochs=2, batch_size=4)  # 18 steps: a long run for these options
    compile_for_training(model, training)
    plain = dataclasses.replace(FitOptions.plain(), min_steps_for_long_run=2)
    trainer = trained_through(model, splits.train, splits.validation, training, options=plain)
    assert trainer is model and model.steps_per_execution == 1
    assert int(model.optimizer.iterations.numpy()) == 18


def test_every_speed_up_on_or_off_trains_the_same_weights():
    """The defaults and `FitOptions.plain()` differ in speed only: same losses and weights, up to float rounding.

    Unpadded pairs, so the fast path also leaves the Masking layer out (tests/test_identical_math.py
    checks padded pairs, which keep it).
    """
    splits = seeded_splits(SequenceDataConfig(mode="random", num_pairs=60, timesteps=5, features=8))
    training = TrainingConfig(epochs=3, batch_size=8)  # 36 training pairs: 15 steps
    results = {}
    for name, options in (("fast", FitOptions(min_steps_for_long_run=10, steps_per_execution=4)), ("plain", FitOptions.plain())):
        keras.utils.set_random_seed(0)
        model = build_text_model(features=8, units=4, head="symmetric")
        compile_for_training(model, training)
        result = fit(model, splits.train, splits.validation, training, verbose=0, seed=2, options=options)
        results[name] = (result.history, model.get_weights())
    (fast_history, fast_weights), (plain_history, plain_weights) = results["fast"], results["plain"]
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "auc", "val_auc"):
        np.testing.assert_allclose(fast_history[key], plain_history[key], rtol=1e-4, atol=1e-5, err_msg=key)
    for fast, plain in zip(fast_weights, plain_weights):
        np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5)


def test_each_option_turns_its_speed_up_off():
    splits = seeded_splits(SequenceDataConfig(mode="random", num_pairs=40, timesteps=4, features=8))  # unpadded
    model = build_text_model(features=8, units=4)
    compile_for_training(model, TrainingConfig())
    pairs = [splits.train, splits.validation]

    def trainer(long_run: bool = True, **changes) -> keras.Model:
        return training_model(model, pairs, long_run=long_run, options=FitOptions(**changes))

    def masks(model: keras.Model) -> int:
        return sum(isinstance(layer, keras.layers.Masking) for layer in model.encoder.layers)

    fast = trainer()
    assert isinstance(fast, StackedSiamese) and masks(fast) == 0
    assert fast.steps_per_execution == STEPS_PER_EXECUTION and fast.compile_metric_functions and not fast.jit_compile
    assert trainer(stacked_encoder=False) is model
    assert masks(trainer(skip_unused_masking=False)) == 1
    assert trainer(steps_per_execution=3).steps_per_execution == 3
    assert trainer(long_run=False).steps_per_execution == 1 and not trainer(long_run=False).compile_metric_functions
    assert not trainer(compiled_metrics=False).compile_metric_functions
    assert trainer(jit_compile=True).jit_compile is True
    assert not model.jit_compile  # the canonical model's own compile state is not touched


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps_per_execution": 0}, "FitOptions.steps_per_execution must be an integer >= 1, got 0"),
        ({"validation_batch_multiple": 1.5}, "FitOptions.validation_batch_multiple must be an integer >= 1, got 1.5"),
        ({"stacked_encoder": "no"}, "FitOptions.stacked_encoder must be True or False, got 'no'"),
        ({"tf_data_autotuning": 1}, "FitOptions.tf_data_autotuning must be True, False or None, got 1"),
    ],
)
def test_fit_options_are_checked(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FitOptions(**changes)


def small_vision_model() -> keras.Model:
    from siamese.models.vision import build_vision_model

    keras.utils.set_random_seed(0)
    return build_vision_model(
        backbone="conv4", image_size=16, channels=1, head="symmetric", pooling="flatten", task="similarity", filters=2
    )


def test_the_all_pairs_trainer_scores_each_index_pair_as_the_model_scores_that_pair():
    model = small_vision_model()
    trainer = AllPairsTrainer(model)
    images = np.random.default_rng(0).uniform(0, 255, (5, 16, 16, 1)).astype(np.float32)
    left, right = np.triu_indices(5, 1)
    batch = {"images": images, "left_index": left.astype(np.int32), "right_index": right.astype(np.int32)}
    expected = model.predict({"left": images[left], "right": images[right]}, verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(trainer(batch, training=False)), expected, rtol=1e-5, atol=1e-6)
    pairs = {"left": images[:2], "right": images[2:4]}  # validation's pairs go to the model itself
    np.testing.assert_allclose(keras.ops.convert_to_numpy(trainer(pairs)), keras.ops.convert_to_numpy(model(pairs)))


def test_fitting_the_all_pairs_trainer_trains_the_model_it_was_made_from(tmp_path, write_class_folders):
    from siamese.data.class_batches import ClassBatches
    from siamese.data.image_pairs import ImagePairFiles

    root = write_class_folders(tmp_path / "classes", classes=6, images=4)
    paths = sorted(str(path) for path in root.glob("*/*.png"))
    train = ClassBatches.of_pairs(ImagePairFiles(paths, paths, np.ones(len(paths)), 16, 1))
    validation = ImagePairFiles(paths[:4], paths[4:8], [1, 0, 0, 1], 16, 1)
    model = small_vision_model()
    before = [weight.copy() for weight in model.get_weights()]
    trainer = AllPairsTrainer(model)
    compile_for_training(trainer, TrainingConfig(epochs=2, batch_size=16))
    result = fit(trainer, train, validation, TrainingConfig(epochs=2, batch_size=16), verbose=0)
    assert result.stopped_epoch == 2 and "val_auc" in result.history
    assert all(not np.array_equal(old, new) for old, new in zip(before, model.trainable_weights))


def test_a_model_without_one_shared_encoder_sub_model_has_no_all_pairs_trainer():
    from siamese.models.vision import build_unshared_vision_model

    unshared = build_unshared_vision_model(
        backbone="compact", image_size=16, channels=1, head="symmetric", pooling="avg", task="similarity", filters=2
    )
    with pytest.raises(ValueError, match="no shared encoder"):
        AllPairsTrainer(unshared)


class StopAfter(keras.callbacks.Callback):
    """Ends training with an error after `epochs` epochs, as a crash would (the checkpoint saves first)."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise RuntimeError("crashed")


class StateAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()
        self.steps = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))


def test_an_interrupted_fit_resumes_from_its_last_epoch_with_its_weights_and_optimizer_state(tmp_path):
    splits = seeded_splits(SequenceDataConfig(num_pairs=200, timesteps=5, features=8))
    training = TrainingConfig(epochs=5, batch_size=32, patience=0)
    checkpoint = tmp_path / "checkpoint"
    crashed = build_text_model(features=8, units=8)
    compile_for_training(crashed, training)
    with pytest.raises(RuntimeError, match="crashed"):
        fit(crashed, splits.train, splits.validation, training, callbacks=[StopAfter(2)], verbose=0, checkpoint=checkpoint)
    assert TrainingCheckpoint.completed_epochs(checkpoint) == 2
    keras.utils.set_random_seed(99)  # another start: the checkpoint, not the seed, decides where training resumes
    resumed, start = build_text_model(features=8, units=8), StateAtStart()
    compile_for_training(resumed, training)
    result = fit(resumed, splits.train, splits.validation, training, callbacks=[start], verbose=0, checkpoint=checkpoint)
    assert all(np.array_equal(a, b) for a, b in zip(start.weights, crashed.get_weights()))
    assert start.steps == int(keras.ops.convert_to_numpy(crashed.optimizer.iterations)) > 0
    assert result.resumed_after == 2 and len(result.history["loss"]) == 3 and result.stopped_epoch == 5
    assert 1 <= result.best_epoch <= 5 and not checkpoint.exists(), "a finished training leaves no state to resume"


def test_a_resumed_fit_continues_the_counters_of_early_stopping_and_reduce_on_plateau(tmp_path):
    model = build_text_model(features=8, units=4)
    training = TrainingConfig(epochs=20, batch_size=32, patience=5, reduce_lr_patience=3)
    compile_for_training(model, training)
    model.optimizer.build(model.trainable_variables)
    interrupted = stopping_callbacks(model, training)
    for callback in interrupted:
        callback.set_model(model)
        callback.on_train_begin()
    early, plateau = interrupted
    early.wait, early.best, early.best_epoch, early.best_weights = 2, np.float32(0.75), 4, model.get_weights()
    plateau.wait, plateau.best, plateau.cooldown_counter = 1, np.float64(0.75), 2
    saving = TrainingCheckpoint(tmp_path, interrupted)
    saving.set_model(model)
    saving.on_epoch_end(6)

    resumed = stopping_callbacks(model, training)
    for callback in resumed:
        callback.set_model(model)
        callback.on_train_begin()  # as `fit` calls them: each resets itself first
    restoring = TrainingCheckpoint(tmp_path, resumed)
    restoring.set_model(model)
    restoring.on_train_begin()
    early, plateau = resumed
    assert (early.wait, early.best, early.best_epoch) == (2, 0.75, 4) and len(early.best_weights) == len(model.get_weights())
    assert (plateau.wait, plateau.best, plateau.cooldown_counter) == (1, 0.75, 2)
    assert restoring.resumed_after == 7
