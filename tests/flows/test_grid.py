"""The grid fanned out on Dask: cells overlap on the workers of a real LocalCluster, a rerun reuses them, and a
worker killed in the middle of a cell loses nothing that looks complete (real Prefect API, Dask, Zarr, TF)."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.dask_cluster import running_dask_cluster
from tests.support.music import tiny_collection

GRID = {"models": ["baseline", "cnn"], "clip_seconds": [1.0, 2.0], "seeds": [0], "epochs": 1, "crops_per_track": 2}


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_collection(tmp_path_factory.mktemp("music"))


def paths(tmp_path: Path) -> dict[str, str]:
    return {"store": str(tmp_path / "store.zarr"), "out": str(tmp_path / "runs"), "cache": str(tmp_path / "cache")}


def interval(cell: dict[str, Any]) -> tuple[float, float]:
    return datetime.fromisoformat(cell["started"]).timestamp(), datetime.fromisoformat(cell["finished"]).timestamp()


def test_cells_train_at_once_on_two_workers_and_a_rerun_reuses_them(
    prefect_api: str, music: Path, tmp_path: Path
) -> None:
    from genreflow.flows.pipeline import genreflow_flow

    parameters = {"data": str(music), **GRID, **paths(tmp_path), "workers": 2, "train_slots": 2}
    first = genreflow_flow(**parameters)

    assert [cell["status"] for cell in first["cells"]] == ["trained"] * 4
    assert len({cell["worker"] for cell in first["cells"]}) == 2
    intervals = sorted(interval(cell) for cell in first["cells"])
    overlapping = [(a, b) for a, b in zip(intervals, intervals[1:], strict=False) if b[0] < a[1]]
    assert overlapping, f"no two cells trained at the same time: {intervals}"
    second = genreflow_flow(**parameters)
    assert [cell["status"] for cell in second["cells"]] == ["reused"] * 4
    assert [cell["track_accuracy"] for cell in second["cells"]] == [cell["track_accuracy"] for cell in first["cells"]]


def task_runs_left_running() -> list[str]:
    """Names of the API's task runs still in state Running: none may be, once their flow runs have ended."""
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType
    from prefect.client.schemas.objects import StateType

    running = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING])))
    with get_client(sync_client=True) as client:
        return [task_run.name for task_run in client.read_task_runs(task_run_filter=running)]


def kill_a_worker_while_it_trains(address: str, model: str, killed: list[str]) -> None:
    """Wait until a worker of the scheduler at `address` is training `model`, let it train a moment, SIGKILL it."""
    from distributed import Client

    with Client(address, timeout=10) as client:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            busy = {worker: keys for worker, keys in client.processing().items() if any(model in str(k) for k in keys)}
            if busy:
                worker = next(iter(busy))
                time.sleep(1.0)
                pids = client.run(os.getpid, workers=[worker])
                os.kill(pids[worker], signal.SIGKILL)
                killed.append(worker)
                return
            time.sleep(0.05)


def test_a_worker_killed_mid_cell_is_replaced_the_cell_retried_and_nothing_half_written_reused(
    prefect_api: str, music: Path, tmp_path: Path
) -> None:
    """Dask gives a task whose worker died to another worker (up to `allowed-failures` times): the cell is
    trained again from scratch there, its lock released by the dead process, and ends trained."""
    from genreflow.flows.pipeline import genreflow_flow

    grid = {**GRID, "models": ["cnn"], "epochs": 4}
    with running_dask_cluster(tmp_path / "dask", n_workers=2) as address:
        parameters = {"data": str(music), **grid, **paths(tmp_path), "dask_address": address}
        killed: list[str] = []
        killer = threading.Thread(target=kill_a_worker_while_it_trains, args=(address, "train", killed))
        killer.start()
        first = genreflow_flow(**parameters)
        killer.join()
        second = genreflow_flow(**parameters)

    assert killed, "no worker was killed: nothing was tested"
    assert task_runs_left_running() == []
    assert [cell["status"] for cell in first["cells"]] == ["trained"] * 2
    assert [cell["status"] for cell in second["cells"]] == ["reused"] * 2
    for cell in first["cells"]:
        model_dir = Path(cell["result_path"]).parent
        assert (model_dir / "cell.json").is_file() and (model_dir / "fold-0" / "model.keras").is_file()
