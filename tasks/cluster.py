"""The Dask clusters genreflow runs on: a client of a running scheduler, or a LocalCluster of single-threaded
worker processes started with the environment that extraction and training want.

Extraction uses one worker per core (a track per worker). Training uses as many workers as cells train at once
(`--train-slots`), each giving TensorFlow its share of the cores (`cell_threads`). Workers started by someone
else keep their own environment: start them with `--nthreads 1` and `MALLOC_TRIM_THRESHOLD_` unset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from genreflow.core import PREFECT_EXTRA_LOGGERS

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

# The environment of LocalCluster workers. Dask's default MALLOC_TRIM_THRESHOLD_=65536 makes glibc hand freed
# memory back at once, so every track's numpy temporaries are page-faulted afresh (parallel efficiency 0.41
# against 0.77 without it, docs/design.md). A 64 MiB top pad keeps the heap that a track needs for the next one.
# Numeric libraries get one thread each (TensorFlow's own pools are sized per cell, `cell_threads`). Routine
# logs stay quiet, and genreflow's own reach the run's logs in Prefect.
WORKER_ENVIRONMENT: dict[str, str | None] = {
    "MALLOC_TRIM_THRESHOLD_": None,  # None tells Dask's nanny not to set it
    "MALLOC_TOP_PAD_": str(64 * 2**20),
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PREFECT_LOGGING_EXTRA_LOGGERS": PREFECT_EXTRA_LOGGERS,
}
# Dask's housekeeping for a LocalCluster, made quieter: no statistical profiler (it walks the stack every
# 10 ms holding the GIL), an event-loop tick every second instead of 20 ms, the system monitor every 2 s and
# each worker's memory check every 500 ms. An idle 2-worker cluster then takes ~15 ms of CPU per second
# instead of ~75 (docs/design.md); a blocked event loop is still reported and a worker over its memory limit
# is still paused within 0.5 s.
CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}


def default_worker_count() -> int:
    """One single-threaded worker per core this process may use."""
    return len(os.sched_getaffinity(0))


@contextmanager
def local_cluster(n_workers: int | None = None) -> Iterator[LocalCluster]:
    """A LocalCluster of `n_workers` single-threaded processes (default: one per core), genreflow's way."""
    import dask
    from distributed import LocalCluster

    overrides = {f"distributed.nanny.pre-spawn-environ.{name}": value for name, value in WORKER_ENVIRONMENT.items()}
    with _parent_environment_kept(), dask.config.set({**overrides, **CLUSTER_CONFIG}):
        cluster = LocalCluster(
            n_workers=n_workers or default_worker_count(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: several clusters (tests, runs) may share a machine
        )
        with cluster:
            yield cluster


@contextmanager
def dask_client(address: str | None = None, n_workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at `address`, or of a new `local_cluster`."""
    from distributed import Client

    if address:
        with Client(address) as client:
            yield client
        return
    with local_cluster(n_workers) as cluster, Client(cluster) as client:
        yield client


def workers_per_host(client: Client) -> dict[str, int]:
    """How many workers each machine of the cluster runs: they share its cores."""
    counts: dict[str, int] = {}
    for address in client.scheduler_info()["workers"]:
        host = host_of(address)
        counts[host] = counts.get(host, 0) + 1
    return counts


def host_of(address: str) -> str:
    """The machine part of a Dask address (`tcp://10.0.0.5:40123` -> `10.0.0.5`)."""
    return urlparse(address).hostname or address


def cell_threads(workers_on_hosts: dict[str, int]) -> int:
    """TensorFlow threads for one cell on the worker running it: this machine's cores, shared by its workers.
    Outside a Dask worker (a cell trained in the calling process), every core."""
    from distributed import get_worker

    cores = default_worker_count()
    try:
        host = host_of(get_worker().address)
    except ValueError:
        return cores
    return max(1, cores // workers_on_hosts.get(host, 1))


@contextmanager
def _parent_environment_kept() -> Iterator[None]:
    """Dask's nanny writes the worker variables into this process's own environment before each spawn, so
    anything started later from here would inherit OMP_NUM_THREADS=1 and the malloc settings; put back what
    was there. A trim threshold inherited from an earlier cluster is removed for the lifetime of this one, or
    its workers would inherit the trap."""
    touched = [*WORKER_ENVIRONMENT, "PYTHONHASHSEED"]
    saved = {name: os.environ.get(name) for name in touched}
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
