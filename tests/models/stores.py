"""Tiny feature stores written straight through `FeatureStore`, for tests that need features but no audio.

Each genre lights up its own range of mel bands in a random half of the frames, over noise at a random
level, so a model can learn the genres from a handful of short tracks while no single frame gives it away.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genreflow.config import FeatureConfig
from storage.schema import SourceStamp, TrackRecord
from storage.store import FeatureStore

TINY_CONFIG = FeatureConfig()
GENRE_BAND_WIDTH = 12


def genre_spectrogram(genre_index: int, n_frames: int, rng: np.random.Generator, n_mels: int) -> np.ndarray:
    """(frames, mels) in dB: noise, plus the genre's bands in a random half of the frames."""
    frames = rng.normal(-50.0 + rng.uniform(-5, 5), 6.0, size=(n_frames, n_mels))
    lit = rng.random(n_frames) < 0.5
    bands = slice(genre_index * GENRE_BAND_WIDTH, (genre_index + 1) * GENRE_BAND_WIDTH)
    frames[np.ix_(lit, np.arange(n_mels)[bands])] += 15.0
    return frames.astype(np.float32)


def write_tiny_store(
    location: Path,
    genres: int = 3,
    tracks_per_genre: int = 4,
    n_frames: int = 130,
    seed: int = 0,
    config: FeatureConfig = TINY_CONFIG,
) -> FeatureStore:
    """A store of `genres` x `tracks_per_genre` tracks named like GTZAN's (`g0/g0.00000.wav`)."""
    store = FeatureStore.create_or_open(str(location), config)
    rng = np.random.default_rng(seed)
    for genre_index in range(genres):
        genre = f"g{genre_index}"
        for track in range(tracks_per_genre):
            track_id = f"{genre}/{genre}.{track:05d}.wav"
            frames = n_frames + int(rng.integers(-3, 4))  # tracks differ in length by a few frames, as GTZAN's do
            seconds = frames * config.hop_length / config.sample_rate
            record = TrackRecord(track_id, genre, frames, seconds, SourceStamp(track_id, 1, 1, track_id))
            store.write_track(record, genre_spectrogram(genre_index, frames, rng, config.n_mels))
    return store


def synthetic_audio_store(base: Path, tracks_per_genre: int, seconds: float, config: FeatureConfig) -> tuple[Path, str]:
    """The synthetic collection as WAVs under `base` and its features extracted by the extraction code itself.

    Idempotent, so several test modules can share one copy under pytest's session temporary folder.
    """
    from tasks.collection import scan_collection
    from tasks.extract import TrackFailure, extract_tracks, task_groups
    from tasks.synthetic import write_synthetic_collection

    root = write_synthetic_collection(base / "audio", tracks_per_genre=tracks_per_genre, seed=0, seconds=seconds)
    location = str(base / "store.zarr")
    tracks = scan_collection(root).tracks
    if len(FeatureStore.create_or_open(location, config).tracks()) < len(tracks):
        for group in task_groups(tracks, threads=1):
            results = extract_tracks(group, location, config, min_seconds=0.0)
            assert not [result for result in results if isinstance(result, TrackFailure)], results
    return root, location
