"""`genreflow train`: one cell, trained and then evaluated on its test tracks (`genreflow predict` uses the model).

The same functions the flow calls (`train_cell`, `evaluate_cell`), without Prefect. TensorFlow is imported only
once the handler runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from genreflow.commands import fail
from genreflow.core import (
    AUGMENTATIONS,
    DEFAULT_CROPS_PER_TRACK,
    PRECISIONS,
    SCHEDULES,
    TrainingSettings,
    cell_name,
)
from genreflow.models.registry import MODELS, own_values


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train`."""
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
    # Unset options fall through to TrainingSettings' defaults.
    train.add_argument("--epochs", type=int, help="most epochs (default 30)")
    train.add_argument(
        "--patience", type=int, help="epochs without a lower validation loss before stopping (default 10)"
    )
    train.add_argument(
        "--batch-size",
        type=int,
        help=f"clips per batch (default: the network's own: {own_values('batch_size')})",
    )
    train.add_argument("--learning-rate", type=float, help="Adam's learning rate (default 0.001)")
    train.add_argument(
        "--crops-per-track",
        type=int,
        help=f"random crops per training track per epoch, at every clip length (default {DEFAULT_CROPS_PER_TRACK})",
    )
    train.add_argument(
        "--augment", choices=list(AUGMENTATIONS),
        help=f"what training does to each crop (default: the network's own: {own_values('augment')})",
    )  # fmt: skip
    train.add_argument("--label-smoothing", type=float, help="share of each target spread over the genres (default 0)")
    train.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay (default 0: Adam)")
    train.add_argument(
        "--schedule", choices=list(SCHEDULES),
        help=f"the learning rate: constant or cosine (warm-up, decay) (default: the network's own: "
        f"{own_values('schedule')})",
    )  # fmt: skip
    stopping = train.add_mutually_exclusive_group()
    stopping.add_argument(
        "--early-stopping", dest="early_stopping", action="store_const", const=True,
        help="stop on the validation loss and keep the best epoch's weights",
    )  # fmt: skip
    stopping.add_argument(
        "--no-early-stopping", dest="early_stopping", action="store_const", const=False,
        help=f"run every epoch and keep the last weights (default: the network's own: {own_values('early_stopping')})",
    )  # fmt: skip
    train.add_argument(
        "--train-on-validation", dest="hold_out_validation", action="store_const", const=False,
        help="with --no-early-stopping: train on each fold's validation tracks too (default: hold them out)",
    )  # fmt: skip
    train.add_argument(
        "--average-weights", action="store_const", const=True,
        help="with --no-early-stopping: end on the weights' moving average over about the last 100 steps",
    )  # fmt: skip
    train.add_argument("--threads", type=int, help="TensorFlow threads (default: TensorFlow's choice, every core)")
    train.add_argument(
        "--precision", choices=list(PRECISIONS),
        help="auto (default: bfloat16 only where it measured faster on this device), float32 or bfloat16",
    )  # fmt: skip
    train.set_defaults(handler=run_train)


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
        settings = TrainingSettings(**_given(args, [field.name for field in dataclasses.fields(TrainingSettings)]))
        train_cell(data, args.model, args.clip, args.seed, args.split, model_dir, settings, args.threads)
        result = evaluate_cell(model_dir, store)
    except (ValueError, StoreError, FileNotFoundError) as error:
        return fail(str(error))
    except OSError as error:  # a full disk, a folder that cannot be written: nothing of the model is left
        return fail(
            f"{model_dir}: cannot write the model ({error.strerror or error}); free space or choose another --out"
        )
    print(_describe_result(result))
    return 0


def _given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The options among `names` that the command has and the user set (options are named as the settings)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _describe_result(result: dict[str, Any]) -> str:
    track, clip = result["metrics"]["track"], result["metrics"]["clip"]
    return (
        f"{result['model']} {result['clip_seconds']:g}s seed {result['seed']} ({result['split']}): "
        f"track accuracy {track['accuracy']:.3f} (macro-F1 {track['macro_f1']:.3f}), clip accuracy "
        f"{clip['accuracy']:.3f} on {result['n_tracks']['test']} test tracks; {result['params']:,} parameters, "
        f"{result['train_seconds']:.1f} s training, {result['epochs_run']} epochs\n"
        f"model directory: {result['model_dir']}"
    )
