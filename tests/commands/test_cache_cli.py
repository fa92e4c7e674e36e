"""`genreflow cache clean` removes only checkpoints no cell will resume (after listing them with --dry-run), and
`genreflow cache tensorboard` serves a cache's learning curves in a real TensorBoard."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from genreflow.cli import main
from genreflow.tasks.training.checkpoint import Checkpoint, TrainingState
from tests.support.processes import background_process, free_port, venv_script

HOUR = 3600.0


def checkpoint_in(cache: Path, key: str, hours_old: float = 0.0) -> Path:
    """A real checkpoint of one epoch under `cache`, last written `hours_old` hours ago."""
    folder = cache / "checkpoints" / key
    state = TrainingState(fold=0, epochs_done=1, finished=False, history={"loss": [1.0]}, model=[np.zeros(4)])
    Checkpoint(str(folder), key).save_state(state)
    written = time.time() - hours_old * HOUR
    for path in folder.rglob("*"):
        os.utime(path, (written, written))
    return folder


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    checkpoint_in(cache, "train-running")
    checkpoint_in(cache, "train-abandoned", hours_old=100)
    checkpoint_in(cache, "train-finished")
    (cache / "models" / "train-finished").mkdir(parents=True)
    (cache / "models" / "train-finished" / "cell.json").write_text("{}")
    return cache


def test_clean_lists_with_dry_run_then_removes_only_what_no_cell_resumes(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cache", "clean", "--cache", str(cache), "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith(f"{cache / 'checkpoints' / 'train-abandoned'}: not written for 100 h")
    assert listed[1].startswith(f"{cache / 'checkpoints' / 'train-finished'}: its cell finished training")
    assert listed[2].startswith("would remove 2 checkpoint(s)")
    assert sorted(path.name for path in (cache / "checkpoints").iterdir()) == [
        "train-abandoned", "train-finished", "train-running",
    ]  # fmt: skip

    assert main(["cache", "clean", "--cache", str(cache)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("removed 2 checkpoint(s)")
    assert [path.name for path in (cache / "checkpoints").iterdir()] == ["train-running"]
    assert (cache / "models" / "train-finished" / "cell.json").is_file()


def test_tensorboard_serves_the_caches_learning_curves(tmp_path: Path) -> None:
    from genreflow.tasks.training.curves import FoldCurves

    cache = tmp_path / "cache"
    curves = FoldCurves(str(cache / "tensorboard" / "cnn-1s-seed0-abc" / "fold-0"), {"model": "cnn"})
    curves.start({"loss": [1.0, 0.5], "val_loss": [1.2, 0.9]})
    curves.close()
    port = free_port()
    runs_url = f"http://127.0.0.1:{port}/data/runs"

    def serving() -> bool:
        try:
            with urllib.request.urlopen(runs_url, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    command = [venv_script("genreflow"), "cache", "tensorboard", "--cache", str(cache), "--port", str(port)]
    log = tmp_path / "tensorboard.log"
    with (
        background_process(command, log, ready=serving, startup_seconds=120),
        urllib.request.urlopen(runs_url, timeout=5) as response,
    ):
        runs = json.loads(response.read())
    assert sorted(runs) == [
        "cnn-1s-seed0-abc/fold-0",
        "cnn-1s-seed0-abc/fold-0/train",
        "cnn-1s-seed0-abc/fold-0/validation",
    ]


def test_tensorboard_on_a_cache_without_curves_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "tensorboard", "--cache", str(tmp_path / "empty")]) == 1
    assert "no learning curves yet" in capsys.readouterr().err
