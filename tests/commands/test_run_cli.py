"""`genreflow run` refuses what cannot work before any work starts: one line, no traceback, exit status 2, and
Prefect never imported (so a mistake costs a second, not a server's start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.music import tiny_collection
from tests.support.paths import REPO_ROOT
from tests.support.processes import as_unprivileged

RUN = """
import sys
from genreflow.cli import main
code = main(sys.argv[1:])
print("prefect imported" if "prefect" in sys.modules else "prefect not imported")
sys.exit(code)
"""


def run(*arguments: str, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", RUN, "run", *arguments]
    return subprocess.run(
        as_unprivileged(command) if unprivileged else command,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )


def assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("genreflow: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr  # one line
    assert result.stdout.strip() == "prefect not imported"


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_collection(tmp_path_factory.mktemp("music"))


def locations(tmp_path: Path) -> list[str]:
    return [
        "--store",
        str(tmp_path / "store.zarr"),
        "--out",
        str(tmp_path / "runs"),
        "--cache",
        str(tmp_path / "cache"),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--data", "/no/such/folder"], "--data /no/such/folder: no such folder"),
        (["--clip-seconds", "0.01"], "a 0.01 s clip is 0 frame(s); baseline needs at least 1"),
        (["--clip-seconds", "inf"], "a clip length must be a positive, finite number of seconds, got inf"),
        (["--clip-seconds", "nan"], "a clip length must be a positive, finite number of seconds, got nan"),
        (["--models", "cnn", "resnet"], "unknown model(s) resnet; choose from baseline, cnn, rnn, crnn"),
        (["--split", "half"], "unknown split 'half'"),
        (["--seeds", "-1"], "seeds must be non-negative integers"),
        (["--tracks-per-genre", "0"], "--tracks-per-genre: Input should be greater than or equal to 1"),
        (["--hold-out-validation", "false"], "cnn: early stopping needs the validation tracks held out"),
        (["--models", "rnn", "crnn", "--average-weights", "true"], "crnn: averaging the weights needs early stopping"),
    ],
)
def test_bad_options_are_one_line_before_prefect_starts(options: list[str], message: str, tmp_path: Path) -> None:
    assert_refused(run(*locations(tmp_path), *options), message)


def test_one_genre_is_refused_naming_what_was_found(music: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    genre = sorted(path for path in music.iterdir() if path.is_dir())[0]
    (one / genre.name).mkdir(parents=True)
    for path in genre.glob("*.wav"):
        (one / genre.name / path.name).write_bytes(path.read_bytes())
    (one / "notes").mkdir()

    assert_refused(
        run("--data", str(one), *locations(tmp_path)),
        f"needs audio files in at least 2 genre folders; found {genre.name} (3) "
        "(ignored 1: notes: genre folder without audio files)",
    )


def test_a_split_the_collection_is_too_small_for_is_refused(music: Path, tmp_path: Path) -> None:
    assert_refused(
        run("--data", str(music), "--split", "kfold:20", *locations(tmp_path)), "kfold:20 needs at least 20 tracks"
    )


@pytest.mark.skipif(os.geteuid() == 0 and not Path("/usr/bin/setpriv").exists(), reason="root ignores permissions")
def test_an_output_folder_that_cannot_be_written_is_refused(music: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run("--data", str(music), "--store", str(tmp_path / "store.zarr"), "--out", str(locked / "runs"),
                     "--cache", str(tmp_path / "cache"), unprivileged=True)  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert_refused(result, f"{locked / 'runs'}: cannot write there (Permission denied)")
