"""The README's "Using it on your own music" commands, run as written (on a tiny collection, in a scratch folder)
so that they cannot drift from what genreflow does.

What is changed, and only that: `~/music/gtzan` is a small synthetic collection of 6 s tracks, `~/music/new-song.wav`
one more such file, `.venv/bin/genreflow` this interpreter's `genreflow`, and run/train get `--epochs 1` appended
(the last occurrence of an option counts) so that the test trains for seconds, not minutes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genreflow.tasks.collection.synthetic import write_synthetic_collection
from tests.support.paths import REPO_ROOT

MARKER = "<!-- the commands below are run by tests/test_readme.py -->"
FAST = {"run": ["--epochs", "1"], "train": ["--epochs", "1"]}
NOISE = ("oneDNN custom operations", "absl::InitializeLog", "distributed.scheduler", "Failed to send telemetry")


def readme_commands() -> list[list[str]]:
    """The genreflow commands of the README's marked block, split as a shell splits them (comments dropped)."""
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(re.escape(MARKER) + r"\s*```sh\n(.*?)```", text, re.DOTALL)
    assert block, f"README.md lost its marked block ({MARKER})"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line.strip()]


def test_the_marked_block_holds_the_commands_a_user_needs() -> None:
    commands = [words[1] if words[1] != "store" else f"store {words[2]}" for words in readme_commands()]
    assert commands == ["run", "store info", "store verify", "train", "predict", "predict", "report", "store compact"]


def test_the_readme_commands_run_as_written(prefect_api: str, tmp_path: Path) -> None:
    music = tmp_path / "home" / "music"
    write_synthetic_collection(music / "gtzan", tracks_per_genre=3, seed=0, seconds=6.0)
    shutil.copy(next((music / "gtzan").glob("*/*.wav")), music / "new-song.wav")
    work = tmp_path / "work"
    work.mkdir()
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}  # genreflow's own
    env["PREFECT_API_URL"] = prefect_api
    for words in readme_commands():
        assert words[0] == ".venv/bin/genreflow", words
        arguments = [os.path.expanduser(word) for word in words[1:]]  # as the shell would: ~ is HOME, the test's
        command = [sys.executable, "-m", "genreflow.cli", *arguments, *FAST.get(words[1], [])]
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(words)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        for noise in NOISE:  # start-up banners and routine logs stay out of the user's terminal
            assert noise not in done.stdout + done.stderr, f"{' '.join(words)} printed {noise!r}"
    assert (work / "runs" / "latest" / "report.html").is_file()
    assert (work / "runs" / "cnn-5s" / "cell.json").is_file()
    assert len((work / "runs" / "predictions.csv").read_text().splitlines()) == 1 + 18  # the header, a row per file


@pytest.fixture(autouse=True)
def _home_is_not_the_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`~` in the README means the test's own folder, here and in the commands it starts."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
