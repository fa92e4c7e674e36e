"""The training grid: one Prefect task per (model, clip length, seed), then one evaluation per trained model.

Cells run one at a time, each with every core given to TensorFlow, so two cores are never oversubscribed.
A failed cell is recorded and the others go on; results are persisted under the cache folder with keys from
`flows.cache_keys`, so a later run (or `prefect flow-run retry`) re-executes only what failed or changed.
Each cell's cache key is locked while it runs (flows/locks.py): two runs never train the same cell at once,
and the second reuses what the first trained.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.filesystems import RemoteFileSystem, WritableFileSystem
from prefect.states import State

from genreflow.core import cell_name
from genreflow.flows.cache_keys import code_version, evaluation_version, stable_hash
from genreflow.flows.locks import cache_lock_manager
from genreflow.tasks.training.train import TrainingData

# Settings that change what a cell learns; everything else (paths, threads) leaves its result valid. The
# data's identity enters as its data version (feature configuration and every track's id, label and content).
KEY_PARAMETERS = ("model", "clip_seconds", "seed", "split", "epochs", "crops_per_track")


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
    """What the run's summary says about one cell."""

    model: str
    clip_seconds: float
    seed: int
    status: str  # trained | reused | failed
    seconds: float
    track_accuracy: float | None = None
    error: str | None = None
    result_path: str | None = None
    excluded: int = 0  # tracks left out because they are shorter than the clip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_module(model: str) -> str:
    """The module that defines a model's builder, named by the registry."""
    from genreflow.models.registry import spec

    return spec(model).module


def training_key(parameters: dict[str, Any]) -> str:
    """Cache key of a training: its learning-relevant inputs, its data's version and the code version of
    what it runs."""
    identity = {name: parameters[name] for name in KEY_PARAMETERS}
    identity["data_version"] = parameters["data"].data_version
    identity["code_version"] = code_version(model_module(parameters["model"]))
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
    model: str,
    clip_seconds: float,
    seed: int,
    split: str,
    epochs: int,
    crops_per_track: int | None,
    models_root: str,
) -> str:
    """Train one cell into a model folder named by its cache key; returns that folder."""
    from genreflow.tasks.training.train import train_cell

    parameters = locals().copy()
    model_dir = Path(models_root) / training_key(parameters)
    shutil.rmtree(model_dir, ignore_errors=True)  # leftovers of a run killed mid-training
    get_run_logger().info("training %s %gs seed %d into %s", model, clip_seconds, seed, model_dir)
    train_cell(
        data, model, clip_seconds, seed, split, model_dir,
        epochs=epochs, crops_per_track=crops_per_track, threads=os.cpu_count(),
    )  # fmt: skip
    return str(model_dir)


@task(name="evaluate")
def evaluate_task(model_dir: str, store: str, data_version: str) -> dict[str, Any]:
    """Evaluate a trained cell on its test tracks; the result JSON of docs/CONTRACTS.md."""
    from genreflow.tasks.evaluation.evaluate import evaluate_cell

    result = evaluate_cell(Path(model_dir), store)
    track = result["metrics"]["track"]
    get_run_logger().info(
        "%s: track accuracy %.3f, macro-F1 %.3f", Path(model_dir).name, track["accuracy"], track["macro_f1"]
    )
    return result


def _error_of(state: State) -> str:
    return state.message or state.name or "failed"


@dataclass(frozen=True)
class CacheLocation:
    """Where results persist (a folder, or a saved fsspec block for a URL) and the local folder for the rest."""

    result_storage: Path | WritableFileSystem
    local_root: Path  # trained models and the synthetic collection's audio

    @property
    def models_root(self) -> Path:
        return self.local_root / "models"

    @classmethod
    def for_run(cls, cache: str, out_dir: Path) -> CacheLocation:
        """A local cache holds the models too; with a URL cache the models stay on local disk under `out_dir`
        (the folder that holds the runs' folders)."""
        if "://" not in cache:
            root = Path(cache).resolve()
            return cls(root / "results", root)
        block = RemoteFileSystem(basepath=cache.rstrip("/") + "/results")
        block.save(f"genreflow-cache-{stable_hash({'url': cache})}", overwrite=True)  # Prefect needs it saved
        return cls(block, out_dir)


@dataclass(frozen=True)
class GridSettings:
    """What every cell of one run shares."""

    data: TrainingData
    split: str
    epochs: int
    crops_per_track: int | None
    cache: CacheLocation
    cache_url: str  # the --cache the run was given: its locks are named after it


def locked_policy(cache_key_fn: Any, cache: str) -> CacheKeyFnPolicy:
    """A cache policy whose key is locked while its task runs (SERIALIZABLE), so a second run waits for the
    first and then reuses its result instead of doing the same work alongside it."""
    return CacheKeyFnPolicy(cache_key_fn=cache_key_fn).configure(
        isolation_level="SERIALIZABLE", lock_manager=cache_lock_manager(cache)
    )


def run_cell(cell: Cell, grid: GridSettings) -> tuple[CellOutcome, dict[str, Any] | None]:
    """Train then evaluate one cell; failures become an outcome, never an exception."""
    started = time.perf_counter()
    # JSON, not Prefect's default pickle: a cache folder's files are read back as data, never run as code.
    options = {"result_storage": grid.cache.result_storage, "persist_result": True, "result_serializer": "json"}
    trainer = train_task.with_options(
        task_run_name=f"train-{cell.name}", cache_policy=locked_policy(_training_cache_key, grid.cache_url), **options
    )
    evaluator = evaluate_task.with_options(
        task_run_name=f"evaluate-{cell.name}",
        cache_policy=locked_policy(_evaluation_cache_key, grid.cache_url),
        **options,
    )
    trained = trainer(
        grid.data, cell.model, cell.clip_seconds, cell.seed, grid.split, grid.epochs, grid.crops_per_track,
        str(grid.cache.models_root), return_state=True,
    )  # fmt: skip
    outcome = CellOutcome(cell.model, cell.clip_seconds, cell.seed, "failed", 0.0)
    result = None
    if trained.is_completed():
        evaluated = evaluator(trained.result(), grid.data.store, grid.data.data_version, return_state=True)
        if evaluated.is_completed():
            result = evaluated.result()
            outcome.status = "reused" if trained.name == "Cached" else "trained"
            outcome.track_accuracy = result["metrics"]["track"]["accuracy"]
            outcome.result_path = str(Path(trained.result()) / "result.json")
            outcome.excluded = len(result["excluded"])
        else:
            outcome.error = _error_of(evaluated)
    else:
        outcome.error = _error_of(trained)
    outcome.seconds = round(time.perf_counter() - started, 2)
    return outcome, result


def run_grid(cells: list[Cell], grid: GridSettings) -> tuple[list[CellOutcome], list[dict[str, Any]]]:
    """Every cell in turn, with a progress artifact the UI shows while the grid runs."""
    logger = get_run_logger()
    progress = create_progress_artifact(0.0, key="genreflow-training-progress", description="Training grid")
    outcomes, results = [], []
    for done, cell in enumerate(cells, start=1):
        outcome, result = run_cell(cell, grid)
        outcomes.append(outcome)
        if result is not None:
            results.append(result)
        logger.info("cell %d/%d %s: %s in %.1fs", done, len(cells), cell.name, outcome.status, outcome.seconds)
        if outcome.excluded:
            logger.warning("%s: %d track(s) shorter than the clip were left out", cell.name, outcome.excluded)
        update_progress_artifact(progress, 100.0 * done / len(cells), description=f"{done}/{len(cells)} cells")
    return outcomes, results
