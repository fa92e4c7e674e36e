"""Reading a source file: a file that cannot be read is a `SourceError` naming why, never bad audio."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from genreflow.tasks.collection.sources import SourceError, read_source
from tests.support.paths import REPO_ROOT
from tests.support.processes import as_unprivileged


def test_a_file_that_cannot_be_read_is_a_source_error_not_bad_audio(tmp_path):
    """Nothing is known of such a file's content, so extraction must not quarantine it (tasks/features/extract.py)."""
    with pytest.raises(SourceError, match="missing"):
        read_source(str(tmp_path / "gone.wav"))
    with pytest.raises(SourceError, match="is a directory"):
        read_source(str(tmp_path))
    error = pickle.loads(pickle.dumps(SourceError("/music/a.wav", "missing")))
    assert (error.path, error.reason) == ("/music/a.wav", "missing")


READ = (
    "import sys\nfrom genreflow.tasks.collection.sources import read_source\nread_source(sys.argv[1])\nprint('read')\n"
)


def read_as_unprivileged_user(path: Path) -> subprocess.CompletedProcess[str]:
    """Read `path` in a child to which file permissions apply (root, without its capabilities)."""
    return subprocess.run(
        as_unprivileged([sys.executable, "-c", READ, str(path)]),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_an_unreadable_file_is_reported_as_a_permission_problem(tmp_path):
    readable, locked = tmp_path / "readable.wav", tmp_path / "locked.wav"
    for path in (readable, locked):
        path.write_bytes(b"RIFF")
    locked.chmod(0o000)

    assert read_as_unprivileged_user(readable).stdout.strip() == "read"  # the folder itself is fine
    denied = read_as_unprivileged_user(locked)

    assert denied.returncode != 0
    assert f"SourceError: {locked}: unreadable: permission denied" in denied.stderr
