"""Two `genreflow run` processes at once on one store and one cache: nothing is extracted or trained twice, the
second reuses what the first did, and both finish with everything (flows/locks.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tests.support.music import TRACK_COUNT, tiny_collection
from tests.support.paths import REPO_ROOT


def test_two_runs_at_once_share_the_work_and_never_do_it_twice(prefect_api: str, tmp_path: Path) -> None:
    music = tiny_collection(tmp_path / "music")
    common = ["--data", str(music), "--store", str(tmp_path / "store.zarr"), "--cache", str(tmp_path / "cache"),
              "--models", "baseline", "--clip-seconds", "1", "2", "--epochs", "1", "--workers", "1"]  # fmt: skip
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "genreflow.cli", "run", *common, "--out", str(tmp_path / name)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("first", "second")
    ]
    outputs = [run.communicate(timeout=900)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], "\n".join(output[-3000:] for output in outputs)
    folders = [(tmp_path / name / "latest").resolve() for name in ("first", "second")]
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in folders]
    records = [json.loads((folder / "run.json").read_text()) for folder in folders]
    started = [datetime.fromisoformat(record["started"]).timestamp() for record in records]
    finished = [(folder / "summary.json").stat().st_mtime for folder in folders]
    assert started[0] < finished[1] and started[1] < finished[0], "the runs did not overlap: nothing was tested"
    for first, second in zip(summaries[0]["cells"], summaries[1]["cells"], strict=True):
        assert {first["status"], second["status"]} == {"trained", "reused"}, (first, second)
        assert first["track_accuracy"] == second["track_accuracy"]
    extracted = sorted(record["extraction"]["extracted"] for record in records)
    assert extracted == [0, TRACK_COUNT]
