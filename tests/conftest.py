"""Shared test fixtures: where the real-music sample lives, and a quiet TensorFlow."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 400 KiB filesystem (tmpfs): too small for a CNN's model file. Mounting needs root."""
    import subprocess

    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mountpoint)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
