"""A grid cell's two Prefect tasks, `train` and `evaluate`, with the cache keys that make "rerun only what
failed" exact, and where their results persist.

A cell trains into a folder named by its cache key under the cache's models (a folder or any fsspec URL), so
any worker can train any cell and any run anywhere reuses it; `cell.json` is written last, so a half-trained
folder is never read as a model. Each key is locked while its task runs (flows/locks.py), so a second run waits
for the first and then reuses its result.

While a cell trains, its checkpoint (under the cache's checkpoints, same key) holds its finished folds and its
last epoch: whatever restarts the cell (Dask's rerun on another worker when one dies, `prefect flow-run
retry`, the same command again) continues from there. Its learning curves go to the cache's tensorboard
folder, and its progress to a Prefect progress artifact on the task run.
"""

from __future__ import annotations

import re
import resource
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.filesystems import RemoteFileSystem, WritableFileSystem

from genreflow.core import TrainingSettings, cell_name
from genreflow.flows.cache_keys import code_version, evaluation_version, stable_hash
from genreflow.flows.locks import cache_lock_manager
from genreflow.models.directory import RESULT_FILE, is_remote, local_copy, publish
from genreflow.models.precision import resolved_settings
from genreflow.models.spec import ModelSpec
from genreflow.tasks.cluster import cell_threads
from genreflow.tasks.training.checkpoint import Checkpoint
from genreflow.tasks.training.progress import EpochProgress, Tracking
from genreflow.tasks.training.train import TrainingData


@dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    model: str
    clip_seconds: float
    seed: int

    @property
    def name(self) -> str:
        return cell_name(self.model, self.clip_seconds, self.seed)


def training_key(parameters: dict[str, Any]) -> str:
    """Cache key of a training: what it learns from (its model's registry entry, clip, seed, split, settings with
    the precision as resolved here), its data's version and the code version of what it runs. Paths and
    threads leave a result valid and stay out."""
    model: ModelSpec = parameters["model"]
    settings: TrainingSettings = parameters["settings"]
    identity = {
        "model": asdict(model),
        "clip_seconds": parameters["clip_seconds"],
        "seed": parameters["seed"],
        "split": parameters["split"],
        "settings": asdict(resolved_settings(settings, model)),
        "data_version": parameters["data"].data_version,
        "code_version": code_version(model.module),
    }
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
    settings: TrainingSettings,
    cache_root: str,
    workers_on_hosts: dict[str, int],
) -> dict[str, Any]:
    """Train one cell into a model directory named by its cache key (local or behind a URL): where it is, where
    its learning curves are, and where and when it was trained. A checkpoint under the same key, left by a
    worker or run that died, is continued (`tasks.training.checkpoint`) and removed once the model is in place.
    TensorFlow gets this machine's share of cores (`cell_threads`)."""
    from distributed import get_worker

    from genreflow.tasks.training.train import train_cell

    key, paths = training_key(locals()), CachePaths(cache_root)
    destination, name = f"{paths.models}/{key}", cell_name(model.name, clip_seconds, seed)
    checkpoint = Checkpoint(f"{paths.checkpoints}/{key}", key)
    curves, log = f"{paths.curves}/{name}-{key.removeprefix('train-')[:12]}", get_run_logger()
    tracking = Tracking(checkpoint, curves, _progress_reporter(), log)
    threads = cell_threads(workers_on_hosts)
    started = _now()
    log.info("training %s into %s (%d threads)", name, destination, threads)
    with _staging(destination) as model_dir:
        train_cell(data, model, clip_seconds, seed, split, model_dir, settings, threads, tracking)
    checkpoint.clear()
    try:
        worker = f"worker {get_worker().name} ({get_worker().address})"
    except ValueError:
        worker = "the flow's process"
    return {
        "model_dir": destination,
        "curves": tracking.curves_url,
        "worker": worker,
        "started": started,
        "finished": _now(),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _progress_reporter() -> Callable[[EpochProgress], None]:
    """Publishes a training cell's progress to its task run as a Prefect progress artifact after each epoch
    (the UI shows it moving), described by the epoch and the validation accuracy so far."""
    artifact: list[UUID] = []

    def report(progress: EpochProgress) -> None:
        percent, description = round(100 * progress.fraction, 1), progress.describe()
        if artifact:
            update_progress_artifact(artifact[0], percent, description=description)
        else:
            key = f"training-progress-{re.sub(r'[^a-z0-9-]', '-', progress.cell.lower())}"
            artifact.append(create_progress_artifact(percent, key=key, description=description))

    return report


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


@dataclass(frozen=True)
class CachePaths:
    """The folders of a cache (a local folder or a URL): trained models, checkpoints of cells in training and
    learning curves, each under its own name so that a maintenance command can find each kind."""

    root: str

    @property
    def models(self) -> str:
        return f"{self.root.rstrip('/')}/models"

    @property
    def checkpoints(self) -> str:
        return f"{self.root.rstrip('/')}/checkpoints"

    @property
    def curves(self) -> str:
        return f"{self.root.rstrip('/')}/tensorboard"


@dataclass(frozen=True)
class CacheLocation:
    """Where results and trained models persist (a folder, or a URL with a saved fsspec block), and the local
    folder for what must stay on this machine (the synthetic collection's audio)."""

    result_storage: Path | WritableFileSystem
    root: str  # the cache itself: `CachePaths` names its folders
    local_root: Path

    @classmethod
    def for_run(cls, cache: str, out_dir: Path) -> CacheLocation:
        """A local cache holds everything; a URL cache holds results and models, the audio stays under `out_dir`."""
        if "://" not in cache:
            root = Path(cache).resolve()
            return cls(root / "results", str(root), root)
        base = cache.rstrip("/")
        block = RemoteFileSystem(basepath=f"{base}/results")
        block.save(f"genreflow-cache-{stable_hash({'url': cache})}", overwrite=True)  # Prefect needs it saved
        return cls(block, base, out_dir)


def cell_tasks(cache: CacheLocation, cache_url: str) -> tuple[Any, Any]:
    """The train and evaluate tasks with their results persisted under `cache` as JSON (never pickles: a
    cache's files are read back as data, not run as code) and their keys locked by the locks of `cache_url`."""
    options = {"result_storage": cache.result_storage, "persist_result": True, "result_serializer": "json"}
    return (
        train_task.with_options(cache_policy=_locked_policy(_training_cache_key, cache_url), **options),
        evaluate_task.with_options(cache_policy=_locked_policy(_evaluation_cache_key, cache_url), **options),
    )


def _locked_policy(cache_key_fn: Any, cache: str) -> CacheKeyFnPolicy:
    """A cache policy whose key is locked while its task runs (SERIALIZABLE), so a second run waits for the
    first and then reuses its result instead of doing the same work alongside it."""
    return CacheKeyFnPolicy(cache_key_fn=cache_key_fn).configure(
        isolation_level="SERIALIZABLE", lock_manager=cache_lock_manager(cache)
    )
