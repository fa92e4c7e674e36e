"""The `genreflow` command: one sub-command per job, each defined in `genreflow/commands/`.

Sub-command modules import their heavy dependencies (TensorFlow, Prefect) only when they run, so
`genreflow --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes `register(subparsers)`, which adds its parser(s) and sets `handler`.
COMMAND_MODULES = ("extract", "store", "train", "predict", "run", "report", "cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genreflow",
        description=(
            "Train and compare music-genre classifiers (CNN, RNN, CRNN, baseline) on a GTZAN-layout folder "
            "or the built-in synthetic collection, as a Prefect flow with Dask extraction into Zarr."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"genreflow.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
