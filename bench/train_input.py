"""Input-pipeline benchmark: training steps per second fed from the Zarr stream vs from in-memory arrays.

One model (default: the CNN on 5 s clips, batch 32) trains for the same number of steps on two feeds:
  1. stream: the training dataset's tf.data pipeline exactly as training uses it (new random crops every epoch,
     `--augment` applied to each, per-track span reads on threads, prefetch);
  2. memory: one epoch of the same crops (augmented once) read beforehand into RAM, fed by
     `tf.data.Dataset.from_tensor_slices` (reshuffled every epoch, batched, prefetched): the fastest feed there is.
Each feed gets one untimed warm-up epoch (tracing), then two rounds of `--epochs` timed epochs, in the order
stream, memory, memory, stream. `peak_rss_mb` is the process's peak resident memory after the first
streaming round, before the in-memory copy exists (its size is reported as `memory_copy_mb`).

Without `--store`, a temporary store of `--tracks` 30 s tracks of random float16 features is written first
(noise compresses worse than music, so reads are if anything slower than on a real store).
Last line: JSON with stream_steps_per_s, memory_steps_per_s, stream_vs_memory (target >= 0.9 on CPU: the
input pipeline is not the bottleneck), peak_rss_mb and the settings.

    python bench/train_input.py
    python bench/train_input.py --store /tmp/gtzan-mini.zarr --model cnn --clip 5 --augment specaugment
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genreflow.core import AUGMENTATIONS, DEFAULT_CROPS_PER_TRACK, FeatureConfig
from genreflow.storage.schema import CollectionTrack, TrackRecord
from genreflow.storage.store import FeatureSet, Store
from genreflow.tasks.training.dataset import (
    Batch,
    ClipStream,
    epoch_batches,
    fit_band_normaliser,
    labelled_tracks,
    to_tf_dataset,
    training_clip_count,
)
from genreflow.tasks.training.train import TrainingData

TRACK_FRAMES = 1292  # 30 s
GENRES = 10


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="an existing store holding one collection (default: write a temporary one)")
    parser.add_argument("--tracks", type=int, default=60, help="tracks of the temporary store (default 60)")
    parser.add_argument("--model", default="cnn", help="model to train (default cnn)")
    parser.add_argument("--clip", type=float, default=5.0, help="clip seconds (default 5)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per feed and round; 2 rounds (default 1)")
    parser.add_argument("--crops-per-track", type=int, default=DEFAULT_CROPS_PER_TRACK, help="as training's setting")
    parser.add_argument("--augment", choices=AUGMENTATIONS, default="none", help="what the stream does to each crop")
    return parser.parse_args()


def write_noise_store(location: Path, tracks: int) -> TrainingData:
    """`tracks` tracks of 30 s of random log-mel-like values, spread over `GENRES` genres, as one collection."""
    config = FeatureConfig()
    store = FeatureSet.create_or_open(str(location), config)
    rng = np.random.default_rng(0)
    collection = []
    for index in range(tracks):
        genre = f"genre{index % GENRES}"
        track_id, key = f"{genre}/{genre}.{index:05d}.wav", f"noise{index:027d}"
        record = TrackRecord(key, TRACK_FRAMES, 30.0, track_id)
        store.write_tracks([(record, rng.normal(-40, 12, size=(TRACK_FRAMES, config.n_mels)).astype(np.float32))])
        collection.append(CollectionTrack(track_id, genre, key))
    Store.create_or_open(str(location)).record_collection("noise", collection)
    return TrainingData(str(location), config, "noise", tuple(collection))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up(model: Any, data: Any, **fit_options: Any) -> None:
    """One untimed epoch: Keras traces its training function for this feed."""
    model.fit(data, epochs=1, verbose=0, **fit_options)


def timed_fit(model: Any, data: Any, epochs: int, **fit_options: Any) -> float:
    started = time.perf_counter()
    model.fit(data, epochs=epochs, verbose=0, **fit_options)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Setup:
    """One model, compiled, and the streaming feed of its training epochs."""

    model: Any
    stream: ClipStream
    batches: Callable[[], Iterator[Batch]]
    steps: int
    tracks: int
    genres: int


def set_up(args: argparse.Namespace, scratch: Path) -> Setup:
    import keras

    from genreflow.models.registry import build_model

    if args.store:
        data = TrainingData.from_store(args.store, FeatureConfig())
    else:
        data = write_noise_store(scratch / "store.zarr", args.tracks)
    store = FeatureSet.open(data.store, data.feature_config)
    records = labelled_tracks(store, data.tracks)
    genre_index = {genre: index for index, genre in enumerate(sorted({record.genre for record in records}))}
    clip_frames = store.feature_config.frames_for(args.clip)
    normaliser = fit_band_normaliser(store, [record.key for record in records])
    stream = ClipStream(store, clip_frames, normaliser, args.batch_size)
    keras.utils.set_random_seed(0)
    model = build_model(args.model, (clip_frames, store.feature_config.n_mels), len(genre_index))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return Setup(
        model=model,
        stream=stream,
        batches=epoch_batches(stream, records, genre_index, args.crops_per_track, (0,), args.augment, as_targets=True),
        steps=stream.batch_count(training_clip_count(records, clip_frames, args.crops_per_track)),
        tracks=len(records),
        genres=len(genre_index),
    )


def measure(setup: Setup, epochs: int) -> dict[str, float]:
    """Seconds per feed, timed in the order stream, memory, memory, stream so that a drift in load cancels out."""
    streamed = to_tf_dataset(setup.batches, setup.stream, setup.steps, setup.genres)
    warm_up(setup.model, streamed, shuffle=False)
    stream_seconds = timed_fit(setup.model, streamed, epochs, shuffle=False)
    peak_streaming = rss_mb()
    clips, labels = (np.concatenate(parts) for parts in zip(*setup.batches(), strict=True))
    in_memory = in_memory_dataset(clips, labels, setup.stream.batch_size)
    warm_up(setup.model, in_memory, shuffle=False)
    memory_seconds = sum(timed_fit(setup.model, in_memory, epochs, shuffle=False) for _ in range(2))
    stream_seconds += timed_fit(setup.model, streamed, epochs, shuffle=False)
    return {
        "stream_seconds": stream_seconds,
        "memory_seconds": memory_seconds,
        "peak_rss_mb": peak_streaming,
        "memory_copy_mb": clips.nbytes / 2**20,
    }


def in_memory_dataset(clips: np.ndarray, labels: np.ndarray, batch_size: int) -> Any:
    """The fastest in-memory feed tf.data offers: tensors in RAM, reshuffled each epoch, batched, prefetched."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((clips, labels)).shuffle(len(clips), seed=0)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def main() -> None:
    args = parse_arguments()
    with tempfile.TemporaryDirectory(prefix="train-input-") as scratch:
        setup = set_up(args, Path(scratch))
        print(f"{setup.tracks} tracks, {setup.steps} steps per epoch of {args.batch_size} {args.clip:g} s clips")
        timings = measure(setup, args.epochs)
    timed_steps = 2 * args.epochs * setup.steps
    summary = {
        "model": args.model,
        "clip_seconds": args.clip,
        "batch_size": args.batch_size,
        "crops_per_track": args.crops_per_track,
        "augment": args.augment,
        "tracks": setup.tracks,
        "steps_per_epoch": setup.steps,
        "timed_epochs_per_feed": 2 * args.epochs,
        "stream_steps_per_s": round(timed_steps / timings["stream_seconds"], 3),
        "memory_steps_per_s": round(timed_steps / timings["memory_seconds"], 3),
        "stream_vs_memory": round(timings["memory_seconds"] / timings["stream_seconds"], 3),
        "peak_rss_mb": round(timings["peak_rss_mb"], 1),
        "memory_copy_mb": round(timings["memory_copy_mb"], 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
