"""A Prefect server backed by PostgreSQL (PREFECT_API_DATABASE_CONNECTION_URL) holds what genreflow registers."""

from __future__ import annotations

from pathlib import Path

import pytest

from genreflow.deployments import nightly
from tests.support.postgres import postgres_binaries, running_postgres
from tests.support.prefect_server import client_pointed_at, running_prefect_server


def test_the_work_pool_lands_in_postgresql(tmp_path: Path) -> None:
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("Debian's postgresql is not installed (apt-get install postgresql)")
    with (
        running_postgres(tmp_path, binaries) as database,
        running_prefect_server(tmp_path / "home", database_url=database.url) as server,
        client_pointed_at(server.api_url),
    ):
        nightly.ensure_work_pool()

        assert nightly.WORK_POOL in database.query("SELECT name FROM work_pool")
    assert not (tmp_path / "home" / "prefect.db").exists()
