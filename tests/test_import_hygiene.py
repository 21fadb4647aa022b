"""The library stays a library: no Prefect or MLflow, and a config import that stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LIBRARY_MODULES = [
    "siamese",
    "siamese.config",
    "siamese.data.sequences",
    "siamese.data.stereo",
    "siamese.data.image_pairs",
    "siamese.data.tables",
    "siamese.data.text_pairs",
    "siamese.data.sample_questions",
    "siamese.data.sources",
    "siamese.models",
    "siamese.models.layers",
    "siamese.models.text",
    "siamese.models.vision",
    "siamese.sharing",
    "siamese.evaluation",
    "siamese.baselines",
    "siamese.gate",
    "siamese.devices",
    "siamese.training",
]


def loaded_after_import(modules: list[str], watched: list[str]) -> list[str]:
    """Import `modules` in a fresh interpreter; return which of `watched` ended up in sys.modules."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_library_imports_neither_prefect_nor_mlflow():
    loaded = loaded_after_import(LIBRARY_MODULES, ["prefect", "mlflow", "keras"])
    # keras must be loaded, or the check imported less than it claims to.
    assert loaded == ["keras"]


@pytest.mark.parametrize("module", ["siamese", "siamese.config"])
def test_config_import_loads_no_deep_learning_framework(module):
    assert loaded_after_import([module], ["tensorflow", "keras", "jax", "torch"]) == []
