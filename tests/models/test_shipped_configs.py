"""Every config in configs/ builds its model, and the reference configs give the reference counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from siamese.config import load_config
from siamese.models import build_siamese_model

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))
REFERENCE_PARAMS = {"original.toml": 20_673, "vision_reference.toml": 20_865_577}


@pytest.mark.parametrize("path", CONFIGS, ids=[path.name for path in CONFIGS])
def test_shipped_config_builds_its_siamese_model(path):
    config = load_config(path)
    model = build_siamese_model(config)
    assert [tensor.name for tensor in model.inputs] == ["left", "right"]
    assert tuple(model.output.shape) == (None, 1)
    assert model.name == f"siamese_{config.kind}"
    if path.name in REFERENCE_PARAMS:
        assert model.count_params() == REFERENCE_PARAMS[path.name]
