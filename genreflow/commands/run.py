"""`genreflow run`: the whole flow (extract, train the grid, evaluate, report) from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from genreflow.config import DEFAULT_CLIP_SECONDS, DEFAULT_MODELS, PREFECT_EXTRA_LOGGERS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the full flow: extract, train every model x clip length x seed, evaluate, report",
        description=(
            "Run the genreflow Prefect flow. Uses Prefect's ephemeral API unless PREFECT_API_URL points at a "
            "server (then the run shows in its UI). Completed extraction and training are reused from the cache "
            "folder, so running the same command again redoes only what failed or changed."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", default="synthetic", help="a GTZAN-layout folder <root>/<genre>/<file>, or 'synthetic'")
    parser.add_argument("--tracks-per-genre", type=int, default=20, help="size of the synthetic collection")
    parser.add_argument("--store", default="runs/store.zarr", help="Zarr feature store: local path or fsspec URL")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="models to train")
    parser.add_argument(
        "--clips", dest="clip_seconds", nargs="+", type=float, default=list(DEFAULT_CLIP_SECONDS), help="clip lengths in seconds"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one training per seed")
    parser.add_argument("--split", default="stratified", help="stratified | paper | fault-filtered | kfold:K")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (early stopping on validation)")
    parser.add_argument(
        "--crops-per-track", type=int, default=None,
        help="random crops of each training track per epoch, at most (default: as many as the track holds clips)",
    )  # fmt: skip
    parser.add_argument("--dask-address", default=None, help="existing Dask scheduler (default: a LocalCluster)")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: one per core)")
    parser.add_argument(
        "--out", default="runs",
        help="folder of run folders: each run writes OUT/<run name>/ (summary, results, report), OUT/latest links the newest",
    )  # fmt: skip
    parser.add_argument("--cache", default="runs/cache", help="persisted task results and trained models")
    parser.set_defaults(handler=run_command)


# A new PREFECT_HOME migrates its database on the ephemeral server's first start: on 2 busy cores that took
# longer than Prefect's default 20 s wait.
EPHEMERAL_STARTUP_SECONDS = "180"


def run_command(args: argparse.Namespace) -> int:
    """Check the options (no Prefect yet: a mistake costs a second), run the flow, print its closing table."""
    from flows.preflight import RunRefused, check_run

    try:
        check_run(
            args.data, args.models, args.clip_seconds, args.seeds, args.split, args.tracks_per_genre,
            [args.out, args.cache, args.store],
        )  # fmt: skip
    except RunRefused as error:
        print(f"genreflow: error: {error}", file=sys.stderr)
        return 2
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_SECONDS)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", PREFECT_EXTRA_LOGGERS)
    from flows.pipeline import GridFailed, genreflow_flow

    try:
        summary = genreflow_flow(**flow_parameters(args, set(genreflow_flow.parameters.properties)))
    except GridFailed as failure:
        summary_path = Path(failure.run_dir) / "summary.json"
        print_summary(json.loads(summary_path.read_text()), summary_path)
        print(f"\n{failure}\nRun the same command again to redo only the failed cells.")
        return 1
    print_summary(summary, Path(summary["run_dir"]) / "summary.json")
    return 0


def flow_parameters(args: argparse.Namespace, accepted: set[str]) -> dict[str, Any]:
    """The parsed options that are flow parameters (every option of `run` is one, under the same name)."""
    return {name: value for name, value in vars(args).items() if name in accepted}


def format_summary(summary: dict[str, Any]) -> str:
    """The closing table: one line per grid cell."""
    lines = [f"{'model':<10}{'clip':>6}{'seed':>6}  {'status':<8}{'seconds':>9}{'track acc':>11}"]
    for cell in summary["cells"]:
        accuracy = "-" if cell["track_accuracy"] is None else f"{cell['track_accuracy']:.3f}"
        lines.append(
            f"{cell['model']:<10}{cell['clip_seconds']:>5g}s{cell['seed']:>6}  {cell['status']:<8}{cell['seconds']:>9.1f}{accuracy:>11}"
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
