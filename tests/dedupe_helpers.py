"""A crafted collection with known duplicate groups, and a text pair model with set weights that finds them."""

from __future__ import annotations

import keras
import numpy as np

from siamese.models.text import build_text_pair_model

# Three groups of paraphrases and two loners; the model below calls texts sharing most n-grams duplicates.
COLLECTION = [
    "how do i learn python quickly",
    "what is the capital of france",
    "how can i learn python quickly?",
    "best pizza places in new york city",
    "what's the capital city of france",
    "why is the sky blue",
    "where to find the best pizza in new york city",
    "how do i learn python fast",
    "which gpu should i buy for deep learning",
]
EXPECTED_GROUPS = [0, 1, 0, 3, 1, 5, 3, 0, 8]


def overlap_model() -> keras.Model:
    """A lexical model with set weights: score = sigmoid(5 (a . b) - 10), where a . b sums the four bags' cosines."""
    model = build_text_pair_model(None, encoder="lexical", train_texts=COLLECTION * 2, vocabulary_size=5000)
    similarity = model.get_layer("similarity")
    kernel, bias = similarity.get_weights()
    width = kernel.shape[0] // 2
    kernel[:width], kernel[width:] = 0.0, 5.0
    similarity.set_weights([kernel, np.full_like(bias, -10.0)])
    return model
