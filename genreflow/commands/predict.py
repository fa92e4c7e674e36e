"""`genreflow predict`: the genre of audio files, with a model directory from `genreflow train` or the flow.

`predict_paths` (tasks/evaluation/predict.py) does the work, without Prefect; this module only prints its answer.
TensorFlow is imported only once the handler runs, so that `genreflow --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from genreflow.commands import fail


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `predict`."""
    predict = subparsers.add_parser(
        "predict", help="predict the genre of audio files with a trained model",
        description="Decode and extract each file with the same code as the store, then print its genre and "
        "probabilities. Folders are searched (GTZAN layout <genre>/<file> adds labels and the track-level accuracy). "
        "Exit status 1 if any file could not be predicted; the others are still printed.",
    )  # fmt: skip
    predict.add_argument("--model-dir", required=True, help="a model directory (from `genreflow train` or the flow)")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.add_argument(
        "--out", metavar="TABLE.csv",
        help="write one row per file to this CSV instead of printing (a library of any size: files are read on "
        "Dask workers, and the same command again predicts only the files the table lacks)",
    )  # fmt: skip
    predict.add_argument("--dask-address", help="with --out: an existing Dask scheduler (none: a local cluster)")
    predict.add_argument("--workers", type=int, help="with --out: local cluster workers (default: one per core)")
    predict.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Predict every file; per-file errors go to stderr (or into the JSON or table) and make the exit status 1."""
    if args.out:
        return predict_into_table(args)
    from genreflow.tasks.evaluation.predict import predict_paths

    try:
        output = predict_paths(args.model_dir, args.paths)
    except (FileNotFoundError, ValueError) as error:
        return fail(str(error))
    if args.json:
        print(json.dumps(output, indent=1))
    else:
        print(_describe_predictions(output))
    for entry in output["errors"]:
        print(f"genreflow: error: {entry['path']}: {entry['error']}", file=sys.stderr)
    return 1 if output["errors"] else 0


def _describe_predictions(output: dict[str, Any]) -> str:
    lines = []
    for row in output["predictions"]:
        ranked = sorted(row["probabilities"].items(), key=lambda item: -item[1])
        label = f" (true: {row['true']})" if "true" in row else ""
        seen = " *" if row["learned_from"] else ""
        lines.append(f"{row['path']}{seen}: {row['genre']}{label}  " + ", ".join(f"{g} {p:.2f}" for g, p in ranked))
    if "accuracy" in output:
        lines.append(f"track-level accuracy {output['accuracy']:.3f} over {output['labelled']} labelled files")
    trained_on = output["trained_on"]
    lines.append(f"model trained on {trained_on['collection']} (data version {trained_on['data_version']})")
    if output["learned_from"]:
        lines.append(
            f"note: {output['learned_from']} of these files were among the model's training tracks (marked *): "
            "an accuracy over them measures memory, not generalisation"
        )
    return "\n".join(lines)


def predict_into_table(args: argparse.Namespace) -> int:
    """`--out`: the table written on a Dask cluster, with a progress bar and a closing summary."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # the cluster's routine messages stay out
    from tqdm import tqdm

    from genreflow.tasks.cluster import dask_client
    from genreflow.tasks.evaluation.prediction_table import TableError, predict_to_table

    try:
        with dask_client(args.dask_address, args.workers) as client, tqdm(unit="file") as bar:

            def show(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            outcome = predict_to_table(args.model_dir, args.paths, Path(args.out), client, show)
    except (FileNotFoundError, ValueError, TableError) as error:
        return fail(str(error))
    print(
        f"{outcome.table}: {outcome.added} files added ({outcome.errors} could not be predicted, see its error "
        f"column), {outcome.kept} already there",
        file=sys.stderr,
    )
    return 1 if outcome.errors else 0
