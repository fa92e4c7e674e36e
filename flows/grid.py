"""The training grid, fanned out: one Prefect task run per (model, clip length, seed) cell trained on a Dask
worker, then one evaluation per trained cell, many cells at once.

Cores are budgeted: a LocalCluster has one single-threaded worker per training slot (`--train-slots`), and a
cell gives TensorFlow its machine's cores divided by the workers on that machine, so slots x threads = cores.
At most as many cells are in flight as there are workers, the next one submitted as one finishes: Dask would
otherwise queue two long cells on one worker while another idles (docs/design.md).

A failed cell (an exception, a worker killed or out of memory) is recorded with its reason and the others go
on; a task run whose worker died is marked Crashed, never left Running. Results persist under the cache (a
folder or any fsspec URL, models included) with keys from `flows.cache_keys`, so a later run or `prefect
flow-run retry` redoes only what failed or changed; each key is locked while its task runs (flows/locks.py).
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.filesystems import RemoteFileSystem, WritableFileSystem
from prefect.states import Crashed, State
from prefect_dask import DaskTaskRunner

from genreflow.core import cell_name
from genreflow.flows.cache_keys import code_version, evaluation_version, stable_hash
from genreflow.flows.locks import cache_lock_manager
from genreflow.models.directory import RESULT_FILE, is_remote, local_copy, publish
from genreflow.models.registry import ModelSpec, check_clip, spec
from genreflow.tasks.cluster import cell_threads, default_worker_count, local_cluster, workers_per_host
from genreflow.tasks.training.train import TrainingData, cell_precision

# Settings that change what a cell learns; everything else (paths, threads) leaves its result valid. The
# data's identity enters as its data version (feature configuration and every track's id, label and content).
KEY_PARAMETERS = ("model", "clip_seconds", "seed", "split", "epochs", "batch_size", "crops_per_track", "precision")


@dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    model: str
    clip_seconds: float
    seed: int

    @property
    def name(self) -> str:
        return cell_name(self.model, self.clip_seconds, self.seed)


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


def training_key(parameters: dict[str, Any]) -> str:
    """Cache key of a training: its learning-relevant inputs, its data's version and the code version of
    what it runs."""
    identity = {name: parameters[name] for name in KEY_PARAMETERS}
    identity["model"] = parameters["model"].name
    identity["precision"] = cell_precision(parameters["precision"], parameters["model"])  # auto: as resolved here
    identity["data_version"] = parameters["data"].data_version
    identity["code_version"] = code_version(parameters["model"].module)
    return f"train-{stable_hash(identity)}"


def _training_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return training_key(parameters)


def _evaluation_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """An evaluation is redone when its model, its data or the evaluation code changed."""
    identity = {name: parameters[name] for name in ("model_dir", "data_version")}
    return f"evaluate-{stable_hash({**identity, 'code_version': evaluation_version()})}"


@task(name="train")
def train_task(
    data: TrainingData,
    model: ModelSpec,
    clip_seconds: float,
    seed: int,
    split: str,
    epochs: int,
    batch_size: int,
    crops_per_track: int | None,
    precision: str,
    models_root: str,
    workers_on_hosts: dict[str, int],
) -> dict[str, Any]:
    """Train one cell into a model directory named by its cache key (local or behind a URL): where it is, and
    where and when it was trained."""
    from distributed import get_worker

    from genreflow.tasks.training.train import train_cell

    parameters = locals().copy()
    destination = f"{models_root.rstrip('/')}/{training_key(parameters)}"
    threads = cell_threads(workers_on_hosts)
    started = _now()
    get_run_logger().info(
        "training %s %gs seed %d into %s (%d threads)", model.name, clip_seconds, seed, destination, threads
    )
    with _staging(destination) as model_dir:
        train_cell(
            data, model, clip_seconds, seed, split, model_dir,
            epochs=epochs, batch_size=batch_size, crops_per_track=crops_per_track, threads=threads,
            precision=precision,
        )  # fmt: skip
    try:
        worker = f"worker {get_worker().name} ({get_worker().address})"
    except ValueError:
        worker = "the flow's process"
    return {
        "model_dir": destination,
        "worker": worker,
        "started": started,
        "finished": _now(),
        "peak_rss_mb": _peak_rss_mb(),
    }


@contextmanager
def _staging(destination: str) -> Iterator[Path]:
    """Where to train: the destination itself on local disk (emptied of a killed run's leftovers), or a local
    folder published to the destination's URL once training is done."""
    if not is_remote(destination):
        shutil.rmtree(destination, ignore_errors=True)
        yield Path(destination)
        return
    with tempfile.TemporaryDirectory(prefix="genreflow-cell-") as scratch:
        yield Path(scratch)
        publish(Path(scratch), destination)


@task(name="evaluate")
def evaluate_task(model_dir: str, store: str, data_version: str) -> dict[str, Any]:
    """Evaluate a trained cell on its test tracks; the result JSON of docs/CONTRACTS.md (saved beside the model)."""
    from genreflow.tasks.evaluation.evaluate import evaluate_cell

    with local_copy(model_dir) as local:
        result = evaluate_cell(local, store)
        if is_remote(model_dir):
            import fsspec

            filesystem, path = fsspec.core.url_to_fs(model_dir)
            filesystem.put_file(str(local / RESULT_FILE), f"{path}/{RESULT_FILE}")
    result["model_dir"] = model_dir
    track = result["metrics"]["track"]
    get_run_logger().info("track accuracy %.3f, macro-F1 %.3f", track["accuracy"], track["macro_f1"])
    return result


def _peak_rss_mb() -> float:
    """The largest resident memory this process (the worker) has had so far: what a cell's worker needs."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _error_of(state: State) -> str:
    return state.message or state.name or "failed"


@dataclass(frozen=True)
class CacheLocation:
    """Where results and trained models persist (a folder, or a URL with a saved fsspec block), and the local
    folder for what must stay on this machine (the synthetic collection's audio)."""

    result_storage: Path | WritableFileSystem
    models_root: str
    local_root: Path

    @classmethod
    def for_run(cls, cache: str, out_dir: Path) -> CacheLocation:
        """A local cache holds everything; a URL cache holds results and models, the audio stays under `out_dir`."""
        if "://" not in cache:
            root = Path(cache).resolve()
            return cls(root / "results", str(root / "models"), root)
        base = cache.rstrip("/")
        block = RemoteFileSystem(basepath=f"{base}/results")
        block.save(f"genreflow-cache-{stable_hash({'url': cache})}", overwrite=True)  # Prefect needs it saved
        return cls(block, f"{base}/models", out_dir)


@dataclass(frozen=True)
class GridSettings:
    """What every cell of one run shares."""

    data: dict[str, TrainingData]  # by feature set: each cell trains on its model's
    split: str
    epochs: int
    batch_size: int
    crops_per_track: int | None
    precision: str
    cache: CacheLocation
    cache_url: str  # the --cache the run was given: its locks are named after it


def locked_policy(cache_key_fn: Any, cache: str) -> CacheKeyFnPolicy:
    """A cache policy whose key is locked while its task runs (SERIALIZABLE), so a second run waits for the
    first and then reuses its result instead of doing the same work alongside it."""
    return CacheKeyFnPolicy(cache_key_fn=cache_key_fn).configure(
        isolation_level="SERIALIZABLE", lock_manager=cache_lock_manager(cache)
    )


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
        # JSON, not Prefect's default pickle: a cache's files are read back as data, never run as code.
        options = {"result_storage": settings.cache.result_storage, "persist_result": True, "result_serializer": "json"}
        self.trainer = train_task.with_options(
            cache_policy=locked_policy(_training_cache_key, settings.cache_url), **options
        )
        self.evaluator = evaluate_task.with_options(
            cache_policy=locked_policy(_evaluation_cache_key, settings.cache_url), **options
        )

    @property
    def slots(self) -> int:
        return sum(self.workers_on_hosts.values())

    def submit_training(self, cell: Cell) -> Any:
        grid, model = self.settings, spec(cell.model)
        parameters = {
            "data": grid.data[model.features], "model": model, "clip_seconds": cell.clip_seconds, "seed": cell.seed,
            "split": grid.split, "epochs": grid.epochs, "batch_size": grid.batch_size,
            "crops_per_track": grid.crops_per_track, "precision": grid.precision,
            "models_root": grid.cache.models_root, "workers_on_hosts": self.workers_on_hosts,
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
    reasons = {}
    for cell in cells:
        try:
            check_clip(cell.model, cell.clip_seconds, spec(cell.model).feature_config)
        except ValueError as error:
            reasons[cell] = str(error)
    return reasons


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
