"""Tiny stores written straight through `FeatureSet`, for tests that need features but no audio, and the
synthetic collection extracted by the extraction code itself, for tests that need both.

Each genre lights up its own range of mel bands in a random half of the frames, over noise at a random
level, so a model can learn the genres from a handful of short tracks while no single frame gives it away.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genreflow.core import FeatureConfig
from genreflow.storage.schema import CollectionTrack, TrackRecord
from genreflow.storage.store import FeatureSet, Store
from genreflow.tasks.training.train import TrainingData

TINY_CONFIG = FeatureConfig()
GENRE_BAND_WIDTH = 12
TINY_ROOT = "/music/tiny"  # the collection folder the tiny stores' tracks are recorded under


def genre_spectrogram(genre_index: int, n_frames: int, rng: np.random.Generator, n_mels: int) -> np.ndarray:
    """(frames, mels) in dB: noise, plus the genre's bands in a random half of the frames."""
    frames = rng.normal(-50.0 + rng.uniform(-5, 5), 6.0, size=(n_frames, n_mels))
    lit = rng.random(n_frames) < 0.5
    bands = slice(genre_index * GENRE_BAND_WIDTH, (genre_index + 1) * GENRE_BAND_WIDTH)
    frames[np.ix_(lit, np.arange(n_mels)[bands])] += 15.0
    return frames.astype(np.float32)


def tiny_key(track_id: str, seed: int = 0) -> str:
    """A made-up content key, unique per track id and seed (the tiny stores have no audio to hash)."""
    return f"{seed:04d}{track_id.encode().hex()}"[:32].ljust(32, "0")


def write_tiny_store(
    location: Path,
    genres: int = 3,
    tracks_per_genre: int = 4,
    n_frames: int = 130,
    seed: int = 0,
    config: FeatureConfig = TINY_CONFIG,
    root: str = TINY_ROOT,
) -> TrainingData:
    """A store of `genres` x `tracks_per_genre` tracks named like GTZAN's (`g0/g0.00000.wav`), recorded as the
    collection `root`; returns what training on all of them is given."""
    feature_set = FeatureSet.create_or_open(str(location), config)
    rng = np.random.default_rng(seed)
    tracks, written = [], []
    for genre_index in range(genres):
        genre = f"g{genre_index}"
        for track in range(tracks_per_genre):
            track_id = f"{genre}/{genre}.{track:05d}.wav"
            key = tiny_key(track_id, seed)
            frames = n_frames + int(rng.integers(-3, 4))  # tracks differ in length by a few frames, as GTZAN's do
            seconds = frames * config.hop_length / config.sample_rate
            written.append(
                (
                    TrackRecord(key, frames, seconds, f"{root}/{track_id}"),
                    genre_spectrogram(genre_index, frames, rng, config.n_mels),
                )
            )
            tracks.append(CollectionTrack(track_id, genre, key))
    feature_set.write_tracks(written)
    record = Store.create_or_open(str(location)).record_collection(root, tracks)
    return TrainingData(str(location), config, root, record.tracks)


def synthetic_audio_store(
    base: Path, tracks_per_genre: int, seconds: float, config: FeatureConfig
) -> tuple[Path, TrainingData]:
    """The synthetic collection as WAVs under `base` and its features extracted by the extraction code itself.

    Idempotent, so several test modules can share one copy under pytest's session temporary folder.
    """
    from genreflow.tasks.collection.scan import scan_collection
    from genreflow.tasks.collection.synthetic import write_synthetic_collection
    from genreflow.tasks.features.extract import TrackFailure, extract_tracks, task_groups

    root = write_synthetic_collection(base / "audio", tracks_per_genre=tracks_per_genre, seed=0, seconds=seconds)
    location = str(base / "store.zarr")
    collection = scan_collection(root)
    if len(FeatureSet.create_or_open(location, config).tracks()) < len(collection.tracks):
        for group in task_groups(collection.tracks, threads=1):
            results = extract_tracks(group, location, config)
            assert not [result for result in results if isinstance(result, TrackFailure)], results
    tracks = [CollectionTrack(track.track_id, track.genre, track.key) for track in collection.tracks]
    record = Store.create_or_open(location).record_collection(collection.root, tracks)
    return root, TrainingData(location, config, record.root, record.tracks)
