"""Model builders: the text model (shared LSTM) and the vision model (shared CNN backbone)."""

from __future__ import annotations

import keras

from siamese.config import Config, ModelKind, TextFileDataConfig
from siamese.models.text import build_text_model, build_text_pair_model
from siamese.models.vision import build_vision_model


def build_siamese_model(
    config: Config, dtype_policy: str = "float32", tokenizer: keras.layers.TextVectorization | None = None
) -> keras.Model:
    """The Siamese model a run's config describes: one shared encoder, a head for its task.

    Text pairs from a file need `tokenizer`, adapted on their training split (`build_tokenizer`).
    """
    if isinstance(config.data, TextFileDataConfig):
        if tokenizer is None:
            raise ValueError("a text pair model needs a tokenizer adapted on the training split")
        model = config.model
        return build_text_pair_model(
            tokenizer, embedding_dim=model.embedding_dim, units=model.units, head=model.head, dtype_policy=dtype_policy
        )
    if config.kind is ModelKind.TEXT:
        return build_text_model(
            features=config.data.features, units=config.model.units, head=config.model.head, dtype_policy=dtype_policy
        )
    return build_vision_model(
        backbone=config.model.backbone,
        image_size=config.data.image_size,
        channels=config.data.channels,
        head=config.model.head,
        pooling=config.model.pooling,
        task=config.data.task,
        filters=config.model.filters,
        dtype_policy=dtype_policy,
    )
