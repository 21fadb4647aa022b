"""Helpers shared by the model builder tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

import keras
import numpy as np


def score(model: keras.Model, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The model's output for one batch in inference mode, as numpy."""
    return keras.ops.convert_to_numpy(model({"left": left, "right": right}, training=False))


def all_layers(model: keras.Model) -> list[keras.Layer]:
    """Every layer, descending into sub-models."""
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers += all_layers(layer)
    return layers


def custom_layers(model: keras.Model) -> list[str]:
    """Layers whose class is not Keras' own: a saved model with any loads only where their module is imported."""
    modules = {layer.name: type(layer).__module__ for layer in all_layers(model)}
    return [f"{name} ({module})" for name, module in modules.items() if not module.startswith("keras.")]
