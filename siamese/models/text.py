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

from siamese.config import Head
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


def build_text_pair_model(
    tokenizer: keras.layers.TextVectorization,
    *,
    embedding_dim: int = 128,
    units: int = 32,
    head: Head | str = Head.SYMMETRIC,
    dtype_policy: str = "float32",
) -> keras.Model:
    """The Siamese model over raw text: inputs `left` and `right` are strings of shape `(batch,)`.

    One encoder (tokenizer -> embedding -> LSTM) serves both sides. The embedding masks the
    padding id 0, which sits at the end of each sequence, so a GPU still runs the fused cuDNN
    LSTM. With 128-wide embeddings and 32 units the LSTM has the reference 20,608 parameters.
    """
    text = keras.Input(shape=(), dtype="string", name="encoder_text")
    tokens = tokenizer(text)
    embedded = keras.layers.Embedding(
        tokenizer.vocabulary_size(), embedding_dim, mask_zero=True, dtype=dtype_policy, name="embedding"
    )(tokens)
    encoding = keras.layers.LSTM(units, dtype=dtype_policy, name="lstm")(embedded)
    encoder = keras.Model(text, encoding, name="encoder")
    left = keras.Input(shape=(), dtype="string", name="left")
    right = keras.Input(shape=(), dtype="string", name="right")
    score = similarity_head(encoder(left), encoder(right), head)
    return keras.Model([left, right], score, name="siamese_text_pairs")
