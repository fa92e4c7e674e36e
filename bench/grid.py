"""Grid benchmark: what fanning the training grid out on Dask gains over one cell at a time, and what it costs
over bare processes doing the same cells.

The same cells (every model x clip length of the options, seed 0, the same epochs and split), each trained and
then evaluated, three ways on this machine:
  a. serial: one cell at a time in one process whose TensorFlow uses every core (how the flow trained before);
  b. fanout: the `genreflow` flow itself, cells on a LocalCluster of one single-threaded worker per core
     (`--train-slots`), one Prefect task run per cell, results persisted;
  c. processes: the same cells handed to as many plain OS processes as cores, one TensorFlow thread each, the
     next cell to whichever process is free: the reference for (b) without Prefect or Dask.
Extraction, the Prefect API server and a warm-up happen before any timing. Ways run in the order b, c, a.

Last line JSON: fanout_vs_processes = wall(c) / wall(b) (target >= 0.9), fanout_vs_serial = wall(a) / wall(b),
the walls, each way's per-cell track accuracy and seconds, and the peak resident memory of each worker
process (the largest of each way). (a) runs its cells with more threads than (b) and (c); float sums then
round differently and its accuracies may differ from theirs in the last tracks. (b) and (c) run the same
single-threaded arithmetic, but in a Dask worker the event loop's thread draws from Python's global `random`
(Tornado's callback jitter) while Keras draws its unseeded initialisers' seeds from it too, so a fanned-out
cell may start from other weights than the same cell in a bare process, and from run to run.

    python bench/grid.py                      # gtzan-mini where present, else 20 synthetic tracks per genre
    python bench/grid.py --models cnn crnn --clips 5 30 --epochs 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

GTZAN_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gtzan-mini"
SPLIT = "stratified"
SEED = 0


@dataclass(frozen=True)
class Job:
    """One cell as the serial and process ways run it."""

    model: str
    clip_seconds: float
    store: str
    collection: str
    epochs: int
    models_root: str
    threads: int


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a GTZAN-layout folder (default: gtzan-mini where present, else synthetic)")
    parser.add_argument("--models", nargs="+", default=["cnn", "rnn", "crnn"], help="default: cnn rnn crnn")
    parser.add_argument("--clips", nargs="+", type=float, default=[5.0, 30.0], help="clip seconds (default 5 30)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per cell (default 6; no early stop before)")
    parser.add_argument("--workdir", help="keep the store, caches and models here (default: a temporary folder)")
    return parser.parse_args()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_job(job: Job) -> dict[str, Any]:
    """Train and evaluate one cell in this process; its accuracy, seconds and this process's peak memory."""
    from genreflow.core import FeatureConfig, TrainingSettings, cell_name
    from genreflow.tasks.evaluation.evaluate import evaluate_cell
    from genreflow.tasks.training.train import TrainingData, train_cell

    started = time.perf_counter()
    data = TrainingData.from_store(job.store, FeatureConfig(), job.collection)
    name = cell_name(job.model, job.clip_seconds, SEED)
    model_dir = train_cell(
        data, job.model, job.clip_seconds, SEED, SPLIT, Path(job.models_root) / name,
        TrainingSettings(epochs=job.epochs), job.threads,
    )  # fmt: skip
    accuracy = evaluate_cell(model_dir, job.store)["metrics"]["track"]["accuracy"]
    return {"cell": name, "track_accuracy": accuracy, "seconds": round(time.perf_counter() - started, 1),
            "pid": os.getpid(), "peak_rss_mb": round(peak_rss_mb(), 1)}  # fmt: skip


def serial_way(jobs: list[Job]) -> list[dict[str, Any]]:
    """Every cell one after another in one fresh process (TensorFlow fixes its thread pools per process)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return list(pool.map(run_job, jobs))


def processes_way(jobs: list[Job], processes: int) -> list[dict[str, Any]]:
    """The cells spread over `processes` fresh processes, the next cell to the first that is free."""
    from genreflow.tasks.cluster import WORKER_ENVIRONMENT

    with _environment(WORKER_ENVIRONMENT), ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        return [future.result() for future in as_completed(futures)]


@contextmanager
def _environment(variables: dict[str, str | None]) -> Iterator[None]:
    """The Dask workers' environment for processes started meanwhile, so that both ways run alike."""
    saved = dict(os.environ)
    for name, value in variables.items():  # None: unset, as Dask's nanny leaves it out of a worker's environment
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def fanout_way(parameters: dict[str, Any], cache: Path) -> list[dict[str, Any]]:
    """The genreflow flow on a fresh cache (nothing reused): its summary's cells."""
    from genreflow.core import cell_name
    from genreflow.flows.pipeline import genreflow_flow

    summary = genreflow_flow(**parameters, cache=str(cache), return_state=True).result(raise_on_failure=True)
    kept = ("track_accuracy", "seconds", "worker", "peak_rss_mb")
    return [
        {
            "cell": cell_name(cell["model"], cell["clip_seconds"], cell["seed"]),
            **{key: cell[key] for key in kept},
            "seconds": round(cell["seconds"], 1),
        }
        for cell in summary["cells"]
    ]


@contextmanager
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API for the flow, started before anything is timed (as `prefect server start` is)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start(timeout=120)
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield
    finally:
        server.stop()


def timed(function: Any, *args: Any) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    cells = function(*args)
    return time.perf_counter() - started, sorted(cells, key=lambda cell: cell["cell"])


def main() -> None:
    arguments = parse_arguments()
    from genreflow.tasks.cluster import default_worker_count

    cores = default_worker_count()
    data = arguments.data or (str(GTZAN_MINI) if GTZAN_MINI.is_dir() else "synthetic")
    with tempfile.TemporaryDirectory(prefix="genreflow-bench-grid-") as scratch, prefect_server():
        work = Path(arguments.workdir or scratch)
        common = {"data": data, "store": str(work / "store.zarr"), "out": str(work / "runs"), "split": SPLIT,
                  "tracks_per_genre": 20, "seeds": [SEED], "train_slots": cores}  # fmt: skip
        # Warm-up, untimed: extraction, the collection's record, imports, a cluster's first start.
        warm = genreflow_flow_parameters(common, ["baseline"], [arguments.clips[0]], 1)
        fanout_way(warm, work / "cache-warm-up")
        grid = genreflow_flow_parameters(common, arguments.models, arguments.clips, arguments.epochs)
        collection = json.loads((work / "runs" / "latest" / "run.json").read_text())["data"]["collection"]
        jobs = [
            Job(model, clip, common["store"], collection, arguments.epochs, str(work / way), threads)
            for way, threads in (("serial", cores), ("processes", 1))
            for model in arguments.models
            for clip in arguments.clips
        ]
        fanout_wall, fanout = timed(fanout_way, grid, work / "cache-fanout")
        processes_wall, processes = timed(processes_way, [job for job in jobs if job.threads == 1], cores)
        serial_wall, serial = timed(serial_way, [job for job in jobs if job.threads == cores])
    print_table({"fanout": fanout, "processes": processes, "serial": serial})
    print(json.dumps({
        "fanout_vs_processes": round(processes_wall / fanout_wall, 3),
        "fanout_vs_serial": round(serial_wall / fanout_wall, 3),
        "wall_s": {"serial": round(serial_wall, 1), "fanout": round(fanout_wall, 1),
                   "processes": round(processes_wall, 1)},
        "cells": {"serial": serial, "fanout": fanout, "processes": processes},
        "peak_rss_mb": {way: max(cell["peak_rss_mb"] for cell in cells)
                        for way, cells in (("serial", serial), ("fanout", fanout), ("processes", processes))},
        "settings": {"data": data, "models": arguments.models, "clips": arguments.clips, "epochs": arguments.epochs,
                     "cores": cores, "split": SPLIT},
    }))  # fmt: skip


def genreflow_flow_parameters(
    common: dict[str, Any], models: list[str], clips: list[float], epochs: int
) -> dict[str, Any]:
    return {**common, "models": models, "clip_seconds": clips, "epochs": epochs}


def print_table(ways: dict[str, list[dict[str, Any]]]) -> None:
    print(f"{'cell':<18}" + "".join(f"{way + ' acc':>16}{way + ' s':>14}" for way in ways))
    for index, cell in enumerate(next(iter(ways.values()))):
        row = "".join(
            f"{cells[index]['track_accuracy']:>16.3f}{cells[index]['seconds']:>14.1f}" for cells in ways.values()
        )
        print(f"{cell['cell']:<18}{row}")


if __name__ == "__main__":
    main()
