"""The `report` sub-command: rebuild a run's report from its saved results, without retraining."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `genreflow report RUN_DIR`."""
    parser = subparsers.add_parser(
        "report",
        help="rebuild report.md, report.html and plots/ of a run folder from its results.json",
        description=(
            "Rebuild the report of a finished run from RUN_DIR/results.json (and run.json, summary.json if "
            "present): report.md, a self-contained report.html and plots/*.png, written into RUN_DIR."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run's output folder (the flow's --out)")
    parser.set_defaults(handler=rebuild_report)


def rebuild_report(args: argparse.Namespace) -> int:
    """Build the report; a folder that cannot be reported on is a one-line error and exit status 1."""
    from genreflow.tasks.report.build import build_report
    from genreflow.tasks.report.statistics import ReportInputError

    try:
        markdown_path, html_path = build_report(args.run_dir)
    except ReportInputError as error:
        print(f"genreflow report: {error}", file=sys.stderr)
        return 1
    print(f"wrote {markdown_path}")
    print(f"wrote {html_path}")
    return 0
