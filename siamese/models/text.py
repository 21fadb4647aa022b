"""The text models: one LSTM encoder applied to a left and a right input.

Two input forms share the encoder design. The reference model takes float sequences
`(batch, None, features)` (generated data). The text pair model takes raw strings: tokenisation
and an embedding sit inside its encoder, so the saved model scores raw text with no separate
preprocessing to keep in step.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from siamese.config import Head, TextEncoder
from siamese.models.layers import similarity_head


def build_sequence_encoder(
    *, features: int = 128, units: int = 32, dtype_policy: str = "float32", name: str = "encoder"
) -> keras.Model:
    """Encode a zero-padded sequence `(batch, None, features)` into `(batch, units)`.

    The LSTM keeps Keras' cuDNN-compatible defaults (tanh/sigmoid, no recurrent dropout, not
    unrolled) and padding sits at the end of each sequence, so a GPU runs the fused cuDNN kernel.
    """
    if features < 1 or units < 1:
        raise ValueError(f"features and units must be >= 1, got {features=} and {units=}")
    sequence = keras.Input(shape=(None, features), name=f"{name}_sequence")
    masked = keras.layers.Masking(mask_value=0.0, name="padding_mask")(sequence)
    encoding = keras.layers.LSTM(units, dtype=dtype_policy, name="lstm")(masked)
    return keras.Model(sequence, encoding, name=name)


def build_text_model(
    *, features: int = 128, units: int = 32, head: Head | str = Head.CONCAT, dtype_policy: str = "float32"
) -> keras.Model:
    """The Siamese text model: `encoder(left)` and `encoder(right)` share one set of weights.

    Inputs `left` and `right`: `(batch, None, features)`, zero-padded. Output `(batch, 1)`: the
    similarity score. With the reference settings (128 features, 32 units, `concat`) the model
    has 20,673 parameters, 20,608 of them in the shared LSTM.
    """
    left = keras.Input(shape=(None, features), name="left")
    right = keras.Input(shape=(None, features), name="right")
    encoder = build_sequence_encoder(features=features, units=units, dtype_policy=dtype_policy)
    score = similarity_head(encoder(left), encoder(right), head)
    return keras.Model([left, right], score, name="siamese_text")


def build_unshared_text_model(
    *, features: int = 128, units: int = 32, head: Head | str = Head.CONCAT, dtype_policy: str = "float32"
) -> keras.Model:
    """The unshared twin: the same architecture with a separate encoder per side.

    Not a Siamese model: it exists to compare against (twice the encoder parameters) and to
    check that weight-sharing verification catches it.
    """
    left = keras.Input(shape=(None, features), name="left")
    right = keras.Input(shape=(None, features), name="right")
    left_encoder = build_sequence_encoder(features=features, units=units, dtype_policy=dtype_policy, name="left_encoder")
    right_encoder = build_sequence_encoder(features=features, units=units, dtype_policy=dtype_policy, name="right_encoder")
    score = similarity_head(left_encoder(left), right_encoder(right), head)
    return keras.Model([left, right], score, name="unshared_text")


def build_tokenizer(
    texts: Sequence[str], *, vocabulary_size: int = 20_000, sequence_length: int = 40
) -> keras.layers.TextVectorization:
    """A `TextVectorization` layer adapted on `texts`: lower-cased, punctuation stripped, split on spaces.

    Pass the training split's texts only, so the vocabulary never sees a validation or test
    word. Token ids are padded with 0 at the end (or cut) to `sequence_length`; words outside
    the vocabulary map to the unknown token 1.
    """
    if vocabulary_size < 3 or sequence_length < 1:
        raise ValueError(
            "vocabulary_size must be >= 3 (padding, unknown and a word) and sequence_length >= 1, "
            f"got {vocabulary_size=} and {sequence_length=}"
        )
    tokenizer = keras.layers.TextVectorization(
        max_tokens=vocabulary_size, output_sequence_length=sequence_length, name="tokenizer"
    )
    tokenizer.adapt(np.asarray(texts, dtype=object))
    return tokenizer


PADDING_SHIFT = 2.0  # LSTM outputs lie in (-1, 1): shifted down by 2, a padded position is below every token's
CHARACTER_NGRAMS = (2, 3, 4)  # pieces of words, shared by inflections, compounds and typos
WORD_NGRAMS = (1, 2)  # words and word pairs: "new york" is not "york" and "new"


def build_text_pair_model(
    tokenizer: keras.layers.TextVectorization | None,
    *,
    encoder: TextEncoder | str = TextEncoder.LSTM,
    train_texts: Sequence[str] = (),
    vocabulary_size: int = 20_000,
    embedding_dim: int = 128,
    units: int = 32,
    head: Head | str = Head.SYMMETRIC,
    dropout: float = 0.0,
    l2: float = 0.0,
    word_vectors: np.ndarray | None = None,
    fine_tune_embeddings: bool = False,
    dtype_policy: str = "float32",
) -> keras.Model:
    """The Siamese model over raw text: inputs `left` and `right` are strings of shape `(batch,)`.

    One encoder, tokenisation inside, serves both sides, so the saved model scores raw text
    (`tokenizer`, the word tokenizer of the learned encoders; None for `lexical`):

    - `lstm`, the reference: tokenizer -> embedding -> LSTM(units). With 128-wide embeddings and
      32 units the LSTM has the reference 20,608 parameters.
    - `bilstm`: the embeddings go through a bidirectional LSTM, max-pooled over the text's own
      tokens (padding left out), beside a dense projection of the text's character n-gram bag
      (subword information, DSSM-style), so unseen and misspelled words still carry meaning.
    - `lexical`: the text's character n-grams and words (and word pairs) as L2-normalised bags,
      binary and TF-IDF weighted, each piece scaled by one learned weight shared by both sides.
      The head learns which shared and which differing pieces matter, as a logistic regression
      over `[|a-b|, a*b]` would, and `l2` regularises it the same way. On a few thousand real
      pairs this beats the embedding encoders (BENCHMARKS.md, "Model quality").

    Embedding padding id 0 sits at the end of each sequence and is masked, so a GPU still runs the
    fused cuDNN LSTM. `train_texts` (the training split's, both sides) adapt the lexical and
    character vocabularies, each keeping its `vocabulary_size` most frequent terms;
    `word_vectors` (vocabulary size x `embedding_dim`) initialise the embedding, frozen unless
    `fine_tune_embeddings`.
    """
    encoder = TextEncoder(encoder)
    if tokenizer is None and encoder is not TextEncoder.LEXICAL:
        raise ValueError(f"the {encoder} encoder needs a tokenizer (build_tokenizer)")
    text = keras.Input(shape=(), dtype="string", name="encoder_text")
    if encoder is TextEncoder.LEXICAL:
        encoding = _lexical_encoding(text, train_texts, vocabulary_size)
    else:
        encoding = _learned_encoding(
            text, tokenizer, encoder, train_texts, vocabulary_size, embedding_dim, units, dropout, word_vectors, fine_tune_embeddings, dtype_policy
        )
    shared = keras.Model(text, encoding, name="encoder")
    left = keras.Input(shape=(), dtype="string", name="left")
    right = keras.Input(shape=(), dtype="string", name="right")
    score = similarity_head(shared(left), shared(right), head, l2=l2)
    return keras.Model([left, right], score, name="siamese_text_pairs")


def _lexical_encoding(text, train_texts: Sequence[str], vocabulary_size: int):
    """Binary and TF-IDF bags of character n-grams and of words, each L2-normalised, side by side.

    Binary bags count a piece once however often it repeats (what TF-IDF's sublinear term
    frequency approximates); TF-IDF bags weigh rare pieces up. Each kind wins on some data, and
    the head weighs them (BENCHMARKS.md). One vectorizer per kind serves both bags, so each
    vocabulary is adapted once: a term present has a TF-IDF weight of at least log(1.5), so three
    times it, capped at 1, is exactly the binary bag (`tests/families/test_text_family.py`).
    """
    bags: dict[str, list] = {"binary": [], "tf_idf": []}
    for name, split, ngrams in (("characters", "character", CHARACTER_NGRAMS), ("words", "whitespace", WORD_NGRAMS)):
        vectorizer = keras.layers.TextVectorization(
            max_tokens=vocabulary_size,
            standardize="lower" if split == "character" else "lower_and_strip_punctuation",
            split=split,
            ngrams=ngrams,
            output_mode="tf_idf",
            name=f"{name}_tf_idf",
        )
        vectorizer.adapt(np.asarray(train_texts, dtype=object))
        weighted = vectorizer(text)
        present = keras.layers.ReLU(max_value=1.0, name=f"{name}_binary")(keras.layers.Rescaling(3.0, name=f"{name}_present")(weighted))
        bags["binary"].append(keras.layers.UnitNormalization(name=f"{name}_binary_unit")(present))
        bags["tf_idf"].append(keras.layers.UnitNormalization(name=f"{name}_tf_idf_unit")(weighted))
    joined = keras.layers.Concatenate(name="lexical_bags")([*bags["binary"], *bags["tf_idf"]])
    # The learned part: one weight per piece, shared by both sides (start: 1, the plain bags).
    # DepthwiseConv1D over a length-1 sequence is that elementwise scale in a built-in layer.
    pieces = keras.layers.Reshape((1, -1), name="pieces")(joined)
    weighted_pieces = keras.layers.DepthwiseConv1D(1, use_bias=False, depthwise_initializer="ones", name="piece_weights")(pieces)
    return keras.layers.Flatten(name="weighted_bags")(weighted_pieces)


def _learned_encoding(
    text,
    tokenizer: keras.layers.TextVectorization,
    encoder: TextEncoder,
    train_texts: Sequence[str],
    vocabulary_size: int,
    embedding_dim: int,
    units: int,
    dropout: float,
    word_vectors: np.ndarray | None,
    fine_tune_embeddings: bool,
    dtype_policy: str,
):
    """Word embeddings through an LSTM (`lstm`) or a max-pooled BiLSTM beside a character n-gram projection (`bilstm`)."""
    embedding = keras.layers.Embedding(
        tokenizer.vocabulary_size(),
        embedding_dim,
        mask_zero=True,
        dtype=dtype_policy,
        trainable=word_vectors is None or fine_tune_embeddings,
        embeddings_initializer="uniform" if word_vectors is None else keras.initializers.Constant(word_vectors),
        name="embedding",
    )
    tokens = tokenizer(text)
    embedded = embedding(tokens)
    if dropout:
        embedded = keras.layers.Dropout(dropout, name="embedding_dropout")(embedded)
    if encoder is TextEncoder.LSTM:
        return keras.layers.LSTM(units, dtype=dtype_policy, name="lstm")(embedded)
    sequence = keras.layers.Bidirectional(
        keras.layers.LSTM(units, return_sequences=True, dtype=dtype_policy), dtype=dtype_policy, name="bilstm"
    )(embedded)
    pooled = _max_over_tokens(sequence, tokens, dtype_policy)
    characters = keras.layers.TextVectorization(
        max_tokens=vocabulary_size, standardize="lower", split="character", ngrams=CHARACTER_NGRAMS,
        output_mode="multi_hot", name="characters_multi_hot",
    )
    characters.adapt(np.asarray(train_texts, dtype=object))
    bag = keras.layers.Rescaling(1.0, name="characters_float")(characters(text))
    subwords = keras.layers.Dense(2 * units, activation="tanh", dtype=dtype_policy, name="subword_projection")(bag)
    encoding = keras.layers.Concatenate(name="encoding")([pooled, subwords])
    return keras.layers.Dropout(dropout, name="encoding_dropout")(encoding) if dropout else encoding


def _max_over_tokens(sequence, tokens, dtype_policy: str):
    """The maximum over time of a BiLSTM's outputs `(batch, steps, 2 * units)` at the text's own tokens only.

    Keras 3's `GlobalMaxPooling1D` ignores the padding mask, so padded positions (token id 0,
    output 0) would take part in the max and a text's encoding would depend on how much padding
    `sequence_length` adds. Padded positions are shifted down by `PADDING_SHIFT` first, below every
    real output; a small shift, not -1e9, so that it stays exact in float16. A text without a word
    (only punctuation) pools to -2 in every unit: one fixed "no words" encoding. Built-in layers
    only (ids as floats, capped at 1: 1 for a token, 0 for padding), so the saved model needs no
    custom class.
    """
    ids = keras.layers.Rescaling(1.0, name="token_ids_float")(tokens)
    present = keras.layers.ReLU(max_value=1.0, name="token_present")(ids)
    shift = keras.layers.Rescaling(PADDING_SHIFT, offset=-PADDING_SHIFT, name="padding_shift")(present)  # 0 or -2
    shift = keras.layers.Reshape((-1, 1), name="padding_shift_per_step")(shift)  # broadcast over the units
    shifted = keras.layers.Add(dtype=dtype_policy, name="padding_shifted")([sequence, shift])
    return keras.layers.GlobalMaxPooling1D(name="max_pool")(shifted)
