"""The grid fanned out on Dask: cells overlap on the workers of a real LocalCluster, a rerun reuses them, and a
worker killed in the middle of a cell loses nothing that looks complete (real Prefect API, Dask, Zarr, TF)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from genreflow.core import PREFECT_EXTRA_LOGGERS
from tests.support.dask_cluster import running_dask_cluster
from tests.support.events import event_steps
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


def saved_epochs(checkpoints: Path) -> int:
    """The most epochs any checkpoint under `checkpoints` holds (0 where none holds any yet)."""
    from genreflow.tasks.training.checkpoint import STATE_FILE, CheckpointError, decode_state

    epochs = [0]
    for state in checkpoints.glob(f"*/{STATE_FILE}"):
        try:
            epochs.append(decode_state(state.read_bytes(), state.parent.name).epochs_done)
        except (OSError, CheckpointError):  # replaced or removed while being read
            continue
    return max(epochs)


def kill_the_training_worker_after(address: str, checkpoints: Path, epochs: int, killed: list[int]) -> None:
    """Once a checkpoint under `checkpoints` holds `epochs` epochs, SIGKILL the worker training: the epochs
    the checkpoint held at that moment go to `killed`."""
    from distributed import Client

    with Client(address, timeout=10) as client:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and saved_epochs(checkpoints) < epochs:
            time.sleep(0.02)
        busy = [worker for worker, keys in client.processing().items() if any("train" in str(k) for k in keys)]
        pids = client.run(os.getpid, workers=busy[:1])
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
            killed.append(saved_epochs(checkpoints))


def flow_run_messages(state: Any) -> list[str]:
    """Every log line the API holds for the flow run that ended in `state` (its workers' task runs included)."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    flow_run = LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
    with get_client(sync_client=True) as client:
        return [log.message for log in client.read_logs(log_filter=LogFilter(flow_run_id=flow_run))]


def progress_of(key: str) -> float:
    """The latest value of the progress artifact `key`."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    with get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key]))
        )
    return float(latest.data)


def trained_weights(model_dir: Path) -> list[Any]:
    import keras

    return keras.saving.load_model(model_dir / "fold-0" / "model.keras").get_weights()


def test_a_worker_killed_mid_cell_is_replaced_and_the_cell_resumes_from_its_last_epoch(
    prefect_api: str, music: Path, tmp_path: Path
) -> None:
    """Dask gives a task whose worker died to another worker (up to `allowed-failures` times): the cell continues
    there from its checkpoint, its lock released by the dead process, and ends with the model an uninterrupted
    training makes; its learning curves hold each epoch once."""
    import numpy as np

    from genreflow.flows.pipeline import genreflow_flow

    grid = {**GRID, "models": ["cnn"], "clip_seconds": [1.0], "epochs": 6}
    from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS, temporary_settings

    extra_loggers = {PREFECT_LOGGING_EXTRA_LOGGERS: PREFECT_EXTRA_LOGGERS}  # as `genreflow run` sets them
    with running_dask_cluster(tmp_path / "dask", n_workers=2) as address, temporary_settings(extra_loggers):
        parameters = {"data": str(music), **grid, **paths(tmp_path), "dask_address": address}
        killed: list[int] = []
        checkpoints = tmp_path / "cache" / "checkpoints"
        killer = threading.Thread(target=kill_the_training_worker_after, args=(address, checkpoints, 2, killed))
        killer.start()
        first = genreflow_flow(**parameters, return_state=True)
        killer.join()
        second = genreflow_flow(**parameters)
        whole = genreflow_flow(**{**parameters, "cache": str(tmp_path / "uninterrupted")})

    assert killed and 2 <= killed[0] < 6, f"no worker was killed mid-cell: nothing was tested ({killed})"
    messages = flow_run_messages(first)
    assert f"resumed cnn-1s-seed0 at fold 0, epoch {killed[0] + 1} of 6" in messages
    assert [m for m in messages if m.startswith("epoch ")][-1].startswith("epoch 6 of 6: {'accuracy'")
    assert progress_of("training-progress-cnn-1s-seed0") == 100.0, [m for m in messages if "epoch" in m or "train" in m]
    assert task_runs_left_running() == []
    assert [cell["status"] for cell in first.result()["cells"]] == ["trained"]
    assert [cell["status"] for cell in second["cells"]] == ["reused"]
    resumed_dir = Path(first.result()["cells"][0]["result_path"]).parent
    whole_dir = Path(whole["cells"][0]["result_path"]).parent
    for mine, theirs in zip(trained_weights(resumed_dir), trained_weights(whole_dir), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert not list(checkpoints.iterdir()), "the finished cell's checkpoint was left behind"
    epochs_run = json.loads((resumed_dir / "fold-0" / "fold.json").read_text())["epochs_run"]
    (curves,) = (tmp_path / "cache" / "tensorboard").glob("cnn-1s-seed0-*/fold-0/validation")
    assert event_steps(curves) == {"epoch_loss": list(range(epochs_run)), "epoch_accuracy": list(range(epochs_run))}
