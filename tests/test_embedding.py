"""The shared encoder as an embedding model: one encoding per text whichever side it is on, and the head's exact scores."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy import sparse

from siamese.data.sample_questions import sample_question_pairs
from siamese.embedding import SEARCH_DIMENSIONS, Embedder, EmbeddingError, as_queries, count_sketch
from siamese.models.layers import on_score_scale
from siamese.models.text import build_text_pair_model, build_tokenizer
from siamese.sharing import shared_encoder

QUESTIONS = sample_question_pairs(120, seed=3)
LEFT, RIGHT = QUESTIONS["question1"].to_numpy(object), QUESTIONS["question2"].to_numpy(object)


def text_model(encoder: str, head: str) -> keras.Model:
    """A small text pair model with random (not initial) weights: every feature and head weight counts."""
    texts = np.concatenate([LEFT, RIGHT])
    tokenizer = build_tokenizer(texts, vocabulary_size=300, sequence_length=12)
    model = build_text_pair_model(tokenizer, encoder=encoder, train_texts=texts, vocabulary_size=300, embedding_dim=8, units=6, head=head)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0.5, 0.5, weight.shape).astype(weight.dtype) for weight in model.get_weights()])
    return model


@pytest.mark.parametrize(
    ("encoder", "head"), [("lexical", "symmetric"), ("lexical", "monotone"), ("bilstm", "symmetric"), ("lstm", "cosine"), ("bilstm", "manhattan")]
)
def test_the_head_on_two_encodings_scores_as_the_model_does(encoder, head):
    model = text_model(encoder, head)
    embedder = Embedder(model)
    assert embedder.sparse == (encoder == "lexical"), "only the wide lexical bags are kept sparse"
    expected = model.predict({"left": LEFT, "right": RIGHT}, verbose=0).reshape(-1)
    scores = embedder.score(embedder.encode(LEFT), embedder.encode(RIGHT))
    np.testing.assert_allclose(scores, expected, atol=2e-5)


def test_a_graded_model_scores_on_its_scale():
    model = on_score_scale(text_model("lexical", "symmetric"), 1.0, 5.0)
    embedder = Embedder(model)
    expected = model.predict({"left": LEFT, "right": RIGHT}, verbose=0).reshape(-1)
    np.testing.assert_allclose(embedder.score(embedder.encode(LEFT), embedder.encode(RIGHT)), expected, atol=1e-4)
    assert (embedder.head.low, embedder.head.high) == (1.0, 5.0)


def test_a_text_has_one_encoding_whichever_side_of_a_pair_it_is_on():
    model = text_model("lexical", "symmetric")
    both_sides = keras.Model(model.inputs, list(shared_encoder(model).encodings))
    as_left, as_right = both_sides.predict({"left": LEFT, "right": LEFT}, verbose=0)
    embedder = Embedder(model)
    encoded = embedder.encode(LEFT)
    np.testing.assert_allclose(as_left, as_right)
    np.testing.assert_allclose(embedder.unpaired(encoded).toarray(), as_left, atol=1e-6)
    assert embedder.paired and encoded.shape[1] == as_left.shape[1] // 2, "binary and TF-IDF value of a piece held as one"


def test_pieces_present_in_one_half_only_are_still_held_exactly():
    """A piece weight of 0 in one half (the binary and TF-IDF bags then differ in their pieces) takes the general path."""
    model = text_model("lexical", "symmetric")
    embedder = Embedder(model)
    weights = embedder.encoder.get_layer("piece_weights")
    kernel = weights.get_weights()[0]
    kernel[:, embedder.width // 2 : embedder.width // 2 + 300] = 0.0  # the TF-IDF half of the first 300 pieces
    weights.set_weights([kernel])
    both_sides = keras.Model(model.inputs, list(shared_encoder(model).encodings))
    as_left, _ = both_sides.predict({"left": LEFT, "right": LEFT}, verbose=0)
    np.testing.assert_allclose(embedder.unpaired(embedder.encode(LEFT)).toarray(), as_left, atol=1e-6)
    left, right = embedder.encode(LEFT), embedder.encode(RIGHT)
    expected = model.predict({"left": LEFT, "right": RIGHT}, verbose=0).reshape(-1)
    np.testing.assert_allclose(embedder.score(left, right), expected, atol=1e-5)


def test_embeddings_are_unit_length_sketched_from_wide_encodings_and_rank_a_text_first_to_itself():
    embedder = Embedder(text_model("lexical", "symmetric"))
    assert embedder.width > SEARCH_DIMENSIONS and embedder.dimensions == SEARCH_DIMENSIONS
    texts = np.unique(LEFT)
    vectors = embedder.embed(texts)
    assert vectors.shape == (len(texts), SEARCH_DIMENSIONS) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert (np.argmax(vectors @ vectors.T, axis=1) == np.arange(len(texts))).mean() > 0.95


@pytest.mark.parametrize(("encoder", "head", "least"), [("lexical", "monotone", 0.95), ("lstm", "cosine", 0.95), ("bilstm", "manhattan", 0.7)])
def test_query_and_search_vectors_find_the_texts_the_head_scores_highest(encoder, head, least):
    """Lexical bags: `phi` and each text's own term; signed encodings: a weighted cosine (looser)."""
    embedder = Embedder(text_model(encoder, head))
    texts = np.unique(np.concatenate([LEFT, RIGHT]))
    encodings = embedder.encode(texts)
    stored = embedder.search_vectors(encodings)
    assert stored.shape == (len(texts), embedder.search_dimensions) and stored.dtype == np.float32
    first, second = (grid.reshape(-1) for grid in np.meshgrid(np.arange(len(texts)), np.arange(len(texts)), indexing="ij"))
    scored = embedder.score_pairs(encodings, encodings, first, second).reshape(len(texts), len(texts))
    searched = as_queries(stored) @ stored.T
    for similarities in (scored, searched):
        np.fill_diagonal(similarities, -np.inf)
    best, found = np.argsort(-scored, axis=1)[:, :5], np.argsort(-searched, axis=1)[:, :10]
    recall = np.mean([len(set(best[row]) & set(found[row])) / 5 for row in range(len(texts))])
    assert recall >= least


def test_the_count_sketch_is_fixed_by_the_width_and_keeps_inner_products():
    sketch = count_sketch(5000, 256)
    assert (sketch != count_sketch(5000, 256)).nnz == 0, "no random generator: the same in every process"
    left = sparse.random(200, 5000, density=0.02, random_state=1, format="csr")
    right = left + sparse.random(200, 5000, density=0.005, random_state=2, format="csr")
    exact = np.asarray(left.multiply(right).sum(axis=1)).reshape(-1)
    sketched = np.asarray(((left @ sketch).multiply(right @ sketch)).sum(axis=1)).reshape(-1)
    assert np.corrcoef(exact, sketched)[0, 1] > 0.75


def test_a_concat_head_cannot_be_searched():
    with pytest.raises(EmbeddingError, match="concat.*model.head = symmetric"):
        Embedder(text_model("lexical", "concat"))
