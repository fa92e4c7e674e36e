"""The whole flow on real Prefect (a temporary API), a real Dask LocalCluster, real Zarr and real TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genreflow.core import FeatureConfig
from genreflow.storage.store import FeatureSet, Store
from genreflow.tasks.collection.synthetic import write_synthetic_collection
from tests.support.paths import REPO_ROOT

TRACKS_PER_GENRE = 3
FAULT_ENV = "GENREFLOW_TEST_FAULT_FILE"
FAULTY_ENTRYPOINT = f"{Path(__file__).with_name('faulty_entry.py')}:genreflow_flow"


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic collection in the GTZAN layout, written once for every flow test."""
    return write_synthetic_collection(tmp_path_factory.mktemp("synthetic"), tracks_per_genre=TRACKS_PER_GENRE, seed=0)


@pytest.fixture
def faulty_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    """The flow with the `faulty` model registered (for this test only), and its fault switched on."""
    from prefect.flows import load_flow_from_entrypoint

    from genreflow.models.registry import MODELS

    fault = tmp_path / "fault"
    fault.touch()
    monkeypatch.setenv(FAULT_ENV, str(fault))
    yield load_flow_from_entrypoint(FAULTY_ENTRYPOINT), fault
    MODELS.pop("faulty")


@pytest.fixture
def run_paths(tmp_path: Path) -> dict[str, str]:
    return {"store": str(tmp_path / "store.zarr"), "out": str(tmp_path / "out"), "cache": str(tmp_path / "cache")}


def tiny_grid(data: Path, paths: dict[str, str], models: list[str], **overrides: Any) -> dict[str, Any]:
    """Flow parameters for a grid that trains in seconds: one epoch of two crops per track (as `make demo`
    takes one), not one crop per clip the track holds (30 at 1 s)."""
    grid = {"data": str(data), "models": models, "clip_seconds": [1.0], "seeds": [0], "epochs": 1, "crops_per_track": 2}
    return {**grid, "workers": 2, **paths, **overrides}


def latest_run(paths: dict[str, str]) -> Path:
    """The newest run's own folder, through the runs folder's `latest` link."""
    return (Path(paths["out"]) / "latest").resolve()


def run_folders(paths: dict[str, str]) -> list[Path]:
    """Every run's own folder that holds a summary (the `latest` link left out)."""
    return [path.parent for path in Path(paths["out"]).glob("*/summary.json") if not path.parent.is_symlink()]


def read_summary(paths: dict[str, str]) -> dict[str, Any]:
    return json.loads((latest_run(paths) / "summary.json").read_text())


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {cell["model"]: cell["status"] for cell in summary["cells"]}


def task_run_states(flow_run_id: str, expected: set[str], timeout_s: float = 90.0) -> dict[str, str]:
    """Task run name -> final state name of the latest run of each name, read back from the Prefect API.

    Task run states reach the API as events processed in the background, so read until every `expected`
    name has a final state (bounded: the test fails if they never arrive).
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            )
        states = {run.name: run.state.name for run in runs if run.state is not None and run.state.is_final()}
        if expected <= set(states) or time.monotonic() > deadline:
            return states
        time.sleep(1.0)


def flow_run_state(flow_run_id: str) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.type.value


def test_full_tiny_run_completes_with_every_cell(
    prefect_api: str, synthetic_folder: Path, run_paths: dict[str, str]
) -> None:
    from genreflow.flows.pipeline import genreflow_flow

    models = ["baseline", "cnn", "rnn", "crnn"]  # every clip length of a grid: tests/flows/test_grid.py
    summary = genreflow_flow(**tiny_grid(synthetic_folder, run_paths, models))

    assert summary["state"] == "Completed"
    assert read_summary(run_paths) == summary
    run_dir = Path(summary["run_dir"])
    assert run_dir == latest_run(run_paths) and run_dir.parent == Path(run_paths["out"]).resolve()
    assert run_dir.name == summary["flow_run_name"] and run_dir.name.startswith(f"{synthetic_folder.name}-")
    assert {(cell["model"], cell["clip_seconds"]) for cell in summary["cells"]} == {(m, 1.0) for m in models}
    assert all(cell["status"] == "trained" and 0.0 <= cell["track_accuracy"] <= 1.0 for cell in summary["cells"])
    results = json.loads((run_dir / "results.json").read_text())["cells"]
    assert len(results) == 4
    assert flow_run_state(summary["flow_run_id"]) == "COMPLETED"
    expected = {"train-cnn-1s-seed0", "evaluate-crnn-1s-seed0", "extract-batch-000"}
    assert expected <= set(task_run_states(summary["flow_run_id"], expected))
    assert (run_dir / "report.html").is_file()


def test_failed_cell_fails_the_run_and_rerun_redoes_only_it(
    prefect_api: str, synthetic_folder: Path, run_paths: dict[str, str], faulty_flow: tuple[Any, Path]
) -> None:
    genreflow_flow, fault = faulty_flow
    parameters = tiny_grid(synthetic_folder, run_paths, ["baseline", "faulty"])

    first = genreflow_flow(**parameters, return_state=True)
    assert first.is_failed()
    assert statuses(read_summary(run_paths)) == {"baseline": "trained", "faulty": "failed"}
    assert "injected fault" in read_summary(run_paths)["cells"][1]["error"]

    fault.unlink()
    second = genreflow_flow(**parameters, return_state=True)
    assert second.is_completed()
    summary = read_summary(run_paths)
    assert statuses(summary) == {"baseline": "reused", "faulty": "trained"}
    states = task_run_states(summary["flow_run_id"], {"train-baseline-1s-seed0", "train-faulty-1s-seed0"})
    assert states["train-baseline-1s-seed0"] == "Cached"
    assert states["train-faulty-1s-seed0"] == "Completed"
    assert not any(name.startswith("extract-batch") for name in states)  # the store was complete


def test_prefect_flow_run_retry_reexecutes_only_the_failed_cell(
    prefect_api: str, synthetic_folder: Path, run_paths: dict[str, str], faulty_flow: tuple[Any, Path]
) -> None:
    genreflow_flow, fault = faulty_flow
    failed = genreflow_flow(**tiny_grid(synthetic_folder, run_paths, ["baseline", "faulty"]), return_state=True)
    flow_run_id = str(failed.state_details.flow_run_id)
    fault.unlink()

    retry = subprocess.run(
        [sys.executable, "-m", "prefect", "flow-run", "retry", flow_run_id, "--entrypoint", FAULTY_ENTRYPOINT],
        cwd=REPO_ROOT,
        env=_subprocess_env(prefect_api),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert flow_run_state(flow_run_id) == "COMPLETED"
    summary = read_summary(run_paths)
    assert summary["flow_run_id"] == flow_run_id
    assert statuses(summary) == {"baseline": "reused", "faulty": "trained"}


def test_sigkill_during_training_then_rerun_reuses_finished_cells(
    prefect_api: str, synthetic_folder: Path, run_paths: dict[str, str]
) -> None:
    command = [
        sys.executable, "-m", "genreflow.cli", "run", "--data", str(synthetic_folder), "--models", "baseline", "cnn",
        "--clip-seconds", "1", "--epochs", "2", "--crops-per-track", "2", "--workers", "2", "--train-slots", "1",
        "--store", run_paths["store"], "--out", run_paths["out"], "--cache", run_paths["cache"],
    ]  # fmt: skip
    killed = subprocess.Popen(
        command, cwd=REPO_ROOT, env=_subprocess_env(prefect_api), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    _wait_for_line(killed, "training cnn")  # one slot: the baseline has finished
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert run_folders(run_paths) == []

    rerun = subprocess.run(
        command, cwd=REPO_ROOT, env=_subprocess_env(prefect_api), capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert statuses(read_summary(run_paths)) == {"baseline": "reused", "cnn": "trained"}
    assert "reused" in rerun.stdout and "trained" in rerun.stdout
    store = FeatureSet.open(run_paths["store"], FeatureConfig())
    assert len(store.tracks()) + len(store.quarantined()) == len(list(synthetic_folder.glob("*/*.wav")))
    assert len(run_folders(run_paths)) == 1  # the killed run wrote none


def test_new_track_invalidates_training_and_unchanged_data_reuses_it(
    prefect_api: str, synthetic_folder: Path, run_paths: dict[str, str], tmp_path: Path
) -> None:
    from genreflow.flows.pipeline import genreflow_flow

    data = tmp_path / "collection"
    shutil.copytree(synthetic_folder, data)
    parameters = tiny_grid(data, run_paths, ["baseline"])
    first = genreflow_flow(**parameters)
    assert statuses(first) == {"baseline": "trained"}

    genre_folder = sorted(path for path in data.iterdir() if path.is_dir())[0]
    source = sorted(genre_folder.glob("*.wav"))[0]
    (genre_folder / f"{genre_folder.name}.00999.wav").write_bytes(source.read_bytes()[:-2000] + bytes(2000))
    second = genreflow_flow(**parameters)
    run_record = json.loads((latest_run(run_paths) / "run.json").read_text())
    assert run_record["extraction"]["extracted"] == 1
    assert statuses(second) == {"baseline": "trained"}

    shutil.copy(source, genre_folder / f"{genre_folder.name}.00998.wav")  # known content under a new name
    copied = genreflow_flow(**parameters)
    assert json.loads((latest_run(run_paths) / "run.json").read_text())["extraction"]["extracted"] == 0
    assert statuses(copied) == {"baseline": "trained"}  # a new track of the collection: its data changed

    third = genreflow_flow(**parameters)
    assert statuses(third) == {"baseline": "reused"}
    assert json.loads((latest_run(run_paths) / "run.json").read_text())["extraction"]["extracted"] == 0
    assert len({first["run_dir"], second["run_dir"], third["run_dir"]}) == 3  # each run keeps its own folder
    assert (Path(first["run_dir"]) / "report.html").is_file()


def test_a_run_learns_from_exactly_its_collection_whatever_else_the_store_holds(
    prefect_api: str, synthetic_folder: Path, run_paths: dict[str, str], tmp_path: Path
) -> None:
    from genreflow.flows.pipeline import genreflow_flow

    other = tmp_path / "other"  # two genres of another collection, under names the first one also uses
    for genre in sorted(path.name for path in synthetic_folder.iterdir() if path.is_dir())[:2]:
        shutil.copytree(synthetic_folder / genre, other / genre)
        for path in (other / genre).glob("*.wav"):
            path.write_bytes(path.read_bytes()[:-2000] + bytes(2000))  # the same names, other content
    genreflow_flow(**tiny_grid(synthetic_folder, run_paths, ["baseline"]))

    summary = genreflow_flow(**tiny_grid(other, run_paths, ["baseline"]))

    [result] = json.loads((Path(summary["run_dir"]) / "results.json").read_text())["cells"]
    assert result["genres"] == sorted(path.name for path in other.iterdir())
    assert sum(result["n_tracks"].values()) == len(list(other.glob("*/*.wav")))
    assert result["collection"] == str(other.resolve())
    run_record = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    assert run_record["data"]["collection"] == str(other.resolve()) and run_record["data"]["tracks"] == 6
    assert {record.root for record in Store.open(run_paths["store"]).collections()} == {
        str(synthetic_folder.resolve()),
        str(other.resolve()),
    }


def _subprocess_env(api_url: str) -> dict[str, str]:
    """The test's temporary API for a child process, and the fault switch it inherits."""
    return {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _wait_for_line(process: subprocess.Popen[str], needle: str) -> None:
    """Read the child's output until `needle` shows (the child is then mid-way through that step)."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} never appeared; output:\n{''.join(seen[-50:])}")
