"""One real Prefect server (own PREFECT_HOME, free loopback port) shared by the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.prefect_server import PrefectServer, client_pointed_at, running_prefect_server


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with running_prefect_server(tmp_path_factory.mktemp("prefect-home")) as server:
        yield server


@pytest.fixture
def on_server(prefect_server: PrefectServer) -> Iterator[PrefectServer]:
    """Point this process's Prefect client at the test server for one test only."""
    with client_pointed_at(prefect_server.api_url):
        yield prefect_server
