"""The command line's temporary Prefect API: started early, used by the flow, stopped afterwards."""

from __future__ import annotations

import subprocess
import sys

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
