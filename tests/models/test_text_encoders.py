"""The text pair encoders and heads: each learns duplicate questions, the heads are symmetric, the files reload; contrastive loss.

Learnability runs on a few hundred generated question pairs (`siamese.data.sample_questions`)
for a few epochs: each model must pass a test AUC that the same model untrained does not reach.
Together about 30 s on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from model_helpers import custom_layers, score

from siamese.config import Config, ConfigError, ModelKind, TextFileDataConfig, TextPairModelConfig, TrainingConfig
from siamese.data.sample_questions import sample_question_pairs
from siamese.data.text_pairs import TextPairs
from siamese.evaluation import roc_auc
from siamese.families import family_of
from siamese.models.text import build_text_pair_model, build_tokenizer
from siamese.training import ContrastiveLoss, compile_for_training, fit, predict

ENCODERS = ["lexical", "bilstm", "lstm"]
SYMMETRIC_HEADS = ["symmetric", "monotone", "manhattan", "cosine"]
# Measured on these splits after 4 epochs: trained 0.83 to 0.98, untrained 0.34 to 0.55.
LEARNED_AUC = 0.75


def question_pairs(rows: int, seed: int) -> TextPairs:
    frame = sample_question_pairs(rows, seed)
    return TextPairs(frame["question1"], frame["question2"], frame["is_duplicate"], np.arange(rows))


@pytest.fixture(scope="module")
def splits() -> tuple[TextPairs, TextPairs, TextPairs]:
    """Train, validation and test pairs, each generated from its own seed."""
    return question_pairs(300, seed=0), question_pairs(100, seed=1), question_pairs(200, seed=2)


def small_model(train: TextPairs, encoder: str, head: str, *, dropout: float = 0.0) -> keras.Model:
    """A small model of `encoder` and `head` whose vocabularies come from the training texts, as the family builds it."""
    texts = np.concatenate([train.left, train.right])
    tokenizer = build_tokenizer(texts, vocabulary_size=200, sequence_length=12)
    return build_text_pair_model(
        tokenizer, encoder=encoder, train_texts=texts, embedding_dim=16, units=8, head=head, dropout=dropout, l2=0.5 / len(train)
    )


@pytest.mark.parametrize(
    ("encoder", "head", "loss"),
    [
        ("lexical", "symmetric", None),
        ("bilstm", "symmetric", None),
        ("lstm", "symmetric", None),
        ("bilstm", "manhattan", None),
        ("bilstm", "cosine", None),
        ("lexical", "symmetric", "contrastive"),
        ("lexical", "monotone", None),
    ],
)
def test_encoder_and_head_learn_duplicate_questions(encoder, head, loss, splits):
    train, validation, test = splits
    keras.utils.set_random_seed(0)
    model = small_model(train, encoder, head)
    untrained = roc_auc(test.labels, predict(model, test)[:, 0])
    training = TrainingConfig(epochs=4, batch_size=32, learning_rate=0.02)
    compile_for_training(model, training, loss=ContrastiveLoss(0.5) if loss == "contrastive" else None)
    fit(model, train, validation, training, verbose=0, seed=0)

    trained = roc_auc(test.labels, predict(model, test)[:, 0])
    assert untrained < LEARNED_AUC, f"the bar must be one an untrained model misses: untrained AUC {untrained:.3f}"
    assert trained > LEARNED_AUC, f"test AUC {trained:.3f} after training (untrained {untrained:.3f})"


@pytest.fixture(scope="module")
def models(splits) -> dict[tuple[str, str], keras.Model]:
    """Untrained models of every encoder with every head, built once for the module (dropout: off at inference)."""
    keras.utils.set_random_seed(1)
    train, _, _ = splits
    return {(encoder, head): small_model(train, encoder, head, dropout=0.3) for encoder in ENCODERS for head in ["concat", *SYMMETRIC_HEADS]}


@pytest.mark.parametrize("head", SYMMETRIC_HEADS)
@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_head_but_concat_scores_both_orders_the_same(encoder, head, models, splits):
    _, _, test = splits
    model = models[encoder, head]
    forward, backward = score(model, test.left[:32], test.right[:32]), score(model, test.right[:32], test.left[:32])
    np.testing.assert_allclose(forward, backward, atol=1e-6)
    assert np.ptp(forward) > 0, "different pairs should not all get one score"


@pytest.mark.parametrize("encoder", ENCODERS)
def test_concat_head_is_not_symmetric(encoder, models, splits):
    _, _, test = splits
    model = models[encoder, "concat"]
    difference = np.abs(score(model, test.left[:32], test.right[:32]) - score(model, test.right[:32], test.left[:32]))
    assert difference.max() > 1e-4


@pytest.mark.parametrize("encoder", ENCODERS)
def test_manhattan_scores_identical_texts_exactly_one(encoder, models, splits):
    _, _, test = splits
    texts = test.left[:32]
    scores = score(models[encoder, "manhattan"], texts, texts)
    np.testing.assert_array_equal(scores, np.ones((32, 1), np.float32))
    assert np.all(score(models[encoder, "manhattan"], texts, test.right[:32]) <= 1.0)


@pytest.mark.parametrize(
    ("encoder", "head"),
    [
        ("lexical", "symmetric"),
        ("lexical", "monotone"),
        ("lstm", "symmetric"),
        ("bilstm", "concat"),
        ("bilstm", "symmetric"),
        ("bilstm", "manhattan"),
        ("bilstm", "cosine"),
    ],
)
def test_saved_model_loads_in_safe_mode_and_predicts_the_same(encoder, head, models, splits, tmp_path):
    _, _, test = splits
    model = models[encoder, head]
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, compile=False)  # safe_mode is the default
    np.testing.assert_array_equal(score(model, test.left, test.right), score(reloaded, test.left, test.right))
    assert custom_layers(model) == [], "the saved model must load where nothing of this project is imported"


def test_the_monotone_head_learns_with_weights_that_never_reward_a_difference(splits):
    train, validation, _ = splits
    model = small_model(train, "lexical", "monotone")
    training = TrainingConfig(epochs=2, batch_size=32, learning_rate=0.05)
    compile_for_training(model, training)
    fit(model, train, validation, training, verbose=0, seed=0)
    kernel = model.get_layer("similarity").get_weights()[0]
    assert kernel.min() >= 0.0 and kernel.max() > 0.0, "weights on [-|a-b|, a*b] held >= 0 by the constraint"


def test_bilstm_encoding_does_not_depend_on_the_padding(splits):
    """Padded steps never win the BiLSTM's max: four-word texts encode the same unpadded (4 steps) and padded to 16."""
    train, _, _ = splits
    texts = np.concatenate([train.left, train.right])
    keras.utils.set_random_seed(2)
    unpadded, padded = (
        build_text_pair_model(
            build_tokenizer(texts, vocabulary_size=200, sequence_length=length), encoder="bilstm", train_texts=texts, embedding_dim=16, units=8
        )
        for length in (4, 16)
    )
    padded.set_weights(unpadded.get_weights())
    four_words = np.array(["how do i learn", "what is the best", "how can i play", "zyzzyva qwerty plugh xyzzy"])

    encodings = [keras.ops.convert_to_numpy(model.get_layer("encoder")(four_words)) for model in (unpadded, padded)]

    np.testing.assert_allclose(encodings[0], encodings[1], rtol=1e-5, atol=1e-6)
    assert (encodings[0][:, :16] < 0).any(), "some unit's maximum over the tokens is negative: padding's 0 would have won it"


def test_contrastive_loss_matches_a_hand_computed_example():
    labels = np.array([[1.0], [1.0], [0.0], [0.0]], np.float32)
    scores = np.array([[0.9], [0.4], [0.8], [0.1]], np.float32)  # distances 0.1, 0.6, 0.2, 0.9
    # Similar pairs pay d**2; dissimilar ones max(margin - d, 0)**2 with margin 0.5: (0.3)**2 and 0.
    expected = np.mean([0.1**2, 0.6**2, 0.3**2, 0.0])
    loss = keras.ops.convert_to_numpy(ContrastiveLoss(margin=0.5)(labels, scores))
    assert loss == pytest.approx(expected, rel=1e-5)
    one_dimensional = ContrastiveLoss(margin=0.5)(labels[:, 0], scores)  # labels as Keras passes them from a (batch,) column
    assert keras.ops.convert_to_numpy(one_dimensional) == pytest.approx(expected, rel=1e-5)
    wider = keras.ops.convert_to_numpy(ContrastiveLoss(margin=0.95)(labels, scores))
    assert wider == pytest.approx(np.mean([0.1**2, 0.6**2, 0.75**2, 0.05**2]), rel=1e-5)


def test_contrastive_loss_config_round_trips():
    loss = ContrastiveLoss(margin=0.3, name="pairs")
    config = loss.get_config()
    assert config["margin"] == 0.3 and config["name"] == "pairs"
    again = ContrastiveLoss.from_config(config)
    assert isinstance(again, ContrastiveLoss) and again.margin == 0.3 and again.name == "pairs"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, ContrastiveLoss) and restored.margin == 0.3


# Word vectors in the model: the family aligns a user's file to the vocabulary


WORD_VECTOR_DIM = 6


def text_config(**model: object) -> Config:
    return Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path="questions.csv"), model=TextPairModelConfig(**model))


@pytest.fixture(scope="module")
def glove(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """A GloVe file (no header) with vectors for a few sample-question words, and one word no question uses."""
    rng = np.random.default_rng(3)
    vectors = {word: rng.normal(size=WORD_VECTOR_DIM).astype(np.float32) for word in ["learn", "guitar", "chess", "piano", "zyzzyva"]}
    path = tmp_path_factory.mktemp("vectors") / "glove.6d.txt"
    path.write_text("".join(f"{word} {' '.join(f'{value:.6f}' for value in vector)}\n" for word, vector in vectors.items()), encoding="utf-8")
    return path, {word: np.asarray([float(f"{value:.6f}") for value in vector], np.float32) for word, vector in vectors.items()}


@pytest.mark.parametrize("encoder", ["lstm", "bilstm"])
def test_word_vectors_initialise_a_frozen_embedding(encoder, glove, splits):
    path, vectors = glove
    train, _, _ = splits
    config = text_config(encoder=encoder, embeddings=str(path), embedding_dim=WORD_VECTOR_DIM, units=4, vocabulary_size=200)
    built = family_of(ModelKind.TEXT).build_with_params(config, train, "float32")
    model = built.model
    encoder_model = model.get_layer("encoder")
    vocabulary = encoder_model.get_layer("tokenizer").get_vocabulary()
    assert built.params["model.embeddings_found"] == 4, "learn, guitar, chess, piano: zyzzyva is in no question"
    assert built.params["model.embeddings_coverage"] == round(4 / (len(vocabulary) - 2), 4)
    embedding = encoder_model.get_layer("embedding")
    matrix = keras.ops.convert_to_numpy(embedding.embeddings)
    for word in ["learn", "guitar", "chess", "piano"]:
        np.testing.assert_array_equal(matrix[vocabulary.index(word)], vectors[word], err_msg=word)
    assert embedding.trainable is False and not any(weight is embedding.embeddings for weight in model.trainable_weights)
    np.testing.assert_array_equal(matrix[0], np.zeros(WORD_VECTOR_DIM, np.float32))  # padding


def test_fine_tune_embeddings_makes_the_word_vectors_trainable(glove, splits):
    path, vectors = glove
    train, _, _ = splits
    config = text_config(encoder="lstm", embeddings=str(path), embedding_dim=WORD_VECTOR_DIM, units=4, fine_tune_embeddings=True)
    model = family_of(ModelKind.TEXT).build(config, train, "float32")
    embedding = model.get_layer("encoder").get_layer("embedding")
    vocabulary = model.get_layer("encoder").get_layer("tokenizer").get_vocabulary()
    assert embedding.trainable is True and any(weight is embedding.embeddings for weight in model.trainable_weights)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(embedding.embeddings)[vocabulary.index("chess")], vectors["chess"])


def test_word_vectors_of_another_dimension_name_model_embedding_dim(glove, splits):
    path, _ = glove
    train, _, _ = splits
    config = text_config(encoder="bilstm", embeddings=str(path), embedding_dim=WORD_VECTOR_DIM + 2, units=4)
    with pytest.raises(ConfigError, match=f"model.embedding_dim is {WORD_VECTOR_DIM + 2} but glove.6d.txt holds {WORD_VECTOR_DIM}-dimensional"):
        family_of(ModelKind.TEXT).build(config, train, "float32")


def test_word_vectors_need_a_learned_encoder(glove):
    path, _ = glove
    with pytest.raises(ConfigError, match="model.embeddings needs a learned encoder"):
        TextPairModelConfig(encoder="lexical", embeddings=str(path))
