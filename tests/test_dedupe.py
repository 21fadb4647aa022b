"""Duplicates in a collection: candidates from the index, scored by the model's head, grouped transitively, carried to rows."""

from __future__ import annotations

import numpy as np
import pytest
from dedupe_helpers import COLLECTION, EXPECTED_GROUPS, overlap_model

from siamese import dedupe
from siamese.dedupe import (
    CandidateSearch,
    Duplicates,
    NeighbourIndex,
    best_matches,
    find_duplicates,
    group_around_centres,
    group_duplicates,
    index_texts,
    random_pair_acceptance,
    row_groups,
    scored_candidates,
)
from siamese.embedding import Embedder

@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(overlap_model())


def test_the_groups_of_a_crafted_collection_come_out_right_with_an_exact_and_an_approximate_index(embedder):
    for exact_limit in (len(COLLECTION), 0):  # 0: every collection goes to HNSW
        indexed = index_texts(embedder, COLLECTION, exact_limit=exact_limit)
        assert indexed.index.kind == ("exact" if exact_limit else "hnsw")
        found = find_duplicates(embedder, indexed, threshold=0.5, search=CandidateSearch(neighbours=4))
        assert found.group.tolist() == EXPECTED_GROUPS
        assert found.nearest[0] in (2, 7) and found.similarity[0] >= 0.5
        assert found.similarity[5] < 0.5, "a loner's nearest is still named, with its low score"


def test_encodings_appended_a_chunk_at_a_time_are_one_encoding_of_the_whole(embedder, monkeypatch):
    monkeypatch.setattr(dedupe, "ENCODE_CHUNK", 4)  # 9 texts: chunks of 4, 4 and 1
    indexed = index_texts(embedder, COLLECTION)
    whole = embedder.encode(COLLECTION)
    assert indexed.encodings.dtype == whole.dtype and indexed.encodings.shape == whole.shape
    assert (indexed.encodings.indptr == whole.indptr).all() and (indexed.encodings.indices == whole.indices).all()
    np.testing.assert_allclose(indexed.encodings.toarray(), whole.toarray(), atol=1e-6)  # batches of other sizes: float rounding


def test_scores_of_candidates_are_the_models_own():
    model = overlap_model()
    embedder = Embedder(model)
    indexed = index_texts(embedder, COLLECTION)
    found = find_duplicates(embedder, indexed, threshold=0.5, search=CandidateSearch(neighbours=len(COLLECTION)))
    nearest = found.nearest[1]
    expected = model.predict({"left": np.array([COLLECTION[1]], object), "right": np.array([COLLECTION[nearest]], object)}, verbose=0)
    assert found.similarity[1] == pytest.approx(float(expected[0, 0]), abs=1e-5)


def test_candidate_pairs_are_distinct_unordered_and_never_a_text_with_itself(embedder):
    indexed = index_texts(embedder, COLLECTION)
    pairs = scored_candidates(embedder, indexed, 0.5, CandidateSearch(neighbours=len(COLLECTION) - 1))
    assert (pairs.left < pairs.right).all() and len(set(zip(pairs.left, pairs.right))) == len(pairs.left)
    assert len(pairs.left) == len(COLLECTION) * (len(COLLECTION) - 1) // 2, "every text found every other"


# One question in many wordings (each drops a word or two of the first) among the collection's other texts.
_WORDS = "how do i learn python quickly".split()
MANY_COPIES = [" ".join(_WORDS)] + [" ".join(_WORDS[:a] + _WORDS[a + 1 :]) for a in range(len(_WORDS))] + COLLECTION[1:]


def accepted_pairs(embedder: Embedder, indexed, threshold: float) -> set[tuple[int, int]]:
    left, right = np.triu_indices(len(indexed.texts), 1)
    scores = embedder.score_pairs(indexed.encodings, indexed.encodings, left, right)
    return set(zip(left[scores >= threshold].tolist(), right[scores >= threshold].tolist()))


def test_a_text_keeps_growing_its_candidates_while_the_model_accepts_its_farthest(embedder):
    indexed = index_texts(embedder, MANY_COPIES)
    wanted = accepted_pairs(embedder, indexed, 0.5)
    fixed = scored_candidates(embedder, indexed, 0.5, CandidateSearch(neighbours=2, max_neighbours=2))
    grown = scored_candidates(embedder, indexed, 0.5, CandidateSearch(neighbours=2))
    assert len(wanted) > 10 and not wanted <= set(zip(fixed.left.tolist(), fixed.right.tolist())), "2 nearest cannot hold them"
    assert fixed.cut_short > 0, "texts whose farthest candidates were accepted are counted"
    assert wanted <= set(zip(grown.left.tolist(), grown.right.tolist())) and grown.cut_short == 0
    assert len(grown.left) < len(MANY_COPIES) * (len(MANY_COPIES) - 1) // 2, "texts whose candidates were rejected stopped"
    scores = embedder.score_pairs(indexed.encodings, indexed.encodings, grown.left, grown.right)
    np.testing.assert_allclose(grown.scores, scores, rtol=1e-6, err_msg="each pair scored by the model, once")


def test_growing_stops_at_the_budget_of_candidate_pairs(embedder):
    indexed = index_texts(embedder, MANY_COPIES)
    unbounded = scored_candidates(embedder, indexed, 0.0, CandidateSearch(neighbours=2))  # 0.0: every pair accepted
    first_round = scored_candidates(embedder, indexed, 0.0, CandidateSearch(neighbours=2, max_neighbours=2))
    budgeted = scored_candidates(embedder, indexed, 0.0, CandidateSearch(neighbours=2, growth_budget=5))
    assert unbounded.cut_short == 0 and len(unbounded.left) == len(MANY_COPIES) * (len(MANY_COPIES) - 1) // 2
    assert len(first_round.left) < len(budgeted.left) <= len(first_round.left) + 4, "the budget paid for 2 texts' next 2"
    assert budgeted.cut_short == len(MANY_COPIES), "every text stopped with its farthest accepted"


def test_a_search_that_could_never_grow_is_refused():
    with pytest.raises(ValueError, match="max_neighbours"):
        CandidateSearch(neighbours=30, max_neighbours=20)


def test_groups_are_transitive_and_named_by_their_lowest_member():
    left, right = np.array([0, 3, 1]), np.array([4, 4, 2])
    assert group_duplicates(6, left, right, np.array([True, True, False])).tolist() == [0, 1, 2, 0, 0, 5]


def test_best_matches_name_the_best_scored_other_item():
    nearest, best = best_matches(4, np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([0.2, 0.9, 0.4]))
    assert nearest.tolist() == [2, 2, 0, -1] and best[:3].tolist() == [0.9, 0.4, 0.9] and np.isnan(best[3])


def test_rows_of_one_text_are_one_group_and_rows_not_encoded_are_marked():
    # Distinct texts 0, 1, 2; texts 0 and 2 decided duplicates. Rows: 0 -> text 1, 1 -> text 0, 2 -> blank, 3 -> text 0, 4 -> text 2.
    duplicates = Duplicates(np.array([0, 1, 0]), np.array([2, -1, 0]), np.array([0.8, np.nan, 0.8]), pairs_scored=1, random_pairs_accepted=0.0)
    rows = row_groups(np.array([1, 0, -1, 0, 2]), duplicates, self_similarity=np.array([0.99, 0.97, 0.98]))
    assert rows.group.tolist() == [0, 1, -1, 1, 1]
    assert rows.is_representative.tolist() == [True, True, False, False, False] and rows.groups == 2
    assert rows.nearest.tolist() == [-1, 3, -1, 1, 1], "a twin row first, else the first row of the nearest text"
    np.testing.assert_allclose(rows.similarity, [np.nan, 0.99, np.nan, 0.99, 0.8])


def test_centre_groups_are_stars_so_a_chain_of_pairs_does_not_merge_its_ends():
    # A chain 0 ~ 1 ~ 2 ~ 3 (best pair first: 1 ~ 2), and 4 ~ 5.
    left, right = np.array([0, 1, 2, 4]), np.array([1, 2, 3, 5])
    scores, duplicate = np.array([0.7, 0.9, 0.6, 0.8]), np.ones(4, dtype=bool)
    assert group_duplicates(6, left, right, duplicate).tolist() == [0, 0, 0, 0, 4, 4], "transitive: the whole chain"
    assert group_around_centres(6, left, right, scores, duplicate).tolist() == [0, 0, 0, 3, 4, 4], "3 is no duplicate of centre 1"


def test_the_share_of_random_pairs_the_model_accepts_is_estimated_from_pairs_of_two_texts(embedder):
    indexed = index_texts(embedder, COLLECTION)
    assert random_pair_acceptance(embedder, indexed.encodings, threshold=1.0) == 0.0
    assert random_pair_acceptance(embedder, indexed.encodings, threshold=0.0) == 1.0
    left, right = np.triu_indices(len(COLLECTION), 1)
    exact = (embedder.score_pairs(indexed.encodings, indexed.encodings, left, right) >= 0.5).mean()  # every pair of two texts
    assert 0 < exact < 0.5
    assert random_pair_acceptance(embedder, indexed.encodings, threshold=0.5, pairs=4000) == pytest.approx(exact, abs=0.03)
    assert find_duplicates(embedder, indexed, threshold=0.5, search=CandidateSearch(neighbours=4)).random_pairs_accepted == pytest.approx(exact, abs=0.03)
    assert random_pair_acceptance(embedder, indexed.encodings[:1], threshold=0.0) == 0.0, "one text: no pair"


def test_both_indexes_find_the_largest_inner_products_of_vectors_of_any_length():
    """Search vectors' shape: near copies of texts, then a negative term of each text's own, larger than the rest; queries have 1 there.

    An HNSW graph built by inner product on these vectors as they are finds a third of the
    answers (its neighbours are texts of like own terms); brought to one length, nearly all.
    """
    rng = np.random.default_rng(0)
    texts = np.repeat(rng.normal(size=(200, 16)), 10, axis=0) + rng.normal(scale=0.3, size=(2000, 16))
    vectors = np.hstack([texts, -rng.uniform(0.0, 20.0, size=(2000, 1))]).astype(np.float32)
    queries = np.hstack([vectors[:200, :-1], np.ones((200, 1), np.float32)])
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    for exact_limit in (len(vectors), 0):
        index = NeighbourIndex.build(vectors, exact_limit=exact_limit)
        found = index.search(queries, 5)
        recall = np.mean([len(set(found[row]) & set(expected[row])) / 5 for row in range(len(queries))])
        assert recall >= (0.999 if exact_limit else 0.95), index.kind
        np.testing.assert_allclose(index.vectors_of(np.array([2, 0, 1])), vectors[[2, 0, 1]], rtol=1e-2 if index.kind == "hnsw" else 1e-6)
    with pytest.raises(ValueError, match="exceeds the index"):
        NeighbourIndex.build(vectors[:10]).add(vectors[10:] * 100)
