"""Checkpoint benchmark: what saving a cell's training state after every epoch adds to the epoch.

For each model and clip length: the model as training builds and compiles it, trained on random clips of the
shape of one gtzan-mini kfold:5 fold (56 training tracks x 6 crops = 336 clips, batches of 32, 11 steps) for
`--epochs` timed epochs after an untimed one (tracing). Then the work `recorder.EpochRecorder` does after an
epoch, timed on its own `--repeats` times: (a) the checkpoint (every model and optimizer variable and early
stopping's best weights copied out, encoded with its SHA-256, written under a temporary name and moved into
place on local disk), (b) the same plus the learning curves (TensorBoard event files written and copied to
the log folder). Overhead = its median seconds / the median epoch's seconds. Target: <= 3 % on local disk.

Last line JSON: {"cells": [{model, clip_seconds, parameters, checkpoint_mb, epoch_s, checkpoint_s,
checkpoint_overhead, with_curves_s, with_curves_overhead}], "max_overhead": x, "cpu": ...}.

    python bench/checkpoint.py
    python bench/checkpoint.py --models cnn --clips 5 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from genreflow.core import FeatureConfig, TrainingSettings
from genreflow.models.precision import cpu_model, dtype_policy, resolved_settings
from genreflow.models.registry import build_model, spec
from genreflow.tasks.training.checkpoint import STATE_FILE, Checkpoint
from genreflow.tasks.training.progress import FoldTracking

CLIPS_PER_EPOCH = 336  # a gtzan-mini kfold:5 fold: 56 training tracks x 6 crops
GENRES = 10


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "rnn", "crnn"])
    parser.add_argument("--clips", nargs="+", type=float, default=[5.0, 30.0], help="clip seconds (default 5 30)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per cell (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed saves per cell and kind (default 5)")
    return parser.parse_args()


def compiled_model(model: str, clip_seconds: float) -> Any:
    """The model as a cell trains it: its precision resolved for this machine, compiled as training does."""
    from genreflow.tasks.training.train import compile_for_training

    model_spec = spec(model)
    settings = resolved_settings(TrainingSettings(), model_spec)
    frames = model_spec.clip_frames(clip_seconds, FeatureConfig())
    with dtype_policy(settings.precision):
        network = build_model(model_spec, (frames, FeatureConfig().n_mels), GENRES)
    compile_for_training(network, settings.learning_rate)
    return network


def epoch_seconds(network: Any, epochs: int) -> float:
    """Median seconds of `epochs` epochs on random clips, after one untimed epoch."""
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(CLIPS_PER_EPOCH, *network.input_shape[1:])).astype(np.float32)
    labels = np.eye(GENRES, dtype=np.float32)[rng.integers(0, GENRES, CLIPS_PER_EPOCH)]
    network.fit(clips, labels, batch_size=32, epochs=1, verbose=0)
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        network.fit(clips, labels, batch_size=32, epochs=1, verbose=0)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def after_epoch_seconds(network: Any, folder: Path, repeats: int, with_curves: bool) -> float:
    """Median seconds of what the recorder does after an epoch, with or without the learning curves."""
    import keras

    from genreflow.tasks.training.curves import FoldCurves
    from genreflow.tasks.training.recorder import EpochRecorder

    curves = FoldCurves(str(folder / "curves"), {"model": network.name}) if with_curves else None
    stopping = keras.callbacks.EarlyStopping(restore_best_weights=True)
    stopping.set_model(network)
    stopping.on_train_begin()
    stopping.best_weights = network.get_weights()  # what a fold carries once it has a best epoch
    tracking = FoldTracking("bench", 0, 1, Checkpoint(str(folder / "checkpoint"), "train-bench"), curves)
    recorder = EpochRecorder(tracking, repeats, stopping, None)
    recorder.set_model(network)
    logs = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5}
    times = []
    for epoch in range(repeats):
        started = time.perf_counter()
        recorder.on_epoch_end(epoch, logs)
        times.append(time.perf_counter() - started)
    if curves is not None:
        curves.close()
    return statistics.median(times)


def measure(model: str, clip_seconds: float, epochs: int, repeats: int) -> dict[str, Any]:
    import keras

    keras.backend.clear_session()
    network = compiled_model(model, clip_seconds)
    epoch = epoch_seconds(network, epochs)
    with tempfile.TemporaryDirectory(prefix="genreflow-bench-checkpoint-") as scratch:
        checkpoint = after_epoch_seconds(network, Path(scratch) / "a", repeats, with_curves=False)
        size = (Path(scratch) / "a" / "checkpoint" / STATE_FILE).stat().st_size
        with_curves = after_epoch_seconds(network, Path(scratch) / "b", repeats, with_curves=True)
    return {
        "model": model,
        "clip_seconds": clip_seconds,
        "parameters": int(network.count_params()),
        "checkpoint_mb": round(size / 1e6, 2),
        "epoch_s": round(epoch, 3),
        "checkpoint_s": round(checkpoint, 4),
        "checkpoint_overhead": round(checkpoint / epoch, 4),
        "with_curves_s": round(with_curves, 4),
        "with_curves_overhead": round(with_curves / epoch, 4),
    }


def main() -> None:
    args = parse_arguments()
    cells = []
    for model in args.models:
        for clip in args.clips:
            cells.append(measure(model, clip, args.epochs, args.repeats))
            print(
                "{model} {clip_seconds:g}s: {parameters} parameters, checkpoint {checkpoint_mb} MB, epoch "
                "{epoch_s} s, checkpoint {checkpoint_s} s ({checkpoint_overhead:.2%}), with curves "
                "{with_curves_s} s ({with_curves_overhead:.2%})".format(**cells[-1]),
                flush=True,
            )
    worst = max(cell["with_curves_overhead"] for cell in cells)
    print(json.dumps({"cells": cells, "max_overhead": worst, "cpu": cpu_model()}))


if __name__ == "__main__":
    main()
