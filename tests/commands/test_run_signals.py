"""Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGTERM end a real `genreflow run` within
seconds: no process of the run left, one line on what was kept, and the signal's exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.processes import background_process, log_tail, signal_group, venv_script

STOPPED_WITHIN_SECONDS = 10.0  # the run's own limit is 3 s of grace and 2 s for its children; the rest is slack


def group_members(group: int) -> list[int]:
    """The processes still in process group `group` (zombies included: they have not been reaped)."""
    import psutil

    members = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == group:
                members.append(process.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def second_fold_started(cache: Path) -> bool:
    """Whether a cell in training has saved an epoch of its second fold (its first fold is finished)."""
    from genreflow.tasks.training.checkpoint import STATE_FILE, CheckpointError, decode_state

    for state in (cache / "checkpoints").glob(f"*/{STATE_FILE}"):
        try:
            return decode_state(state.read_bytes(), state.parent.name).fold == 1
        except (OSError, CheckpointError):  # replaced while being read
            continue
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_whole_run_and_the_same_command_resumes_it(tmp_path: Path, signum: signal.Signals) -> None:
    log, cache = tmp_path / "run.log", tmp_path / "cache"
    command = [
        venv_script("genreflow"), "run", "--data", "synthetic", "--tracks-per-genre", "4", "--models", "cnn",
        "--clip-seconds", "1", "--epochs", "8", "--split", "kfold:3", "--out", str(tmp_path / "runs"), "--store",
        str(tmp_path / "store.zarr"), "--cache", str(cache),
    ]  # fmt: skip
    with background_process(command, log, ready=lambda: second_fold_started(cache), startup_seconds=240) as run:
        signal_group(run, signum)
        sent = time.monotonic()
        while group_members(run.pid) and time.monotonic() - sent < STOPPED_WITHIN_SECONDS:
            run.poll()  # reaps the run itself once it has ended
            time.sleep(0.2)
        left = group_members(run.pid)
        assert not left, f"{len(left)} process(es) of the run alive {STOPPED_WITHIN_SECONDS:g} s after {signum.name}"
        assert run.wait(timeout=1) == 128 + signum, log_tail(log)
    stopped = [line for line in log.read_text().splitlines() if line.startswith("genreflow: stopped by")]
    assert stopped == [
        f"genreflow: stopped by {signum.name}. Extracted tracks are kept in {tmp_path / 'store.zarr'}, finished cells "
        f"and the checkpoints of cells in training in {cache}; run the same command again to go on from there."
    ]
    if signum == signal.SIGTERM:  # once is enough for what follows
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        output = rerun.stdout + rerun.stderr
        assert "cnn-1s-seed0 fold 0: trained before a restart, kept" in output
        # the fold running at the signal resumes, unless it finished during the run's seconds of grace
        assert "resumed cnn-1s-seed0 at fold 1" in output or "cnn-1s-seed0 fold 1: trained before a restart" in output
