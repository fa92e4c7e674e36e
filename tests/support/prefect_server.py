"""A real `prefect server start` on a free loopback port, with its own PREFECT_HOME (and optionally PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import background_process, free_port, http_ok, venv_script

# Seconds to wait for queued events and logs to reach the API they were meant for before its services stop.
CLIENT_SERVICE_DRAIN_SECONDS = 30


@dataclass(frozen=True)
class PrefectServer:
    """Where a running test server answers, and the environment a client or worker needs to reach it."""

    api_url: str
    home: Path

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def client_env(self) -> dict[str, str]:
        """Environment for a process (CLI, worker, deploy script) that talks to this server."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }


@contextmanager
def running_prefect_server(home: Path, database_url: str | None = None) -> Iterator[PrefectServer]:
    """Start the server (SQLite under `home` unless `database_url` is given) and stop it when the block ends."""
    port = free_port()
    server = PrefectServer(api_url=f"http://127.0.0.1:{port}/api", home=home)
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Without this the UI served on `port` would call the API on the default port 4200.
        "PREFECT_UI_API_URL": server.api_url,
        "PREFECT_API_URL": "",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    home.mkdir(parents=True, exist_ok=True)
    command = [venv_script("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with background_process(command, home / "server.log", lambda: http_ok(f"{server.api_url}/health"), env):
        yield server


def stop_client_services() -> None:
    """Flush and stop this process's Prefect events and log workers, so the next ones bind the API then in force.

    Prefect keeps one events worker (and one log worker) per process, keyed by client type rather than by API URL,
    and binds the URL when it starts. A worker started while a test pointed the client at another server keeps
    sending there: task runs (which reach the API only as events) would go to the wrong server, or nowhere.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (EventsWorker, APILogWorker):
        service.drain_all(timeout=CLIENT_SERVICE_DRAIN_SECONDS)


@contextmanager
def client_pointed_at(api_url: str | None) -> Iterator[None]:
    """Point this process's Prefect client at `api_url` for one block, with client services bound to it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    stop_client_services()
    try:
        with temporary_settings({PREFECT_API_URL: api_url}):
            yield
    finally:
        stop_client_services()
