"""`genreflow train` (one cell: train, then evaluate on its test tracks) and `genreflow predict` (audio files).

The same functions the flow calls (`train_cell`, `evaluate_cell`, `predict_paths`), without Prefect. TensorFlow
is imported only once a handler runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from genreflow.core import cell_name
from genreflow.models.registry import MODELS

TRAINING_OPTIONS = ("epochs", "patience", "batch_size", "learning_rate", "crops_per_track", "threads", "precision")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` and `predict`."""
    _register_train(subparsers)
    _register_predict(subparsers)


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train and evaluate one model at one clip length (one grid cell)",
        description="Train MODEL on random CLIP-second crops of one collection's tracks, streamed from the store, "
        "evaluate it on the split's test tracks, and write the model directory OUT (model, normalisation, genres, "
        "feature configuration, the tracks it learned from, result.json). `genreflow predict --model-dir OUT` "
        "uses it.",
    )  # fmt: skip
    train.add_argument("--store", required=True, help="store path or fsspec URL (see `genreflow extract`)")
    train.add_argument(
        "--data",
        default=None,
        metavar="FOLDER",
        help="the collection to learn from, as extracted into the store (default: the store's only one)",
    )
    train.add_argument("--model", required=True, help=f"one of {', '.join(MODELS)}")
    train.add_argument("--clip", type=float, required=True, metavar="SECONDS", help="clip length in seconds")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, the crops and the weights (default 0)")
    train.add_argument("--split", default="stratified", help="stratified (default), paper, fault-filtered or kfold:K")
    train.add_argument(
        "--out",
        default=None,
        metavar="MODEL_DIR",
        help="the model directory to write (default runs/models/<model>-<clip>s-seed<seed>)",
    )
    # Unset options fall through to train_cell's defaults (importing them here would import the store).
    train.add_argument("--epochs", type=int, help="most epochs (default 30)")
    train.add_argument(
        "--patience", type=int, help="epochs without a lower validation loss before stopping (default 10)"
    )
    train.add_argument("--batch-size", type=int, help="clips per batch (default 32)")
    train.add_argument("--learning-rate", type=float, help="Adam's learning rate (default 0.001)")
    train.add_argument(
        "--crops-per-track",
        type=int,
        help="random crops per training track per epoch (default: as many clips as the track holds)",
    )
    train.add_argument("--threads", type=int, help="TensorFlow threads (default: TensorFlow's choice, every core)")
    train.add_argument(
        "--precision", choices=["auto", "float32", "bfloat16"],
        help="auto (default: bfloat16 only where it measured faster on this device), float32 or bfloat16",
    )  # fmt: skip
    train.set_defaults(handler=run_train)


def _register_predict(subparsers: argparse._SubParsersAction) -> None:
    predict = subparsers.add_parser(
        "predict", help="predict the genre of audio files with a trained model",
        description="Decode and extract each file with the same code as the store, then print its genre and "
        "probabilities. Folders are searched (GTZAN layout <genre>/<file> adds labels and the track-level accuracy). "
        "Exit status 1 if any file could not be predicted; the others are still printed.",
    )  # fmt: skip
    predict.add_argument("--model-dir", required=True, help="a model directory (from `genreflow train` or the flow)")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.set_defaults(handler=run_predict)


def run_train(args: argparse.Namespace) -> int:
    """Train, evaluate, print where the model is and how it did."""
    from genreflow.models.registry import spec
    from genreflow.storage.schema import StoreError
    from genreflow.storage.store import absolute_location
    from genreflow.tasks.evaluation.evaluate import evaluate_cell
    from genreflow.tasks.training.train import TrainingData, train_cell

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model_dir = Path(args.out or Path("runs") / "models" / cell_name(args.model, args.clip, args.seed))
    store = absolute_location(args.store)
    collection = None if args.data is None else str(Path(args.data).resolve())
    try:
        data = TrainingData.from_store(store, spec(args.model).feature_config, collection)
        train_cell(data, args.model, args.clip, args.seed, args.split, model_dir, **_given(args, TRAINING_OPTIONS))
        result = evaluate_cell(model_dir, store)
    except (ValueError, StoreError, FileNotFoundError) as error:
        return _fail(str(error))
    print(_describe_result(result))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Predict every file; per-file errors go to stderr (or into the JSON) and make the exit status 1."""
    from genreflow.tasks.evaluation.predict import predict_paths

    try:
        output = predict_paths(args.model_dir, args.paths)
    except (FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    if args.json:
        print(json.dumps(output, indent=1))
    else:
        print(_describe_predictions(output))
    for entry in output["errors"]:
        print(f"genreflow: error: {entry['path']}: {entry['error']}", file=sys.stderr)
    return 1 if output["errors"] else 0


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options among `names` that the user set."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _describe_result(result: dict[str, Any]) -> str:
    track, clip = result["metrics"]["track"], result["metrics"]["clip"]
    return (
        f"{result['model']} {result['clip_seconds']:g}s seed {result['seed']} ({result['split']}): "
        f"track accuracy {track['accuracy']:.3f} (macro-F1 {track['macro_f1']:.3f}), clip accuracy "
        f"{clip['accuracy']:.3f} on {result['n_tracks']['test']} test tracks; {result['params']:,} parameters, "
        f"{result['train_seconds']:.1f} s training, {result['epochs_run']} epochs\n"
        f"model directory: {result['model_dir']}"
    )


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


def _fail(message: str) -> int:
    print(f"genreflow: error: {message}", file=sys.stderr)
    return 1
