"""The command line's temporary Prefect API: started early, used by the flow, stopped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prefect import flow
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from flows.temporary_api import PrefectApiError, TemporaryApi, temporary_prefect_api


@flow(name="temporary-api-probe")
def probe_flow() -> str:
    return "ran"


def test_a_configured_api_is_used_and_no_server_is_started(prefect_api):
    configured = get_current_settings().api.url
    with temporary_prefect_api() as api:
        assert api.url == configured and api.process is None
        assert api.wait_until_ready() == 0.0


def test_without_an_api_a_server_starts_serves_the_flow_and_stops():
    with temporary_settings(updates={PREFECT_API_URL: None}):
        assert get_current_settings().api.url is None
        with temporary_prefect_api() as api:
            assert api.process is not None and api.url.startswith("http://127.0.0.1:")
            assert get_current_settings().api.url == api.url, "Prefect's clients must use this server"
            api.wait_until_ready()
            state = probe_flow(return_state=True)
            assert state.result() == "ran"
            recorded = httpx.get(f"{api.url}/flow_runs/{state.state_details.flow_run_id}")
            assert recorded.status_code == 200, "the flow run was recorded by the temporary API"
            assert recorded.json()["state_type"] == "COMPLETED"
        assert api.process.poll() is not None, "the server stops with the block"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{api.url}/health", timeout=2)
        assert get_current_settings().api.url is None, "the settings are restored"


def test_a_server_that_exits_early_is_reported_with_its_exit_code(unused_port):
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    api = TemporaryApi(f"http://127.0.0.1:{unused_port}/api", dead, startup_timeout=30)
    with pytest.raises(PrefectApiError, match="exited with code 3 before it answered.*PREFECT_API_URL"):
        api.wait_until_ready()


def test_a_server_that_never_answers_times_out_with_advice(unused_port):
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    api = TemporaryApi(f"http://127.0.0.1:{unused_port}/api", silent, startup_timeout=0.5)
    try:
        with pytest.raises(PrefectApiError, match=r"did not answer within 0.5 s; raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
            api.wait_until_ready()
    finally:
        api.stop()
    assert silent.poll() is not None, "stop() ends the process"


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The server never outlives its command, and first starts on one new PREFECT_HOME do not collide

HOLD_AN_API = """
import sys, time
from flows.temporary_api import temporary_prefect_api
with temporary_prefect_api() as api:
    api.wait_until_ready()
    print(api.url, api.process.pid, flush=True)
    time.sleep(float(sys.argv[1]))
"""


def command_env(prefect_home) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    return env | {"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}


def test_the_server_runs_in_a_session_of_its_own():
    with temporary_settings(updates={PREFECT_API_URL: None}):
        with temporary_prefect_api() as api:
            assert os.getsid(api.process.pid) == api.process.pid != os.getsid(0), "a terminal's Ctrl-C must not reach it"
            assert os.getpgid(api.process.pid) != os.getpgid(0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_server_dies_with_a_command_killed_by_sigkill(tmp_path):
    command = subprocess.Popen([sys.executable, "-c", HOLD_AN_API, "600"], env=command_env(tmp_path / "prefect"),
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    url, pid = command.stdout.readline().split()
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    command.kill()
    command.wait()

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(int(pid)):
        time.sleep(0.1)
    assert not _alive(int(pid)), "the server outlived its command"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)


@pytest.mark.slow  # two first starts on a new PREFECT_HOME, each migrating a database: 30-60 s on 2 cores
def test_commands_started_at_once_on_one_new_prefect_home_all_get_an_api(tmp_path):
    env = command_env(tmp_path / "new-prefect-home")
    commands = [
        subprocess.Popen([sys.executable, "-c", HOLD_AN_API, "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [command.communicate(timeout=300) for command in commands]

    for command, (stdout, stderr) in zip(commands, outputs):
        assert command.returncode == 0, stderr[-3000:]
        assert stdout.startswith("http://127.0.0.1:")
    assert (tmp_path / "new-prefect-home" / "prefect.db").is_file()


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: it has exited and waits for its parent to read its status)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
