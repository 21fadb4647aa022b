"""A Siamese model's shared encoder as an embedding model, and its head as a scorer of encodings.

One encoder serves both sides of a pair, so a text's encoding is the same whichever side it is
on: a collection is encoded once, a text at a time, instead of once per pair. Two things come of
an encoding:

- its **search vector**: what a nearest-neighbour index compares by inner product, built so
  that the inner product ranks a text's neighbours as the head would (`search_parts`). The head
  scores `[|a-b|, a*b]` with one weight per feature (or a cosine, or an L1 distance). For
  features of one sign, `|a-b| = |a| + |b| - 2 min(|a|, |b|)`, so its logit is a term of `a`
  alone, a term of `b` alone, and a sum over the features both have: `product * a*b - 2 *
  difference * min(|a|, |b|)`. The sum is an inner product of `phi(a) = [sqrt(product) a,
  sqrt(-2 difference) sqrt|a|]` with `phi(b)` (`min` taken as the geometric mean, exact when
  the two are equal); the term of `b` alone rides in one more dimension, which a query sets
  to 1. Leaving that term out (a plain weighted cosine) recalled a monotone head's pairs at
  about half the rate (BENCHMARKS.md, "Duplicates in a collection"). A `phi` wider than
  `SEARCH_DIMENSIONS` (the lexical encoder's bags: tens of thousands of sparse features) is
  reduced by a count sketch (each feature added, with a sign, into a few of the dimensions,
  both chosen by a fixed integer hash of its index): inner products are kept in expectation,
  it costs one sparse product, and it depends on nothing but the feature index, so every
  process and every collection gets the same vectors from the same model.
- its **embedding** (`embed`, what `siamese embed` writes and a served model returns): `phi`,
  sketched and L2-normalised, for users' own cosine searches.
- its **pair scores**: `Embedder.score_pairs` evaluates the model's own head on two sets of
  encodings (dense, sparse, or the lexical encoder's pieces held paired: `Embedder.paired`),
  equal to the model's output on the texts (`tests/test_embedding.py`), so candidate pairs are
  decided exactly as `siamese score` would decide them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numba
import numpy as np
from scipy import sparse

from siamese.config import Head
from siamese.training import encoder_and_head

SEARCH_DIMENSIONS = 256  # a wider encoding is sketched to this many dimensions
SKETCH_HASHES = 4  # dimensions each feature is added into: fewer collide into noise, more cost more
ENCODE_BATCH = 128  # texts encoded at a time: a lexical encoding is dense inside Keras (80,000 floats a text)
_HASH_MULTIPLIERS = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1, 0xD3A2646C, 0xFD7046C5, 0xB55A4F09)


class EmbeddingError(ValueError):
    """A model whose encodings cannot be compared: no shared encoder, or a head that does not score similarity."""


@dataclass(frozen=True)
class HeadWeights:
    """What a Siamese head computes from two encodings `a`, `b`, read off its layers.

    `symmetric`: sigmoid(difference . |a-b| + product . a*b + bias); `cosine`: sigmoid(scale *
    cos(a, b) + bias); `manhattan`: exp(-difference . |a-b|), its fixed weights all 1 (the L1
    distance). A graded model then maps 0..1 onto `low..high`.
    """

    head: Head
    difference: np.ndarray | None = None  # symmetric and manhattan: the weights of |a-b|
    product: np.ndarray | None = None  # symmetric: the weights of a*b
    scale: float = 1.0  # cosine
    bias: float = 0.0
    low: float = 0.0
    high: float = 1.0


def head_weights(head_model: keras.Model, width: int) -> HeadWeights:
    """Read which head `head_model` (two encodings in, one score out) is, and its weights.

    Raises:
        EmbeddingError: the `concat` head (it scores each side on its own, not their similarity),
            or a head of another shape.
    """
    names = {layer.name for layer in head_model.layers}
    last = head_model.layers[-1]  # a graded model's head ends by mapping 0..1 onto its scale (`on_score_scale`)
    low, high = (float(last.offset), float(last.offset + last.scale)) if isinstance(last, keras.layers.Rescaling) else (0.0, 1.0)
    similarity = head_model.get_layer("similarity") if "similarity" in names else None
    if "symmetric_features" in names and similarity is not None:
        kernel, bias = (keras.ops.convert_to_numpy(weight) for weight in similarity.weights)
        kernel = kernel.reshape(-1).astype(np.float64)
        return HeadWeights(Head.SYMMETRIC, kernel[:width], kernel[width:], bias=float(bias[0]), low=low, high=high)
    if "monotone_features" in names and similarity is not None:
        kernel, bias = (keras.ops.convert_to_numpy(weight) for weight in similarity.weights)
        kernel = kernel.reshape(-1).astype(np.float64)
        return HeadWeights(Head.SYMMETRIC, -kernel[:width], kernel[width:], bias=float(bias[0]), low=low, high=high)
    if "cosine" in names and similarity is not None:
        kernel, bias = (keras.ops.convert_to_numpy(weight) for weight in similarity.weights)
        return HeadWeights(Head.COSINE, scale=float(kernel.reshape(-1)[0]), bias=float(bias[0]), low=low, high=high)
    if "manhattan_distance" in names:
        kernel = keras.ops.convert_to_numpy(head_model.get_layer("manhattan_distance").weights[0])
        return HeadWeights(Head.MANHATTAN, difference=kernel.reshape(-1).astype(np.float64), low=low, high=high)
    if "concat" in names:
        raise EmbeddingError(
            "the model's head is `concat`: it scores each side on its own, not how similar they are, so its encodings "
            "cannot be searched for duplicates; train with model.head = symmetric (the default), cosine or manhattan"
        )
    raise EmbeddingError(f"the model's head ({head_model.name}) is none of symmetric, cosine, manhattan: cannot score its encodings")


@dataclass(frozen=True)
class SearchParts:
    """How a head's logit splits into an inner product and a term per text (see the module docstring).

    `phi(x) = [product_scale * x, shared_scale * signed_sqrt(x)]`, `own(x) = own_weights . |x|`.
    """

    product_scale: np.ndarray
    shared_scale: np.ndarray | None  # None: `phi` is the scaled encoding alone
    own_weights: np.ndarray | None  # None: no term per text
    unit: bool = False  # `phi` is L2-normalised (a cosine)

    @property
    def width(self) -> int:
        """`phi`'s."""
        return len(self.product_scale) * (1 if self.shared_scale is None else 2)


def search_parts(weights: HeadWeights, width: int, nonnegative: bool) -> SearchParts:
    """The head's logit as `phi(a) . phi(b) + own(a) + own(b)`, up to a constant and the `min` of shared features.

    Symmetric (and monotone): weights of either sign; a part with the wrong sign for a square
    root (a shared feature that lowers the score) is left out of `phi` but kept in `own`.
    Manhattan: `exp(-difference . |a-b|)` ranks as the logit `-difference . |a-b|`. Cosine: the
    normalised encodings' inner product. The split needs features of one sign (the lexical
    bags); for encodings of both signs (a learned encoder's) `phi` is the unit-length encoding
    weighted by the size of both its head weights (a weighted cosine), and `own` is left out.
    """
    if weights.head is Head.COSINE:
        return SearchParts(np.ones(width, np.float32), None, None, unit=True)
    difference = weights.difference if weights.head is Head.SYMMETRIC else -weights.difference
    product = weights.product if weights.head is Head.SYMMETRIC else np.zeros(width)
    if not nonnegative:
        return SearchParts(np.sqrt(np.abs(difference) + np.abs(product)).astype(np.float32), None, None, unit=True)
    return SearchParts(
        np.sqrt(np.maximum(product, 0.0)).astype(np.float32),
        np.sqrt(np.maximum(-2.0 * difference, 0.0)).astype(np.float32),
        np.asarray(difference, np.float64),
    )


def count_sketch(width: int, dimensions: int, hashes: int = SKETCH_HASHES) -> sparse.csr_matrix:
    """A `width x dimensions` sparse matrix: row i adds feature i, signed, into `hashes` dimensions.

    The dimensions and signs come from multiplicative hashes of `i` (no random generator, whose
    stream may change between NumPy versions); entries are +-1/sqrt(hashes), so a vector's
    squared length is kept in expectation.
    """
    features = np.arange(width, dtype=np.uint64)
    rows, columns, values = [], [], []
    for multiplier in _HASH_MULTIPLIERS[:hashes]:
        hashed = (features * np.uint64(multiplier)) & np.uint64(0xFFFFFFFF)
        rows.append(features)
        columns.append((hashed >> np.uint64(8)) % np.uint64(dimensions))
        values.append(np.where(hashed & np.uint64(1), 1.0, -1.0) / np.sqrt(hashes))
    matrix = sparse.coo_matrix(
        (np.concatenate(values).astype(np.float32), (np.concatenate(rows), np.concatenate(columns))), shape=(width, dimensions)
    )
    return matrix.tocsr()  # duplicates (two hashes into one dimension) are summed


class Embedder:
    """A trained Siamese model's encoder and head, for whole collections: encode once, search, score candidates.

    Raises (on construction):
        EmbeddingError: the model has no shared encoder feeding a head of the encodings alone,
            or its head does not score similarity (`head_weights`).
    """

    def __init__(self, model: keras.Model, dimensions: int = SEARCH_DIMENSIONS) -> None:
        parts = encoder_and_head(model)
        if parts is None:
            raise EmbeddingError(f"{model.name} has no shared encoder whose two encodings alone feed its head")
        self.encoder, head = parts
        self.width = int(self.encoder.outputs[0].shape[-1])
        self.head = head_weights(head, self.width)
        self.sparse = self.width > dimensions  # wide encodings (the lexical bags: >= 0) are mostly zeros: kept sparse
        # The lexical encoder's binary and TF-IDF bags weigh the same pieces, side by side: a piece
        # present in one half is present in the other. Its encodings are kept as one complex64
        # value per piece (binary + 1j * TF-IDF) over half the width: 12 bytes a piece, not 16.
        self.paired = self.sparse and "lexical_bags" in {layer.name for layer in self.encoder.layers} and self.width % 2 == 0
        self._parts = search_parts(self.head, self.width, nonnegative=self.sparse)
        wide = self._parts.width > dimensions
        self._sketch = _split_sketch(count_sketch(self._parts.width, dimensions), self._parts) if wide else None
        self.dimensions = dimensions if wide else self._parts.width  # of an embedding
        self._nonzeros = None  # the compiled sparse encoder, built on first use

    @property
    def search_dimensions(self) -> int:
        """A search vector's: the embedding's, and the term of the text alone (`search_vectors`)."""
        return self.dimensions + 1

    @property
    def fingerprint(self) -> str:
        """A digest of the weights and the search space: equal for two embedders only if their vectors compare.

        A saved collection records it, so new texts are never searched against vectors of another model.
        """
        digest = hashlib.sha256(f"{self.width} {self.search_dimensions} {self.head.head} phi-own".encode())
        for weight in [*self.encoder.weights, *self._head_arrays()]:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
        return digest.hexdigest()[:32]

    def _head_arrays(self) -> list[np.ndarray]:
        head = self.head
        arrays = [np.array([head.scale, head.bias, head.low, head.high])]
        return arrays + [array for array in (head.difference, head.product) if array is not None]

    def encode(self, texts: Sequence[str], batch_size: int = ENCODE_BATCH) -> sparse.csr_matrix | np.ndarray:
        """The encoder's output for each text: a CSR matrix when `sparse`, else a float32 array."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = np.asarray(texts[start : start + batch_size], dtype=object)
            chunks.append(self._encode_sparse(batch) if self.sparse else self._encode_dense(batch))
        if not chunks:
            if not self.sparse:
                return np.zeros((0, self.width), np.float32)
            return sparse.csr_matrix((0, self.width // 2 if self.paired else self.width), dtype=np.complex64 if self.paired else np.float32)
        return sparse.vstack(chunks, format="csr") if self.sparse else np.concatenate(chunks)

    def _encode_dense(self, batch: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(self.encoder(batch, training=False)).astype(np.float32, copy=False)

    def _encode_sparse(self, batch: np.ndarray) -> sparse.csr_matrix:
        """A wide encoding's nonzeros as CSR; `paired`: complex64 pieces (binary + 1j * TF-IDF) over half the width."""
        where, values = self._nonzeros_of(batch)  # row-major: rows ascending, columns ascending within each
        rows, columns, width = where[:, 0], where[:, 1], self.width
        if self.paired:
            width = self.width // 2
            second = columns >= width
            if second.sum() * 2 == len(columns) and (rows[second] == rows[~second]).all() and (columns[second] - width == columns[~second]).all():
                rows, columns, values = rows[~second], columns[~second], values[~second] + 1j * values[second]  # the halves align
            else:  # a piece in one half only (a piece weight of 0): the halves are summed per piece
                pieces = np.where(second, 1j * values, values).astype(np.complex64)
                return sparse.csr_matrix((pieces, (rows, columns - width * second)), shape=(len(batch), width))
        row_ends = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(batch)))])
        data = values.astype(np.complex64 if self.paired else np.float32)
        return sparse.csr_matrix((data, columns.astype(np.int32), row_ends), shape=(len(batch), width))

    def _nonzeros_of(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each nonzero's (row, column), row-major, and its value: on TensorFlow from one compiled call (the dense batch never leaves the graph)."""
        if keras.backend.backend() != "tensorflow":
            encoded = self._encode_dense(batch)
            where = np.argwhere(encoded)
            return where, encoded[where[:, 0], where[:, 1]]
        if self._nonzeros is None:
            import tensorflow as tf

            @tf.function(reduce_retracing=True, autograph=False)  # no Python control flow to convert
            def nonzeros(texts):
                encoded = tf.cast(self.encoder(texts, training=False), tf.float32)
                where = tf.where(encoded != 0)
                return where, tf.gather_nd(encoded, where)

            self._nonzeros = nonzeros
        where, values = (value.numpy() for value in self._nonzeros(batch.astype(str)))
        return where, values

    def unpaired(self, encodings: sparse.csr_matrix | np.ndarray) -> sparse.csr_matrix | np.ndarray:
        """Encodings as the encoder wrote them: `paired` ones' real parts, then their imaginary parts."""
        if not self.paired:
            return encodings
        pieces = sparse.csr_matrix(encodings)
        halves = [sparse.csr_matrix((part, pieces.indices, pieces.indptr), shape=pieces.shape) for part in (pieces.data.real, pieces.data.imag)]
        return sparse.hstack(halves, format="csr")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's embedding: unit-length `phi` (see the module docstring), what `siamese embed` writes."""
        return _unit_rows(self._phi(self.unpaired(self.encode(texts))))

    def search_vectors(self, encodings: sparse.csr_matrix | np.ndarray) -> np.ndarray:
        """What an index holds: `[phi(x), own(x)]`; `as_queries` makes them queries, whose inner products rank as the head.

        float32, `search_dimensions` wide.
        """
        encodings = self.unpaired(encodings)
        weights = self._parts.own_weights
        own = np.zeros(encodings.shape[0]) if weights is None else np.asarray(abs(encodings) @ weights).reshape(-1)
        return np.hstack([self._phi(encodings), own[:, None].astype(np.float32)])

    def _phi(self, encodings: sparse.csr_matrix | np.ndarray) -> np.ndarray:
        """`phi` of encodings as the encoder wrote them (`unpaired`)."""
        parts = self._parts
        if self._sketch is not None:  # wide: `phi @ sketch` as one sparse product per half
            product_rows, shared_rows = self._sketch
            vectors = sparse.csr_matrix(encodings) @ product_rows
            if shared_rows is not None:
                vectors = vectors + sparse.csr_matrix(_signed_sqrt(encodings)) @ shared_rows
            vectors = vectors.toarray() if sparse.issparse(vectors) else np.asarray(vectors)
        else:
            halves = [_dense(encodings) * parts.product_scale]
            if parts.shared_scale is not None:
                halves.append(_dense(_signed_sqrt(encodings)) * parts.shared_scale)
            vectors = np.hstack(halves)
        vectors = np.asarray(vectors, dtype=np.float32)
        return _unit_rows(vectors) if parts.unit else vectors

    def score(self, left: sparse.csr_matrix | np.ndarray, right: sparse.csr_matrix | np.ndarray) -> np.ndarray:
        """The model's score of each pair of rows `(left[i], right[i])`: the head applied to the two encodings."""
        rows = np.arange(left.shape[0])
        return self.score_pairs(left, right, rows, rows)

    def score_pairs(
        self, left: sparse.csr_matrix | np.ndarray, right: sparse.csr_matrix | np.ndarray, left_rows: np.ndarray, right_rows: np.ndarray
    ) -> np.ndarray:
        """The model's score of each pair `(left[left_rows[p]], right[right_rows[p]])`, from the two encodings alone.

        The head's features reduce to two sums per pair, `difference . |a-b|` (over the features
        either text has) and `product . a*b` (over those both have): sparse encodings are merged
        row against row in compiled code (`_sparse_sums`), without copying rows.
        """
        head = self.head
        difference = head.difference if head.head is not Head.COSINE else np.zeros(self.width)
        product = head.product if head.head is Head.SYMMETRIC else np.ones(self.width) if head.head is Head.COSINE else np.zeros(self.width)
        left_rows, right_rows = np.asarray(left_rows, np.int64), np.asarray(right_rows, np.int64)
        if sparse.issparse(left):
            left, right = _sorted_csr(left), _sorted_csr(right)
            differing, shared = _sparse_sums(
                left.indptr, left.indices, self._columns(left.data), right.indptr, right.indices, self._columns(right.data),
                left_rows, right_rows, self._columns(difference), self._columns(product),
            )
        else:
            a, b = np.asarray(left, np.float64)[left_rows], np.asarray(right, np.float64)[right_rows]
            differing, shared = np.abs(a - b) @ difference, (a * b) @ product
        if head.head is Head.SYMMETRIC:
            score = _sigmoid(differing + shared + head.bias)
        elif head.head is Head.COSINE:
            norms = np.sqrt(_squared_norms(left)[left_rows] * _squared_norms(right)[right_rows])
            score = _sigmoid(head.scale * shared / np.maximum(norms, 1e-12) + head.bias)
        else:
            score = np.exp(-differing)
        return head.low + (head.high - head.low) * np.asarray(score, dtype=np.float64).reshape(-1)

    def _columns(self, values: np.ndarray) -> np.ndarray:
        """Per stored piece, its values (or weights) as columns: `paired`, the two halves'; else one."""
        if not self.paired:
            return values.reshape(-1, 1)
        if np.iscomplexobj(values):
            return values.astype(np.complex64, copy=False).view(np.float32).reshape(-1, 2)
        half = len(values) // 2
        return np.ascontiguousarray(np.stack([values[:half], values[half:]], axis=1))


def as_queries(search_vectors: np.ndarray) -> np.ndarray:
    """Stored search vectors as queries: the last dimension (the stored text's own term) set to 1.

    A query's inner product with a stored vector is then `phi(a) . phi(b) + own(b)`: the head's
    logit for the pair, less terms that are equal for every neighbour of `a`.
    """
    queries = np.array(search_vectors, dtype=np.float32, copy=True)
    queries[:, -1] = 1.0
    return queries


def _split_sketch(sketch: sparse.csr_matrix, parts: SearchParts) -> tuple[sparse.csr_matrix, sparse.csr_matrix | None]:
    """The sketch's rows for `phi`'s two halves, each row scaled by its weight (None: no second half)."""
    width = len(parts.product_scale)
    product_rows = (sparse.diags(parts.product_scale) @ sketch[:width]).tocsr()
    if parts.shared_scale is None:
        return product_rows, None
    return product_rows, (sparse.diags(parts.shared_scale) @ sketch[width:]).tocsr()


def _signed_sqrt(encodings: sparse.csr_matrix | np.ndarray) -> sparse.csr_matrix | np.ndarray:
    if sparse.issparse(encodings):
        roots = sparse.csr_matrix(encodings, dtype=np.float32, copy=True)
        roots.data = np.sign(roots.data) * np.sqrt(np.abs(roots.data))
        return roots
    encodings = np.asarray(encodings, np.float32)
    return np.sign(encodings) * np.sqrt(np.abs(encodings))


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _dense(matrix: sparse.csr_matrix | np.ndarray) -> np.ndarray:
    return matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)


def _sorted_csr(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    matrix = sparse.csr_matrix(matrix)
    if not matrix.has_sorted_indices:
        matrix.sort_indices()
    return matrix


def _squared_norms(matrix) -> np.ndarray:
    if sparse.issparse(matrix):
        size = abs(matrix)  # a paired piece's: sqrt(binary^2 + tf-idf^2)
        return np.asarray(size.multiply(size).sum(axis=1), dtype=np.float64).reshape(-1)
    return np.einsum("ij,ij->i", np.asarray(matrix, np.float64), np.asarray(matrix, np.float64))


@numba.njit(parallel=True, cache=True)
def _sparse_sums(left_ptr, left_index, left_data, right_ptr, right_index, right_data, left_rows, right_rows, difference, product):
    """Per pair: `sum difference[k] |a_k - b_k|` over the union of the two rows' features, `sum product[k] a_k b_k` over their intersection.

    Each stored entry holds `data.shape[1]` features (the halves of a paired piece), weighed by that column of the weights.
    """
    pairs, columns = len(left_rows), left_data.shape[1]
    differing, shared = np.zeros(pairs), np.zeros(pairs)
    for pair in numba.prange(pairs):
        a, a_end = left_ptr[left_rows[pair]], left_ptr[left_rows[pair] + 1]
        b, b_end = right_ptr[right_rows[pair]], right_ptr[right_rows[pair] + 1]
        d = s = 0.0
        while a < a_end and b < b_end:
            feature_a, feature_b = left_index[a], right_index[b]
            if feature_a == feature_b:
                for column in range(columns):
                    x, y = left_data[a, column], right_data[b, column]
                    d += difference[feature_a, column] * abs(x - y)
                    s += product[feature_a, column] * x * y
                a += 1
                b += 1
            elif feature_a < feature_b:
                for column in range(columns):
                    d += difference[feature_a, column] * abs(left_data[a, column])
                a += 1
            else:
                for column in range(columns):
                    d += difference[feature_b, column] * abs(right_data[b, column])
                b += 1
        while a < a_end:
            for column in range(columns):
                d += difference[left_index[a], column] * abs(left_data[a, column])
            a += 1
        while b < b_end:
            for column in range(columns):
                d += difference[right_index[b], column] * abs(right_data[b, column])
            b += 1
        differing[pair], shared[pair] = d, s
    return differing, shared


def _sigmoid(logit: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logit, dtype=np.float64)))
