"""A Dask cluster made of real `dask scheduler` and `dask worker` processes, as a user would start them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.support.processes import background_process, free_port, venv_script


@contextmanager
def running_dask_cluster(log_dir: Path, n_workers: int = 1, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a scheduler and `n_workers` single-threaded workers; yield the scheduler's address."""
    log_dir.mkdir(parents=True, exist_ok=True)
    address = f"tcp://127.0.0.1:{free_port()}"
    scheduler = [
        venv_script("dask"),
        "scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        address.rsplit(":", 1)[1],
        "--no-dashboard",
    ]
    worker = [
        venv_script("dask"),
        "worker",
        address,
        "--nworkers",
        str(n_workers),
        "--nthreads",
        "1",
        "--no-dashboard",
        "--local-directory",
        str(log_dir / "dask-worker-space"),
    ]
    with ExitStack() as stack:
        stack.enter_context(
            background_process(scheduler, log_dir / "scheduler.log", lambda: workers_at(address) >= 0, env)
        )
        stack.enter_context(
            background_process(worker, log_dir / "worker.log", lambda: workers_at(address) >= n_workers, env)
        )
        yield address


def workers_at(address: str) -> int:
    """How many workers the scheduler at `address` has; -1 while it does not answer yet."""
    from distributed import Client

    try:
        with Client(address, timeout=2) as client:
            return len(client.scheduler_info()["workers"])
    except OSError:
        return -1
