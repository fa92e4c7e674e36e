"""Shared test fixtures: where the real-music sample lives, and a quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def gtzan_mini() -> Path:
    """The 70 real GTZAN tracks beside the checkout; tests that need them skip where they are absent."""
    path = SHARED_DATA / "gtzan-mini"
    if not path.is_dir():
        pytest.skip(f"real-music sample not found at {path}")
    return path


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect API (real server, throwaway database) shared by every test that needs one."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
