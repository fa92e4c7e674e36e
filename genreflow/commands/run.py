"""`genreflow run`: the whole flow (extract, train the grid, evaluate, report) from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from genreflow.commands.stopping import stopped_by_signals
from genreflow.core import PREFECT_EXTRA_LOGGERS
from genreflow.parameters import add_run_options, one_line, parameters_from

# A new PREFECT_HOME migrates its database on the ephemeral server's first start: on 2 busy cores that took
# longer than Prefect's default 20 s wait.
EPHEMERAL_STARTUP_SECONDS = "180"
# What the user's terminal is spared: Prefect's and Dask's routine messages stay in the run's logs (the UI).
QUIET_ENVIRONMENT = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": EPHEMERAL_STARTUP_SECONDS,
    "PREFECT_LOGGING_EXTRA_LOGGERS": PREFECT_EXTRA_LOGGERS,
    "DASK_LOGGING__DISTRIBUTED": "warning",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
RUN_TAGS = ("genreflow", "ad-hoc")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the full flow: extract, train every model x clip length x seed, evaluate, report",
        description=(
            "Run the genreflow Prefect flow. Uses a temporary Prefect server unless PREFECT_API_URL points at one "
            "(then the run shows in its UI). Completed extraction and training are reused from the cache, so "
            "running the same command again redoes only what failed or changed."
        ),
    )
    add_run_options(parser)
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Check the options (no Prefect yet: a mistake costs a second), run the flow, print its closing table."""
    from pydantic import ValidationError

    from genreflow.flows.preflight import RunRefused, check_run

    try:
        parameters = parameters_from(args)
        check_run(parameters)
    except (RunRefused, ValidationError) as error:
        print(f"genreflow: error: {one_line(error)}", file=sys.stderr)
        return 2
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    from prefect import tags

    from genreflow.flows.pipeline import genreflow_flow
    from genreflow.tasks.run_folder import SUMMARY_FILE

    kept = (
        f"Extracted tracks are kept in {parameters.store}, finished cells and the checkpoints of cells in training "
        f"in {parameters.cache}; run the same command again to go on from there."
    )
    with stopped_by_signals(kept), tags(*RUN_TAGS):
        state = genreflow_flow(**parameters.model_dump(), return_state=True)
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, dict):  # the flow itself broke: Prefect has logged why
        print(f"genreflow: error: the run ended {state.name}: {state.message}", file=sys.stderr)
        return 1
    print_summary(summary, Path(summary["run_dir"]) / SUMMARY_FILE)
    if state.is_failed():
        print(f"\n{state.message}\nRun the same command again to redo only the failed cells.")
        return 1
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    """The closing table: one line per grid cell."""
    lines = [f"{'model':<10}{'clip':>6}{'seed':>6}  {'status':<8}{'seconds':>9}{'track acc':>11}"]
    for cell in summary["cells"]:
        accuracy = "-" if cell["track_accuracy"] is None else f"{cell['track_accuracy']:.3f}"
        lines.append(
            f"{cell['model']:<10}{cell['clip_seconds']:>5g}s{cell['seed']:>6}  {cell['status']:<8}"
            f"{cell['seconds']:>9.1f}{accuracy:>11}"
        )
        if cell.get("excluded"):
            lines.append(f"    {cell['excluded']} track(s) shorter than the clip left out")
        if cell.get("error"):
            lines.append(f"    error: {cell['error']}")
    return "\n".join(lines)


def print_summary(summary: dict[str, Any], summary_path: Path) -> None:
    print(format_summary(summary))
    print(f"\nflow run {summary['flow_run_name']} ({summary['flow_run_id']}): {summary['state']}")
    print(f"run folder: {summary['run_dir']}\nsummary: {summary_path}\nresults: {summary['results_path']}")
