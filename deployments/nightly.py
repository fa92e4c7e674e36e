"""Register nightly retraining: the deployment `genreflow/nightly` and the process work pool that runs it.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m genreflow.deployments.nightly --data /music/gtzan

(`make deploy` runs it with the defaults.) The options are `genreflow run`'s, so a scheduled night runs what that
command would run; every local path is stored absolute, so the worker may start anywhere. Registering again
with the same options changes nothing: the same deployment is updated in place and keeps one schedule.

Two nights never overlap: the work pool and the deployment each allow one run at a time, and a run that
arrives while another is going waits for it (ENQUEUE) rather than being cancelled. The pool's limit already
holds a second run back as Scheduled, so ENQUEUE keeps the deployment's rule the same as the pool's when the
pool's limit is raised; a manual run with other parameters is never dropped, and a night queued behind an
unchanged one costs little, since it reuses every extracted track and trained cell from the cache.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from genreflow.core import PREFECT_EXTRA_LOGGERS
from genreflow.parameters import add_run_options, one_line, parameters_from

REPO_ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = "flows/pipeline.py:genreflow_flow"
DEPLOYMENT_NAME = "nightly"
WORK_POOL = "genreflow-process"
NIGHTLY_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"
LOCATION_PARAMETERS = ("store", "out", "cache")  # stored absolute: the worker may start anywhere


def build_parser() -> argparse.ArgumentParser:
    """The run's parameters (as `genreflow run` takes them) plus the schedule's."""
    parser = argparse.ArgumentParser(
        prog="python -m genreflow.deployments.nightly",
        description=(
            f"Register the deployment 'genreflow/{DEPLOYMENT_NAME}' (work pool '{WORK_POOL}') on the Prefect server "
            "that PREFECT_API_URL names. Its runs use the options below; local paths are stored absolute."
        ),
    )
    add_run_options(parser.add_argument_group("run"))
    schedule = parser.add_argument_group("schedule")
    schedule.add_argument("--cron", default=NIGHTLY_CRON, help="when to run, as a cron expression")
    schedule.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="IANA time zone of the cron, e.g. Europe/Paris")
    return parser


def data_location(data: str) -> str:
    """'synthetic', or an existing folder made absolute; anything else is refused now rather than at 2 am."""
    if data == "synthetic":
        return data
    folder = Path(data).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"--data {data}: no such folder ({folder}); give a GTZAN-layout folder or 'synthetic'")
    return str(folder)


def checked_timezone(name: str) -> str:
    """The time zone name, once it is known to exist."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"--timezone {name}: not an IANA time zone (e.g. UTC, Europe/Paris)") from error
    return name


def flow_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """Every parameter of the flow, from the parsed options and the defaults, with absolute locations."""
    from genreflow.storage.store import absolute_location

    parameters = parameters_from(args).model_dump()
    parameters["data"] = data_location(parameters["data"])
    parameters.update({name: absolute_location(parameters[name]) for name in LOCATION_PARAMETERS})
    return parameters


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Create the process work pool with one run at a time, or bring an existing one back to that."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    wanted = WorkPoolCreate(
        name=name,
        type=ProcessWorker.type,
        base_job_template=ProcessWorker.get_default_base_job_template(),
        concurrency_limit=1,
    )
    with get_client(sync_client=True) as client:
        pool = client.create_work_pool(wanted, overwrite=True)
    if pool.type != ProcessWorker.type:
        raise ValueError(f"work pool {name!r} exists with type {pool.type!r}; delete it or pick another pool")


def register_nightly(
    args: argparse.Namespace, source: Path = REPO_ROOT, entrypoint: str = ENTRYPOINT, work_pool: str = WORK_POOL
) -> UUID:
    """Create or update the deployment from the local source; returns its id (stable across registrations)."""
    from prefect import flow
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    genreflow_flow = flow.from_source(source=str(source), entrypoint=entrypoint)
    parameters = flow_parameters(args)
    schedule = Cron(args.cron, timezone=checked_timezone(args.timezone), slug=DEPLOYMENT_NAME)
    ensure_work_pool(work_pool)
    return genreflow_flow.deploy(
        name=DEPLOYMENT_NAME,
        work_pool_name=work_pool,
        schedules=[schedule],
        parameters=parameters,
        job_variables={"env": {"PREFECT_LOGGING_EXTRA_LOGGERS": PREFECT_EXTRA_LOGGERS}},
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        description="Nightly retraining: extracts new or changed tracks, retrains what they invalidate, reports.",
        tags=["genreflow", DEPLOYMENT_NAME],
        print_next_steps=False,
        ignore_warnings=True,  # a process pool is the point here, not a step towards containers
    )


def reachable_api_url() -> str:
    """The server to register on, once it answers: without one Prefect would register into a throwaway local
    database, and an unreachable one would end in a long traceback."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ValueError("PREFECT_API_URL is not set: start a server (make ui) and run `make deploy`, or export it")
    try:
        httpx.get(f"{url}/health", timeout=10)
    except httpx.TransportError as error:
        raise ValueError(
            f"no Prefect server answers at PREFECT_API_URL={url} ({error}): start it with `make ui`"
        ) from error
    return url


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        api_url = reachable_api_url()
        deployment_id = register_nightly(args)
    except ValueError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print(f"deployment genreflow/{DEPLOYMENT_NAME} ({deployment_id}) on {api_url}")
    print(f"  schedule: {args.cron} ({args.timezone}); one run at a time, a run arriving during another waits")
    print(f"  start a worker: make worker   (prefect worker start --pool {WORK_POOL})")
    print(f"  run it now:     prefect deployment run 'genreflow/{DEPLOYMENT_NAME}' -p epochs=5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
