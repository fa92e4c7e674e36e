"""Clips streamed out of the feature store for training, validation and evaluation; never the whole store.

A *plan* lists, per track, where its clips start. Training draws a new plan every epoch: the tracks in a
random order, `crops_per_track` random crops from each (6 by default at every clip length, overlapping where
a track holds fewer clips, so that a 30 s cell takes as many optimiser steps per epoch as a 1 s one; None
takes as many as the track holds: 30 at 1 s, 6 at 5 s, 1 at 30 s). Evaluation uses every non-overlapping
clip of each track, at least one.

Reading: each track's clips come from one `FeatureSet.read` of the frames they span (a crop read costs
about as much as a whole 30 s track here, so one read per track beats one per crop). Tracks are read in
windows, on a few threads, with the next window read while the current one is batched; a window holds at
most a third of `memory_cap_mb`, so two windows and their clips stay under the cap, plus the batches
TensorFlow prefetches. Training shuffles the clips within what is in memory (the current window and any
clips left over from earlier ones), after the track order itself was shuffled.

A clip a little longer than its track is mirror-padded at the end; how much longer it may be, and why, is
`genreflow.tasks.features.clips`'s rule (tracks shorter still are left out by `train.split_by_length`).

Normalisation is per mel band: the mean and standard deviation of every frame of the training tracks,
kept with the model; it decides whether the networks learn at all on real music (docs: training facts).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from genreflow.core import DEFAULT_MEMORY_CAP_MB
from genreflow.models import import_tensorflow
from genreflow.models.normalisation import BandNormaliser
from genreflow.storage.schema import CollectionTrack, DamagedTrackError, StoreError
from genreflow.storage.store import FeatureSet
from genreflow.tasks.features.clips import clip_count_of, cut_clips, evaluation_starts
from genreflow.tasks.training.augment import AUGMENT_STREAM, MIXUP_STREAM, augmented, genre_targets

if TYPE_CHECKING:
    import tensorflow as tf

READ_THREADS = 2
PREFETCH_BATCHES = 2
STD_FLOOR_DB = 1e-2  # a band that never changes (e.g. always at the top_db floor) is only centred
Batch = tuple[np.ndarray, np.ndarray]  # clips (n, frames, mels) float32, labels (n,) int32 or (n, genres)


@dataclass(frozen=True)
class LabelledTrack:
    """A track as training sees it: its id and genre (from the collection), content key and length in frames
    (from the store)."""

    track_id: str
    genre: str
    key: str
    n_frames: int


@dataclass(frozen=True)
class TrackClips:
    """The clips to cut from one track: its content key, the genre's index and where each clip starts."""

    track_id: str
    key: str
    label: int
    starts: tuple[int, ...]

    def span(self, clip_frames: int) -> tuple[int, int]:
        """The frames [first, stop) that cover every clip: the one read this track costs."""
        return min(self.starts), max(self.starts) + clip_frames


def labelled_tracks(store: FeatureSet, tracks: Sequence[CollectionTrack]) -> list[LabelledTrack]:
    """`tracks` as stored, ready to stream; refuses, naming them, tracks the store lacks or holds damaged
    (never reads a damaged chunk as data)."""
    records = {track.track_id: store.track(track.key) for track in tracks}
    missing = sorted(track_id for track_id, record in records.items() if record is None)
    if missing:
        raise StoreError(
            f"{store.location} lacks {len(missing)} of the tracks asked for ({_listed(missing)}); extract them "
            "first (genreflow extract, or genreflow run)"
        )
    damage = store.check(track.key for track in tracks)
    damaged = sorted(f"{track.track_id} ({damage[track.key]})" for track in tracks if track.key in damage)
    if damaged:
        raise StoreError(
            f"{store.location} holds damaged copies of {len(damaged)} track(s), which are not trained on: "
            f"{_listed(damaged)}. `genreflow extract` (or the flow) extracts them again from their files"
        )
    return [LabelledTrack(t.track_id, t.genre, t.key, records[t.track_id].n_frames) for t in tracks]


def _listed(names: Sequence[str], shown: int = 5) -> str:
    """The first few names, and how many more."""
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return "; ".join(names[:shown]) + more


# ---- plans -----------------------------------------------------------------------------------------------
def evaluation_plan(
    tracks: Sequence[LabelledTrack], genre_index: Mapping[str, int], clip_frames: int
) -> list[TrackClips]:
    """Every non-overlapping clip of each track, in track order."""
    return [
        TrackClips(track.track_id, track.key, genre_index[track.genre], evaluation_starts(track.n_frames, clip_frames))
        for track in tracks
    ]


def training_plan(
    tracks: Sequence[LabelledTrack],
    genre_index: Mapping[str, int],
    clip_frames: int,
    crops_per_track: int | None,
    rng: np.random.Generator,
) -> list[TrackClips]:
    """One epoch: the tracks in random order, each with its random crops."""
    plan = []
    for index in rng.permutation(len(tracks)):
        track = tracks[index]
        latest_start = max(0, track.n_frames - clip_frames)
        starts = rng.integers(0, latest_start + 1, size=_crops_of(track, clip_frames, crops_per_track))
        label = genre_index[track.genre]
        plan.append(TrackClips(track.track_id, track.key, label, tuple(int(start) for start in starts)))
    return plan


def training_clip_count(tracks: Sequence[LabelledTrack], clip_frames: int, crops_per_track: int | None) -> int:
    """How many crops an epoch of `training_plan` holds (the same every epoch)."""
    return sum(_crops_of(track, clip_frames, crops_per_track) for track in tracks)


def clip_count(plan: Sequence[TrackClips]) -> int:
    return sum(len(item.starts) for item in plan)


def _crops_of(track: LabelledTrack, clip_frames: int, crops_per_track: int | None) -> int:
    """`crops_per_track` crops, overlapping where the track holds fewer clips, so that every clip length takes
    as many optimiser steps per epoch; None: as many as the track holds (the same audio per epoch instead)."""
    return clip_count_of(track.n_frames, clip_frames) if crops_per_track is None else crops_per_track


# ---- normalisation ---------------------------------------------------------------------------------------
def fit_band_normaliser(store: FeatureSet, keys: Sequence[str]) -> BandNormaliser:
    """Per-band mean and standard deviation over every frame of the tracks `keys`, a few tracks at a time."""
    if not keys:
        raise ValueError("normalisation needs at least one training track")
    n_mels = store.feature_config.width
    total, total_squares, count = np.zeros(n_mels), np.zeros(n_mels), 0
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for first in range(0, len(keys), 4 * READ_THREADS):
            for frames in pool.map(store.read, keys[first : first + 4 * READ_THREADS]):
                frames64 = frames.astype(np.float64)
                total += frames64.sum(axis=0)
                total_squares += np.square(frames64).sum(axis=0)
                count += frames.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_squares / count - np.square(mean), 0.0))
    return BandNormaliser(mean.astype(np.float32), np.maximum(std, STD_FLOOR_DB).astype(np.float32))


# ---- streaming -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipStream:
    """Where clips come from and how they are batched: what training, validation and evaluation share."""

    store: FeatureSet
    clip_frames: int
    normaliser: BandNormaliser
    batch_size: int
    memory_cap_mb: float = DEFAULT_MEMORY_CAP_MB

    def batches(self, plan: Sequence[TrackClips], rng: np.random.Generator | None = None) -> Iterator[Batch]:
        """(clips, labels) batches: in plan order, or shuffled within what is in memory when `rng` is given."""
        clips: list[np.ndarray] = []
        labels: list[int] = []
        windows = self._windows(plan)
        with ThreadPoolExecutor(READ_THREADS) as pool:
            ahead = self._submit(pool, next(windows, []))
            while ahead:
                current, ahead = ahead, self._submit(pool, next(windows, []))
                for item, future in current:
                    track_clips = future.result()
                    clips.extend(track_clips)
                    labels.extend([item.label] * len(track_clips))
                if rng is not None:
                    order = rng.permutation(len(clips))
                    clips, labels = [clips[i] for i in order], [labels[i] for i in order]
                while len(clips) >= self.batch_size:
                    yield _batch(clips[: self.batch_size], labels[: self.batch_size])
                    del clips[: self.batch_size], labels[: self.batch_size]
        if clips:
            yield _batch(clips, labels)

    def batch_count(self, n_clips: int) -> int:
        return -(-n_clips // self.batch_size)

    def read_clips(self, item: TrackClips) -> np.ndarray:
        """One track's clips, normalised, from a single read of the frames they span."""
        first, stop = item.span(self.clip_frames)
        try:
            frames = self.normaliser.apply(self.store.read(item.key, first, stop))
        except DamagedTrackError as error:
            raise error.named(item.track_id) from error
        return cut_clips(frames, [start - first for start in item.starts], self.clip_frames)

    def _submit(self, pool: ThreadPoolExecutor, window: Sequence[TrackClips]) -> list[tuple[TrackClips, Future]]:
        return [(item, pool.submit(self.read_clips, item)) for item in window]

    def _windows(self, plan: Sequence[TrackClips]) -> Iterator[list[TrackClips]]:
        """Consecutive runs of the plan whose reads and clips take at most a third of the memory cap."""
        budget = self.memory_cap_mb * 2**20 / 3
        bytes_per_frame = 4 * self.store.feature_config.width * 2  # float32, and one temporary while normalising
        window: list[TrackClips] = []
        used = 0.0
        for item in plan:
            first, stop = item.span(self.clip_frames)
            cost = bytes_per_frame * (stop - first + len(item.starts) * self.clip_frames)
            if window and used + cost > budget:
                yield window
                window, used = [], 0.0
            window.append(item)
            used += cost
        if window:
            yield window


def _batch(clips: list[np.ndarray], labels: list[int]) -> Batch:
    return np.stack(clips), np.asarray(labels, dtype=np.int32)


def epoch_batches(
    stream: ClipStream,
    tracks: Sequence[LabelledTrack],
    genre_index: Mapping[str, int],
    crops_per_track: int | None,
    seed: Sequence[int],
    augment: str = "none",
    first_epoch: int = 0,
    as_targets: bool = False,
) -> Callable[[], Iterator[Batch]]:
    """A callable that yields one epoch of newly drawn crops, augmented as `augment` says, each time it is
    called (Keras: once per epoch), the first being epoch `first_epoch` (a resumed fold's next). Labels are
    genre numbers, or with `as_targets` genre probabilities (what a network trains towards, and mixup blends)."""
    epochs = itertools.count(first_epoch)

    def one_epoch() -> Iterator[Batch]:
        epoch = next(epochs)
        rng = np.random.default_rng([*seed, epoch])
        plan = training_plan(tracks, genre_index, stream.clip_frames, crops_per_track, rng)
        masks = np.random.default_rng([*seed, epoch, AUGMENT_STREAM])
        batches = augmented(stream.batches(plan, rng), augment, masks)
        if not as_targets:
            return batches
        return genre_targets(batches, len(genre_index), augment, np.random.default_rng([*seed, epoch, MIXUP_STREAM]))

    return one_epoch


def to_tf_dataset(
    batches: Callable[[], Iterator[Batch]], stream: ClipStream, batch_count: int, genres: int
) -> tf.data.Dataset:
    """A `tf.data` pipeline over `batches` of genre probabilities (called afresh per pass) that reads ahead
    `PREFETCH_BATCHES`."""
    tf = import_tensorflow()  # deferred: nothing else in this module needs TensorFlow
    signature = (
        tf.TensorSpec((None, stream.clip_frames, stream.store.feature_config.width), tf.float32),
        tf.TensorSpec((None, genres), tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(batch_count)).prefetch(PREFETCH_BATCHES)
