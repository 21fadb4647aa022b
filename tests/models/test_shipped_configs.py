"""Every config in configs/ builds its family's model, and the reference configs give the reference counts."""

from __future__ import annotations

import dataclasses

import pytest
from shipped_configs import SHIPPED_CONFIGS, load_shipped, needs_data_file

from siamese.families import family_of

REFERENCE_PARAMS = {"original.toml": 20_673, "vision_reference.toml": 20_865_577}
MODEL_NAMES = {"sequences": "siamese_text", "text": "siamese_text_pairs", "vision": "siamese_vision"}


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=[path.name for path in SHIPPED_CONFIGS])
def test_shipped_config_builds_its_siamese_model(path, tmp_path):
    config = load_shipped(path, tmp_path)
    family = family_of(config.kind)
    # The family prepares a few pairs as the flow would (the model's shape does not depend on their number).
    few = config if needs_data_file(path) else dataclasses.replace(config, data=dataclasses.replace(config.data, num_pairs=30))
    train = family.load_split(few, family.prepare_splits(few, tmp_path).paths["train"])
    model = family.build(config, train, "float32")
    assert [tensor.name for tensor in model.inputs] == ["left", "right"]
    assert tuple(model.output.shape) == (None, 1)
    assert model.name == MODEL_NAMES[config.kind]
    if path.name in REFERENCE_PARAMS:
        assert model.count_params() == REFERENCE_PARAMS[path.name]
