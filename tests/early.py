"""Real processes that tests only wait for, started as soon as collection ends.

The test process keeps about one of the machine's cores busy. A process that a test only waits
for (a `siamese train` in a fresh directory, an `mlflow server` starting, a fresh interpreter
importing TensorFlow) can run on another core meanwhile instead of after it.

A test module or conftest registers a starter under the name of the fixture that waits for it
(`register`); the hooks in tests/conftest.py start the registered processes whose fixture a
selected test uses, move those tests to the end of the session, and stop whatever still runs
when the session ends. The fixture gets its process with `started(request, name)`, which starts
it then if collection did not (a test run by itself), and reads a finished command's output
with `result`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import pytest


class EarlyProcess(NamedTuple):
    process: subprocess.Popen
    directory: Path  # its working directory (output files), removed after the session
    url: str = ""  # a server's


class CommandResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


_STARTERS: dict[str, Callable[[], EarlyProcess]] = {}
_STARTED = pytest.StashKey[dict[str, EarlyProcess]]()


def register(name: str, start: Callable[[], EarlyProcess]) -> None:
    """Start `start()` early in sessions where a selected test uses the fixture `name`."""
    _STARTERS[name] = start


def command(argv: list[str], prepare: Callable[[Path], None] | None = None, env: dict[str, str] | None = None) -> EarlyProcess:
    """Run `argv` in a new temporary directory (after `prepare(directory)`), its output going to files there."""
    directory = Path(tempfile.mkdtemp(prefix="siamese-tests-early-"))
    if prepare is not None:
        prepare(directory)
    with open(directory / "stdout", "w") as stdout, open(directory / "stderr", "w") as stderr:
        process = subprocess.Popen(argv, cwd=directory, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    return EarlyProcess(process, directory)


def started(request: pytest.FixtureRequest, name: str) -> EarlyProcess:
    """The process registered as `name`: the one collection started, else one started now."""
    processes = request.session.stash.setdefault(_STARTED, {})
    if name not in processes:
        processes[name] = _STARTERS[name]()
    return processes[name]


def result(process: EarlyProcess, timeout: float = 900) -> CommandResult:
    """Wait for a `command` to finish: its exit code and output."""
    process.process.wait(timeout=timeout)
    read = lambda name: (process.directory / name).read_text()  # noqa: E731
    return CommandResult(process.process.returncode, read("stdout"), read("stderr"))


# Called by the hooks of tests/conftest.py


def waits_for_early_process(item: pytest.Item) -> bool:
    return bool(set(getattr(item, "fixturenames", ())) & _STARTERS.keys())


def start_used(session: pytest.Session) -> None:
    used = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    session.stash[_STARTED] = {name: start() for name, start in _STARTERS.items() if name in used}


def stop_all(session: pytest.Session) -> None:
    for early in session.stash.get(_STARTED, {}).values():
        if early.process.poll() is None:
            os.killpg(early.process.pid, signal.SIGTERM)
            early.process.wait(timeout=30)
        shutil.rmtree(early.directory, ignore_errors=True)
