"""The library stays a library: no Prefect or MLflow, and a config import that stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import early
import pytest

PACKAGE = Path(__file__).parents[1] / "siamese"
# Every module of the library, found on disk: a new module is checked without being listed here.
LIBRARY_MODULES = sorted(
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
)


def import_code(modules: list[str], watched: list[str]) -> str:
    """Python that imports `modules` and prints which of `watched` ended up in sys.modules (JSON)."""
    return (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))\n"
    )


def loaded(completed) -> list[str]:
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def loaded_after_import(modules: list[str], watched: list[str]) -> list[str]:
    """Import `modules` in a fresh interpreter; return which of `watched` ended up in sys.modules."""
    return loaded(subprocess.run([sys.executable, "-c", import_code(modules, watched)], capture_output=True, text=True, timeout=120))


# The whole library in a fresh interpreter takes seconds (TensorFlow): started as collection ends (tests/early.py).
early.register(
    "library_imports", lambda: early.command([sys.executable, "-c", import_code(LIBRARY_MODULES, ["prefect", "mlflow", "keras"])])
)


@pytest.fixture
def library_imports(request) -> early.CommandResult:
    return early.result(early.started(request, "library_imports"))


def test_every_library_module_is_checked():
    assert {"siamese.config", "siamese.families", "siamese.families.text", "siamese.data.pairs", "siamese.training"} <= set(
        LIBRARY_MODULES
    )


def test_library_imports_neither_prefect_nor_mlflow(library_imports):
    # keras must be loaded, or the check imported less than it claims to.
    assert loaded(library_imports) == ["keras"]


@pytest.mark.parametrize("module", ["siamese", "siamese.config"])
def test_config_import_loads_no_deep_learning_framework(module):
    assert loaded_after_import([module], ["tensorflow", "keras", "jax", "torch"]) == []
