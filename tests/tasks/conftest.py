"""Task fixtures: tasks are called directly (`task.fn(...)`), without the Prefect engine or API.

`get_run_logger()` needs a flow or task run, or Prefect's run loggers disabled: the autouse
fixture disables them, as Prefect's testing guide does for `.fn` calls. MLflow stores are real
SQLite stores in a temporary directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from prefect.logging import disable_run_logger


@pytest.fixture(scope="module", autouse=True)
def quiet_run_logger() -> Iterator[None]:
    """Module-scoped so that it is on before the module-scoped fixtures that call tasks."""
    with disable_run_logger():
        yield


@pytest.fixture(scope="module")
def module_store(tmp_path_factory, new_store) -> Iterator[str]:
    """A real MLflow store shared by one module's tests (models logged once, read by several tests)."""
    directory: Path = tmp_path_factory.mktemp("store")
    uri = new_store(directory / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri
