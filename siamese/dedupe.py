"""Duplicates in a whole collection: nearest-neighbour candidates, scored by the model, grouped.

Scoring every pair of n texts costs n^2 / 2 model calls (5 x 10^9 for 100,000 queries). A
Siamese model needs far fewer: each text is encoded once (`siamese.embedding.Embedder`), a
FAISS index finds each text's nearest search vectors (as many as the model keeps accepting,
`CandidateSearch`), and only those candidate pairs are scored by the model's head and decided
at its threshold. The decided pairs then form
groups (`group_pairs`): stars around centres by default, or transitively (connected components,
a union-find), where a chain of borderline pairs can join texts no pair links.

The index is exact (`IndexFlatIP`, every vector compared) up to `EXACT_SEARCH_LIMIT` vectors and
HNSW (a navigable graph, approximate) above, where exact search grows with n^2; both are
measured against exhaustive scoring in `bench/dedupe.py` (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numba
import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from siamese.embedding import Embedder, as_queries

DEFAULT_NEIGHBOURS = 20  # candidates per text at first (`CandidateSearch`)
MAX_NEIGHBOURS = 640  # candidates per text at most: 0.99 of what the head accepts on 10,000 questions (BENCHMARKS.md)
GROWTH_BUDGET = 3_000_000  # candidate pairs searched after the first round, at most: under half a minute on 2 cores
EXACT_SEARCH_LIMIT = 50_000  # vectors searched exactly (n^2 products); more go to an HNSW graph, as exact in recall (bench/dedupe.py)
HNSW_LINKS = 32  # HNSW's M: graph links per vector
HNSW_BUILD_DEPTH = 80  # efConstruction
SEARCH_BATCH = 4096  # query vectors searched at a time
SCORE_BATCH = 1_000_000  # candidate pairs scored at a time
RANDOM_PAIRS = 10_000  # pairs of two texts drawn at random: the share accepted is known to about +-0.1 points


class NeighbourIndex:
    """A FAISS index of search vectors (`Embedder.search_vectors`) searched by largest inner product with a query.

    Exact (`IndexFlatIP`) for small collections, an HNSW graph for large ones. Search vectors
    differ in length (their last dimension is a text's own term), and an HNSW graph built by
    inner product links long vectors to each other rather than to their neighbours. So every
    stored vector gets one more dimension that brings it to one common length (Bachrach et al.
    2014's reduction of inner-product search to nearest neighbours), and queries get a 0 there:
    a query's inner products, and so its ranking, are unchanged, and the graph links vectors by
    their angle.
    """

    def __init__(self, index, length: float) -> None:
        self._index = index
        self._length = length  # of every stored vector, its extra dimension included

    @classmethod
    def empty(cls, dimensions: int, size: int, length: float, exact_limit: int = EXACT_SEARCH_LIMIT) -> NeighbourIndex:
        """An index for `size` vectors no longer than `length`, to be `add`ed in batches: exact up to `exact_limit`, HNSW above."""
        stored = dimensions + 1
        if size <= exact_limit:
            return cls(faiss.IndexFlatIP(stored), length)
        # Vectors held as float32: as float16 (IndexHNSWSQ) they took half the memory, but building
        # and searching took 4-5 times as long on 92,386 texts (BENCHMARKS.md).
        index = faiss.IndexHNSWFlat(stored, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_BUILD_DEPTH
        # Room for every vector at once: added a batch at a time, the vectors' store doubles as
        # it grows and copies itself, briefly holding twice the vectors (0.4 GiB at 1,000,000 texts).
        codes = faiss.downcast_index(index.storage).codes
        codes.resize(size * stored * np.dtype(np.float32).itemsize)
        codes.resize(0)  # the size back to none, the room kept
        return cls(index, length)

    @classmethod
    def build(cls, vectors: np.ndarray, exact_limit: int = EXACT_SEARCH_LIMIT) -> NeighbourIndex:
        index = cls.empty(vectors.shape[1], len(vectors), longest(vectors), exact_limit)
        index.add(vectors)
        return index

    def add(self, vectors: np.ndarray) -> None:
        """Store `vectors`, each brought to the index's length by its extra dimension (a longer one is refused)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        squared = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
        if len(vectors) and squared.max() > self._length**2 * (1 + 1e-6):
            raise ValueError(f"a vector of length {np.sqrt(squared.max()):.6g} exceeds the index's {self._length:.6g}")
        extra = np.sqrt(np.maximum(self._length**2 - squared, 0.0)).astype(np.float32)
        self._index.add(np.ascontiguousarray(np.hstack([vectors, extra[:, None]])))

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors `ids`, without their extra dimension (the index holds them: a collection keeps no other copy)."""
        return self._index.reconstruct_batch(np.asarray(ids, np.int64))[:, :-1]

    @property
    def kind(self) -> str:
        """`exact` or `hnsw`, for the run's params and the summary."""
        return "hnsw" if "HNSW" in type(self._index).__name__ else "exact"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: np.ndarray, neighbours: int) -> np.ndarray:
        """`(queries, neighbours)` int64: the indexed vectors of largest inner product with each query, best first (fewer indexed: -1)."""
        return self._search(len(queries), lambda start, stop: queries[start:stop], neighbours)

    def search_with(self, queries: NeighbourIndex, neighbours: int) -> np.ndarray:
        """`search` with every vector another index (or this one) holds, as queries (`as_queries`), a batch at a time."""
        return self._search(len(queries), lambda start, stop: as_queries(queries.vectors_of(np.arange(start, stop))), neighbours)

    def _search(self, count: int, batch_of: Callable[[int, int], np.ndarray], neighbours: int) -> np.ndarray:
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = max(2 * neighbours, 64)  # candidates kept while searching: recall for time
        ids = np.empty((count, neighbours), dtype=np.int64)
        for start in range(0, count, SEARCH_BATCH):
            stop = min(start + SEARCH_BATCH, count)
            queries = np.asarray(batch_of(start, stop), dtype=np.float32)
            queries = np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1), np.float32)]))  # 0: the extra dimension
            ids[start:stop] = self._index.search(queries, neighbours)[1]
        return ids

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> NeighbourIndex:
        """An index `save` wrote; it takes new queries, not new vectors (its length is not kept)."""
        return cls(faiss.read_index(str(path)), length=0.0)


def longest(vectors: np.ndarray) -> float:
    """The length of the longest of `vectors` (0 for none)."""
    return float(np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64).max(initial=0.0)))


@dataclass(frozen=True)
class CandidateSearch:
    """How many nearest texts each text's candidates hold: a first `neighbours`, grown where the model keeps accepting.

    No one k suits every text: a text with a hundred near-copies needs a hundred candidates, a
    unique one none. So each text starts with its `neighbours` nearest, and while the farther
    half of its candidates holds a pair the model accepts, they double (searched again), up to
    `max_neighbours`. A text whose farthest candidates are all rejected stops: the search
    ranks as the head scores (`siamese.embedding`), so farther texts are rejected too.

    Growing searches at most `growth_budget` more pairs than the first round, texts with the
    fewest accepted among their farthest first (nearly done; a pair is found from either of its
    texts). A model that accepts many unrelated texts (`random_pair_acceptance`) would otherwise
    take every text of a large collection to `max_neighbours`, for pairs that are mostly false.
    """

    neighbours: int = DEFAULT_NEIGHBOURS
    max_neighbours: int = MAX_NEIGHBOURS
    growth_budget: int = GROWTH_BUDGET

    def __post_init__(self) -> None:
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {self.neighbours}")
        if self.max_neighbours < self.neighbours:
            raise ValueError(f"max_neighbours ({self.max_neighbours}) must be >= neighbours ({self.neighbours})")


@dataclass(frozen=True)
class ScoredPairs:
    """Distinct unordered candidate pairs `(left[p], right[p])`, `left < right`, and the model's score of each."""

    left: np.ndarray
    right: np.ndarray
    scores: np.ndarray  # float32
    cut_short: int  # texts whose farthest candidates were still accepted when their search stopped (`max_neighbours` or the budget)


def scored_candidates(embedder: Embedder, indexed: IndexedTexts, threshold: float, search: CandidateSearch) -> ScoredPairs:
    """Each text's candidates, grown as `CandidateSearch` says, scored by the model's head.

    A round searches the growing texts a batch at a time and scores the pairs not scored in an
    earlier round; a round's pairs are reduced to one int64 key each as they come, so a million
    texts' raw results (neighbour ids, repeated query numbers) never coexist.
    """
    index, items = indexed.index, len(indexed.index)
    scored = _KeyedScores(items)
    growing, reached, depth = np.arange(items), 0, min(search.neighbours, items - 1)
    spare, cut_short = search.growth_budget, 0
    while len(growing) and depth > reached:
        if reached:  # after the first round, which every text has
            affordable = spare // (depth - reached)
            cut_short += max(len(growing) - affordable, 0)
            growing = growing[:affordable]
            spare -= len(growing) * (depth - reached)
            if not len(growing):
                break
        first = 0 if reached == 0 else reached + 1  # the first round's columns hold the text itself (wherever it ranks)
        farther = max(first, depth // 2 + 1)
        still, counts = [], []
        for start in range(0, len(growing), SEARCH_BATCH):
            queries = growing[start : start + SEARCH_BATCH]
            found = index.search(as_queries(index.vectors_of(queries)), depth + 1)[:, first:]
            accepted = scored.score_new(embedder, indexed.encodings, queries, found, threshold)[:, farther - first :].sum(axis=1)
            still.append(queries[accepted > 0])
            counts.append(accepted[accepted > 0])
        scored.end_round()
        growing = np.concatenate(still)[np.argsort(np.concatenate(counts), kind="stable")]  # fewest accepted first
        reached, depth = depth, min(2 * depth, search.max_neighbours, items - 1)
    left, right, scores = scored.pairs()
    complete = reached >= items - 1  # every other text was a candidate: nothing was left to find
    return ScoredPairs(left, right, scores, cut_short=cut_short + (0 if complete else len(growing)))


class _KeyedScores:
    """Scored pairs as sorted int64 keys `i * items + j` (`i < j`) and their scores: a pair an earlier round scored is not scored again."""

    def __init__(self, items: int) -> None:
        self._items = items
        self._keys, self._scores = np.zeros(0, np.int64), np.zeros(0, np.float32)  # earlier rounds, sorted
        self._round_keys, self._round_scores = [], []

    def score_new(self, embedder: Embedder, encodings, queries: np.ndarray, found: np.ndarray, threshold: float) -> np.ndarray:
        """Score each `(queries[q], found[q, c])` not scored in an earlier round; whether each was accepted, shaped as `found`."""
        mates = np.repeat(queries.astype(np.int64), found.shape[1])
        others = found.reshape(-1)
        valid = (others >= 0) & (others != mates)
        keys = np.minimum(mates, others) * self._items + np.maximum(mates, others)
        unique, inverse = np.unique(keys[valid], return_inverse=True)
        scores = np.empty(len(unique), np.float32)
        known = _sorted_positions(self._keys, unique)
        scores[known >= 0] = self._scores[known[known >= 0]]
        new = unique[known < 0]
        scores[known < 0] = score_pairs(embedder, encodings, encodings, (new // self._items, new % self._items))
        self._round_keys.append(new)
        self._round_scores.append(scores[known < 0])
        accepted = np.zeros(len(keys), bool)
        accepted[valid] = scores[inverse] >= threshold
        return accepted.reshape(found.shape)

    def end_round(self) -> None:
        """Merge the round's pairs into the sorted ones (a pair two texts of one round found is kept once).

        Each step drops what it no longer needs: at a million texts the keys alone are 0.1 GiB.
        """
        keys, self._keys, self._round_keys = np.concatenate([self._keys, *self._round_keys]), None, []
        scores, self._scores, self._round_scores = np.concatenate([self._scores, *self._round_scores]), None, []
        order = np.argsort(keys, kind="stable")
        keys, scores = keys[order], scores[order]
        del order
        first = np.ones(len(keys), bool)
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        self._keys, self._scores = keys[first], scores[first]

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.int32 if self._items < 2**31 else np.int64  # millions of pairs: half the memory
        return (self._keys // self._items).astype(ids), (self._keys % self._items).astype(ids), self._scores


def _sorted_positions(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Each of `keys`' position in `sorted_keys`, -1 where absent."""
    at = np.minimum(np.searchsorted(sorted_keys, keys), max(len(sorted_keys) - 1, 0))
    present = (sorted_keys[at] == keys) if len(sorted_keys) else np.zeros(len(keys), bool)
    return np.where(present, at, -1)


def group_duplicates(items: int, left: np.ndarray, right: np.ndarray, duplicate: np.ndarray) -> np.ndarray:
    """Each item's group, transitively over the pairs decided `duplicate`: the lowest item number in its group.

    The lowest number makes the group's first item its representative, and keeps group ids
    stable whatever order the pairs were found in.
    """
    graph = sparse.coo_matrix(
        (np.ones(int(duplicate.sum()), dtype=np.int8), (left[duplicate], right[duplicate])), shape=(items, items)
    )
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1 if items else 0, items, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(items, dtype=np.int64))
    return first[labels]


def group_around_centres(items: int, left: np.ndarray, right: np.ndarray, scores: np.ndarray, duplicate: np.ndarray) -> np.ndarray:
    """Each item's group when every group is a star: a centre and items decided duplicates of the centre itself.

    The CENTER clustering of entity resolution: pairs are taken from the best score down; a
    pair of two ungrouped items starts a group (the lower-numbered one its centre), an ungrouped
    item paired with a centre joins it, any other pair is left. Unlike transitive grouping, a
    chain of pairs each just above the threshold (a ~ b ~ c ~ ... ~ z) never puts a and z together
    unless the model scores them as duplicates of one centre. Groups are named by their lowest item.
    """
    order = np.argsort(-scores[duplicate], kind="stable")
    centre = _centres(items, left[duplicate][order], right[duplicate][order])
    lowest = np.arange(items, dtype=np.int64)
    np.minimum.at(lowest, centre, np.arange(items, dtype=np.int64))
    return lowest[centre]


@numba.njit(cache=True)
def _centres(items, left, right):
    centre = np.full(items, -1, dtype=np.int64)
    for pair in range(len(left)):
        a, b = left[pair], right[pair]
        if centre[a] == -1 and centre[b] == -1:
            low, high = min(a, b), max(a, b)
            centre[low], centre[high] = low, low
        elif centre[a] == -1 and centre[b] == b:
            centre[a] = b
        elif centre[b] == -1 and centre[a] == a:
            centre[b] = a
    for item in range(items):
        if centre[item] == -1:
            centre[item] = item
    return centre


def best_matches(items: int, left: np.ndarray, right: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each item's best-scored other item among the scored pairs, and that score; -1 and NaN for an item in none."""
    nearest, best = best_partners(items, left, right, scores)
    from_right, best_from_right = best_partners(items, right, left, scores)
    better = np.isnan(best) | (best_from_right > best)
    return np.where(better, from_right, nearest), np.where(better, best_from_right, best)


def best_partners(items: int, ends: np.ndarray, partners: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each item, the partner of its best-scored pair `(ends[p], partners[p])` and that score; -1 and NaN for none."""
    order = np.argsort(-scores, kind="stable")  # best first
    found, first = np.unique(ends[order], return_index=True)
    pair = order[first]
    nearest, best = np.full(items, -1, dtype=np.int64), np.full(items, np.nan)
    nearest[found], best[found] = partners[pair], scores[pair]
    return nearest, best


@dataclass(frozen=True)
class IndexedTexts:
    """A collection's distinct texts, their encodings, and the index over their search vectors."""

    texts: np.ndarray  # distinct texts (object array); index ids are positions here
    encodings: sparse.csr_matrix | np.ndarray
    index: NeighbourIndex


ENCODE_CHUNK = 8192  # texts encoded, sketched and indexed at a time


def index_texts(
    embedder: Embedder, texts: Sequence[str], exact_limit: int = EXACT_SEARCH_LIMIT, progress: Callable[[int], None] | None = None
) -> IndexedTexts:
    """Encode each of `texts` (distinct) once, a chunk at a time (`progress` gets the count done), and index them.

    Memory holds the encodings once: each chunk is appended to arrays grown in place
    (`_AppendedRows`); joining a list of chunks at the end held two copies at once (5.2 GiB at
    1,000,000 texts, against 3.7 after). The index needs the longest search vector first
    (`NeighbourIndex`), so search vectors are computed twice, once per chunk as it is encoded
    and once a chunk at a time into the index, instead of being kept.
    """
    appended, length = _AppendedRows(embedder), 0.0
    for start in range(0, len(texts), ENCODE_CHUNK):
        chunk = embedder.encode(texts[start : start + ENCODE_CHUNK])
        length = max(length, longest(embedder.search_vectors(chunk)))
        appended.append(chunk)
        if progress is not None:
            progress(min(start + ENCODE_CHUNK, len(texts)))
    encodings = appended.matrix()
    index = NeighbourIndex.empty(embedder.search_dimensions, len(texts), length, exact_limit)
    for start in range(0, len(texts), ENCODE_CHUNK):
        index.add(embedder.search_vectors(encodings[start : start + ENCODE_CHUNK]))
    return IndexedTexts(np.asarray(texts, dtype=object), encodings, index)


class _AppendedRows:
    """Rows of encodings appended a chunk at a time to arrays grown in place, then one matrix (CSR when `embedder.sparse`).

    `ndarray.resize` reallocates, and the C library remaps a large allocation rather than
    copying it: the whole grows without a second copy.
    """

    def __init__(self, embedder: Embedder) -> None:
        empty = embedder.encode([])  # the width and type of the stored encodings
        self._width, self._sparse = empty.shape[1], sparse.issparse(empty)
        self._values = np.zeros(0 if self._sparse else (0, self._width), empty.dtype)
        self._indices = np.zeros(0, np.int32)
        self._row_ends = [np.zeros(1, np.int64)]

    def append(self, chunk: sparse.csr_matrix | np.ndarray) -> None:
        at = len(self._values)
        if not self._sparse:
            self._values.resize((at + len(chunk), self._width), refcheck=False)
            self._values[at:] = chunk
            return
        self._values.resize(at + chunk.nnz, refcheck=False)
        self._indices.resize(at + chunk.nnz, refcheck=False)
        self._values[at:], self._indices[at:] = chunk.data, chunk.indices
        self._row_ends.append(chunk.indptr[1:] + at)

    def matrix(self) -> sparse.csr_matrix | np.ndarray:
        if not self._sparse:
            return self._values
        row_ends = np.concatenate(self._row_ends)
        return sparse.csr_matrix((self._values, self._indices, row_ends), shape=(len(row_ends) - 1, self._width))


def score_pairs(embedder: Embedder, left: sparse.csr_matrix | np.ndarray, right: sparse.csr_matrix | np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The model's score of each pair `(left[i], right[j])` for `i, j` in `pairs`, `SCORE_BATCH` pairs at a time."""
    first, second = pairs
    scores = [
        embedder.score_pairs(left, right, first[start : start + SCORE_BATCH], second[start : start + SCORE_BATCH])
        for start in range(0, len(first), SCORE_BATCH)
    ]
    return np.concatenate(scores) if scores else np.zeros(0)


@dataclass(frozen=True)
class Duplicates:
    """What the search and the model decided for each distinct text of a collection."""

    group: np.ndarray  # the lowest distinct-text number of its group
    nearest: np.ndarray  # the best-scored other distinct text among its candidates; -1: none
    similarity: np.ndarray  # the model's score of that pair; NaN: none
    pairs_scored: int
    random_pairs_accepted: float  # `random_pair_acceptance`
    cut_short: int = 0  # texts whose search stopped with its farthest candidates still accepted (`ScoredPairs`)


GROUPINGS = ("centre", "connected")


def group_pairs(grouping: str, items: int, left: np.ndarray, right: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Each item's group from the scored pairs: `centre` (stars, `group_around_centres`) or `connected` (transitive)."""
    duplicate = scores >= threshold
    if grouping == "connected":
        return group_duplicates(items, left, right, duplicate)
    if grouping == "centre":
        return group_around_centres(items, left, right, scores, duplicate)
    raise ValueError(f"grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")


def find_duplicates(
    embedder: Embedder, indexed: IndexedTexts, threshold: float, search: CandidateSearch = CandidateSearch(), grouping: str = "centre"
) -> Duplicates:
    """Score each text's nearest texts with the model (`CandidateSearch`); group those scored `>= threshold` (`group_pairs`)."""
    pairs = scored_candidates(embedder, indexed, threshold, search)
    items = len(indexed.texts)
    nearest, best = best_matches(items, pairs.left, pairs.right, pairs.scores)
    accepted = random_pair_acceptance(embedder, indexed.encodings, threshold)
    group = group_pairs(grouping, items, pairs.left, pairs.right, pairs.scores, threshold)
    return Duplicates(group, nearest, best, len(pairs.left), accepted, pairs.cut_short)


def random_pair_acceptance(embedder: Embedder, encodings: sparse.csr_matrix | np.ndarray, threshold: float, pairs: int = RANDOM_PAIRS, seed: int = 0) -> float:
    """The share of pairs of two different texts, drawn at random, that the model decides are duplicates.

    Nearly every pair of a real collection is unrelated. A model trained on a pair file's hard
    negatives alone (two questions on one topic) may accept many unrelated pairs: its groups
    then join texts on one topic, and no candidate search holds its n^2 pairs (BENCHMARKS.md,
    "Duplicates in a collection"). This says so, per collection, for the cost of a few
    thousand pair scores.
    """
    items = encodings.shape[0]
    if items < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    first = rng.integers(0, items, pairs)
    second = (first + rng.integers(1, items, pairs)) % items  # another text
    return float((score_pairs(embedder, encodings, encodings, (first, second)) >= threshold).mean())


@dataclass(frozen=True)
class RowGroups:
    """Each input row's group, as `siamese dedupe` writes it; rows that could not be encoded hold -1 / NaN."""

    group: np.ndarray  # the first row of its group
    is_representative: np.ndarray
    nearest: np.ndarray  # the best-matching other row
    similarity: np.ndarray

    @property
    def groups(self) -> int:
        return int(self.is_representative.sum())


def row_groups(text_ids: np.ndarray, duplicates: Duplicates, self_similarity: np.ndarray) -> RowGroups:
    """Carry distinct-text decisions to rows: `text_ids[r]` is row r's distinct text (-1: not encoded).

    Rows of one text are one group, each other's nearest (scored `self_similarity`, the model's
    score of the text with itself). A group is represented by its first row.
    """
    rows = np.arange(len(text_ids))
    encoded = text_ids >= 0
    text = np.maximum(text_ids, 0)  # any valid position for the rows not encoded; masked out below
    label = duplicates.group[text]
    group_first, _ = _first_two_rows(label, encoded)
    text_first, text_second = _first_two_rows(text_ids, encoded)
    twin = np.where(text_first[text] == rows, text_second[text], text_first[text])  # another row of the same text
    other_text = duplicates.nearest[text]
    nearest = np.where(twin >= 0, twin, np.where(other_text >= 0, text_first[np.maximum(other_text, 0)], -1))
    similarity = np.where(twin >= 0, self_similarity[text], duplicates.similarity[text])
    group = np.where(encoded, group_first[label], -1)
    return RowGroups(
        group=group,
        is_representative=encoded & (group == rows),
        nearest=np.where(encoded, nearest, -1),
        similarity=np.where(encoded & (nearest >= 0), similarity, np.nan),
    )


def _first_two_rows(labels: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each label value (0 to the largest present), the first and second rows holding it; -1 for none."""
    rows = np.flatnonzero(present)
    size = int(labels[rows].max()) + 1 if len(rows) else 0
    first, second = np.full(size, -1, dtype=np.int64), np.full(size, -1, dtype=np.int64)
    ordered = rows[np.argsort(labels[rows], kind="stable")]  # by label, rows in order within each
    values = labels[ordered]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else np.zeros(0, np.int64)
    first[values[starts]] = ordered[starts]
    following = starts + 1
    repeated = following[following < len(values)]
    repeated = repeated[values[repeated] == values[repeated - 1]]
    second[values[repeated]] = ordered[repeated]
    return first, second
