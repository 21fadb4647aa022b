"""A temporary Prefect API for one command, started before TensorFlow is imported.

With no API configured, Prefect starts a temporary server itself when the flow is called: it
imports its server package (about 2 s) and then waits for the server (4-6 s, 15 s on a new
`PREFECT_HOME`) while nothing else happens. The command line starts the same server as its very
first step instead, so it boots on the second core while this process imports TensorFlow, Keras
and MLflow; by the time the flow is called it is usually up. The server is the one Prefect
runs (`prefect.server.api.server:create_app` under uvicorn, UI and background services off), on
loopback, and it stops with the command.

It never outlives the command. It runs in a session of its own, so the SIGINT a terminal sends
its foreground process group on Ctrl-C reaches only the command, which still needs the API to
record the interruption and then stops it; it is stopped on every exit path; and on Linux it
is told to die with its parent (`PR_SET_PDEATHSIG`), which covers kill -9. Elsewhere a
command killed with SIGKILL leaves its server running until it is stopped by hand.

Commands started at once with one new `PREFECT_HOME` would each create its database and one of
them fail; the server that finds no database creates it holding a lock next to it, and the
others wait for that lock.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx

from siamese.locks import FileLock

STOP_TIMEOUT_SECONDS = 5.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal a process gets when the thread that started it exits


class PrefectApiError(RuntimeError):
    """The temporary Prefect API did not come up; the message says why and how to avoid it."""


@dataclass
class TemporaryApi:
    """A Prefect API this process uses: its own temporary server, or one already configured."""

    url: str
    process: subprocess.Popen | None = None  # None: the API was configured (PREFECT_API_URL, a profile, a test harness)
    startup_timeout: float = 0.0  # PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, as for Prefect's own server

    def wait_until_ready(self) -> float:
        """Block until the server answers `/health`: call it right before the first flow run.

        Returns:
            The seconds spent waiting: the part of the server's start that imports did not hide.

        Raises:
            PrefectApiError: the server exited or did not answer within the timeout.
        """
        if self.process is None:
            return 0.0
        started = time.monotonic()
        deadline = started + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise PrefectApiError(
                        f"the temporary Prefect API server exited with code {self.process.returncode} "
                        "before it answered; its messages are above. Set PREFECT_API_URL to use a running server."
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise PrefectApiError(
                        f"the temporary Prefect API server on {self.url} did not answer within {self.startup_timeout:g} s; "
                        "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or set PREFECT_API_URL to a running server"
                    )
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def temporary_prefect_api() -> Iterator[TemporaryApi]:
    """Start a temporary Prefect API server now unless an API is configured; stop it on exit.

    Inside the block Prefect's settings point at the new server (`PREFECT_API_URL`), so its
    clients use it instead of starting their own.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, get_current_settings, temporary_settings

    settings = get_current_settings()
    if settings.api.url:
        yield TemporaryApi(settings.api.url)
        return
    port = _free_port()
    api = TemporaryApi(
        f"http://127.0.0.1:{port}/api",
        _start_server(port, settings.to_environment_variables(exclude_unset=True)),
        settings.server.ephemeral.startup_timeout_seconds,
    )
    try:
        # No UI URL: this server serves no UI and is gone after the command, so Prefect prints no "View at" link.
        with temporary_settings(updates={PREFECT_API_URL: api.url, PREFECT_UI_URL: ""}):
            yield api
    finally:
        try:
            _send_queued_logs_and_events()
        finally:
            api.stop()


def _send_queued_logs_and_events() -> None:
    """Let Prefect's background workers send what they still hold while the server is up.

    They would otherwise flush at interpreter exit, into a stopped server, and wait out their
    timeouts (5 s).
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=STOP_TIMEOUT_SECONDS)


def _start_server(port: int, settings_environment: dict[str, str]) -> subprocess.Popen:
    """Prefect's temporary server (as `SubprocessASGIServer` runs it), without importing Prefect's server package here."""
    print(f"siamese: starting a temporary Prefect API on http://127.0.0.1:{port} (set PREFECT_API_URL to use a server)", file=sys.stderr)
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "flows.temporary_api", str(port)],  # -P: not a `flows` folder where the user stands
        env={
            **os.environ,
            **settings_environment,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",  # what Prefect sets for its temporary server: no background services
            "PREFECT__SERVER_FINAL": "1",
        },
        start_new_session=True,  # out of the terminal's process group: Ctrl-C interrupts the command, not its API
        preexec_fn=_dying_with_parent(),
    )  # fmt: skip


def _dying_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the server get SIGTERM when this process dies (Linux); None elsewhere.

    The signal comes when the thread that started the server exits: this is the main thread,
    which lives as long as the command. libc is loaded here, before the fork, so the child only
    makes the call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the call: nobody would send the signal
            os._exit(1)

    return die_with_parent


def _serve(port: int) -> None:
    """The server process: Prefect's app under uvicorn; a first start on a new database holds its creation lock.

    The lock is released once the app has started (database created and migrated, block types
    registered), so another command's server then finds a complete database.
    """
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets)
            finally:
                if lock is not None:
                    lock.release()

    lock = _database_creation_lock()
    config = uvicorn.Config(
        "prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port, log_level="error", lifespan="on"
    )
    Server(config).run()


def _database_creation_lock() -> FileLock | None:
    """The lock beside Prefect's SQLite database, held only when the database does not exist yet.

    Every server takes it, so one that starts while another creates the database waits; one
    that then finds the database releases it at once. A server database (PostgreSQL) needs none.
    """
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    url = url.get_secret_value() if url is not None else ""
    scheme, separator, database = url.partition(":///")
    if not (scheme.startswith("sqlite") and separator) or database == ":memory:":
        return None
    database_path = Path(database)
    lock = FileLock(database_path.with_name(database_path.name + ".lock"))
    lock.acquire()
    if database_path.exists():
        lock.release()
    return lock


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":  # the server process that `_start_server` starts
    _serve(int(sys.argv[1]))
