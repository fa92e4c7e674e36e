"""The training grid, fanned out: every (model, clip length, seed) cell's `train` then `evaluate` task run
(flows/cells.py) on Dask workers, many cells at once.

Cores are budgeted: a LocalCluster has one single-threaded worker per training slot (`--train-slots`), and a
cell gives TensorFlow its machine's cores divided by the workers on that machine, so slots x threads = cores.
At most as many cells are in flight as there are workers, the next one submitted as one finishes: Dask would
otherwise queue two long cells on one worker while another idles (docs/design.md).

A failed cell (an exception, a worker killed or out of memory) is recorded with its reason and the others go
on; a task run whose worker died is marked Crashed, never left Running.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from prefect import get_client, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.states import Crashed, State
from prefect_dask import DaskTaskRunner

from genreflow.core import TrainingSettings
from genreflow.flows.cells import CacheLocation, Cell, cell_tasks
from genreflow.models.directory import RESULT_FILE
from genreflow.models.registry import spec
from genreflow.tasks.cluster import default_worker_count, local_cluster, workers_per_host
from genreflow.tasks.training.train import TrainingData


@dataclass
class CellOutcome:
    """What the run's summary says about one cell: how it ended, and where and when it was trained."""

    model: str
    clip_seconds: float
    seed: int
    status: str  # trained | reused | failed | skipped (a clip its model cannot take)
    seconds: float
    track_accuracy: float | None = None
    error: str | None = None
    result_path: str | None = None
    excluded: int = 0  # tracks left out because they are shorter than the clip
    worker: str | None = None  # the Dask worker that trained it (for a reused cell, the one that did first)
    started: str | None = None
    finished: str | None = None
    peak_rss_mb: float | None = None  # the worker's peak memory when the cell was trained

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error_of(state: State) -> str:
    return state.message or state.name or "failed"


@dataclass(frozen=True)
class GridSettings:
    """What every cell of one run shares."""

    data: dict[str, TrainingData]  # by feature set: each cell trains on its model's
    split: str
    training: TrainingSettings
    cache: CacheLocation
    cache_url: str  # the --cache the run was given: its locks are named after it


CORES_PER_CELL = 2


def default_train_slots() -> int:
    """Cells trained at once on a LocalCluster: one per two cores, each with two threads. Measured (docs/
    benchmarks.md): the same clips per second as one cell per core, half the memory, and a grid's last long cell
    runs on two threads instead of one."""
    return max(1, default_worker_count() // CORES_PER_CELL)


@contextmanager
def training_runner(dask_address: str | None, slots: int | None) -> Iterator[DaskTaskRunner]:
    """Prefect's Dask task runner on the given scheduler, or on a LocalCluster of `slots` workers."""
    if dask_address:
        with DaskTaskRunner(address=dask_address) as runner:
            yield runner
        return
    with (
        local_cluster(slots or default_train_slots()) as cluster,
        DaskTaskRunner(address=cluster.scheduler_address) as runner,
    ):
        yield runner


@dataclass
class _InFlight:
    """A cell's task run on Dask: which cell, which stage, and its training's outcome so far."""

    cell: Cell
    stage: str  # train | evaluate
    started: float
    trained: dict[str, Any] | None = None
    reused: bool = False


class Grid:
    """Submits the cells' tasks to Dask, at most one per worker at a time, and collects their outcomes."""

    def __init__(self, settings: GridSettings, runner: DaskTaskRunner) -> None:
        self.settings = settings
        self.runner = runner
        self.workers_on_hosts = workers_per_host(runner.client)
        self.trainer, self.evaluator = cell_tasks(settings.cache, settings.cache_url)

    @property
    def slots(self) -> int:
        return sum(self.workers_on_hosts.values())

    def submit_training(self, cell: Cell) -> Any:
        grid, model = self.settings, spec(cell.model)
        parameters = {
            "data": grid.data[model.features], "model": model, "clip_seconds": cell.clip_seconds, "seed": cell.seed,
            "split": grid.split, "settings": grid.training, "cache_root": grid.cache.root,
            "workers_on_hosts": self.workers_on_hosts,
        }  # fmt: skip
        return self.runner.submit(self.trainer.with_options(task_run_name=f"train-{cell.name}"), parameters)

    def submit_evaluation(self, cell: Cell, model_dir: str) -> Any:
        data = self.settings.data[spec(cell.model).features]
        parameters = {"model_dir": model_dir, "store": data.store, "data_version": data.data_version}
        return self.runner.submit(self.evaluator.with_options(task_run_name=f"evaluate-{cell.name}"), parameters)


def run_grid(
    cells: list[Cell], grid: GridSettings, runner: DaskTaskRunner
) -> tuple[list[CellOutcome], list[dict[str, Any]]]:
    """Every cell on Dask, as many at once as there are workers; outcomes in the order of `cells`."""
    from distributed import wait

    logger = get_run_logger()
    progress = create_progress_artifact(0.0, key="genreflow-training-progress", description="Training grid")
    work = Grid(grid, runner)
    outcomes: dict[Cell, CellOutcome] = {cell: _skipped(cell, reason) for cell, reason in _untakeable(cells).items()}
    for cell, outcome in outcomes.items():
        logger.info("%s skipped: %s", cell.name, outcome.error)
    queue, in_flight = deque(cell for cell in cells if cell not in outcomes), {}
    logger.info("training %d cells on %d worker(s) at once", len(queue), work.slots)
    results: dict[Cell, dict[str, Any]] = {}
    while queue or in_flight:
        while queue and len(in_flight) < work.slots:
            cell = queue.popleft()
            in_flight[work.submit_training(cell)] = _InFlight(cell, "train", time.perf_counter())
        with runner.client.as_current():  # distributed.wait asks the current client
            done = wait([future.wrapped_future for future in in_flight], return_when="FIRST_COMPLETED").done
        for future in [future for future in in_flight if future.wrapped_future in done]:
            running = in_flight.pop(future)
            state = _settled(future)
            if running.stage == "train" and state.is_completed():
                running.trained, running.reused = state.result(), state.name == "Cached"
                in_flight[work.submit_evaluation(running.cell, running.trained["model_dir"])] = running
                running.stage = "evaluate"
                continue
            outcomes[running.cell] = _outcome(running, state)
            if state.is_completed():
                results[running.cell] = state.result()
            _report(logger, outcomes[running.cell], running.cell, len(outcomes), len(cells))
            update_progress_artifact(
                progress, 100.0 * len(outcomes) / len(cells), description=f"{len(outcomes)}/{len(cells)} cells"
            )
    return [outcomes[cell] for cell in cells], [results[cell] for cell in cells if cell in results]


def _untakeable(cells: list[Cell]) -> dict[Cell, str]:
    """Cells whose clip is shorter than their model takes (musicnn at 1 s), with the reason."""
    problems = {cell: spec(cell.model).clip_problem(cell.clip_seconds) for cell in cells}
    return {cell: problem for cell, problem in problems.items() if problem}


def _skipped(cell: Cell, reason: str) -> CellOutcome:
    return CellOutcome(cell.model, cell.clip_seconds, cell.seed, "skipped", 0.0, error=reason)


def _settled(future: Any) -> State:
    """A finished task run's final state. A task whose worker died (or that Dask gave up on) never reported one:
    its task run is marked Crashed with the reason, so that the UI never shows it Running for good."""
    try:
        state = future.wrapped_future.result()
    except BaseException as error:  # KilledWorker, CancelledError: Dask's own failures, outside Prefect's states
        state = Crashed(message=f"its Dask worker failed: {type(error).__name__}: {error}")
        with get_client(sync_client=True) as client:
            client.set_task_run_state(future.task_run_id, state, force=True)
    finally:
        future.wrapped_future.release()  # a held result is recomputed if its worker dies later
    return state


def _outcome(running: _InFlight, state: State) -> CellOutcome:
    cell = running.cell
    outcome = CellOutcome(
        cell.model, cell.clip_seconds, cell.seed, "failed", round(time.perf_counter() - running.started, 2)
    )
    if running.trained is not None:
        outcome.worker, outcome.started, outcome.finished, outcome.peak_rss_mb = (
            running.trained.get(key) for key in ("worker", "started", "finished", "peak_rss_mb")
        )
    if not state.is_completed():
        outcome.error = f"{running.stage}: {_error_of(state)}"
        return outcome
    result = state.result()
    outcome.status = "reused" if running.reused else "trained"
    outcome.track_accuracy = result["metrics"]["track"]["accuracy"]
    outcome.result_path = f"{running.trained['model_dir']}/{RESULT_FILE}"
    outcome.excluded = len(result["excluded"])
    return outcome


def _report(logger: Any, outcome: CellOutcome, cell: Cell, done: int, total: int) -> None:
    where = f" on {outcome.worker}" if outcome.worker and outcome.status == "trained" else ""
    logger.info("cell %d/%d %s: %s in %.1fs%s", done, total, cell.name, outcome.status, outcome.seconds, where)
    if outcome.excluded:
        logger.warning("%s: %d track(s) shorter than the clip were left out", cell.name, outcome.excluded)
    if outcome.error:
        logger.warning("%s failed: %s", cell.name, outcome.error)
