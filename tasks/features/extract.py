"""Extraction: plan what the store lacks, then turn tracks into log-mels on Dask workers.

Each Dask task decodes a few tracks, computes their log-mels and writes them into the store itself, as one
batch; the client only ever receives a `TrackOutcome` of a few numbers per track, never features.

Features are stored by content key (storage/schema.py): a track is extracted when the store lacks a
complete, undamaged copy of its key, whatever its name or timestamps. Two kinds of failure are kept apart:
- the content's fault (`AudioError`: corrupt, silent, empty, ...): the key is quarantined in the store with
  its reason and the run goes on;
- the environment's fault (the store's disk is full or read-only, the file vanished or changed during the
  run): nothing is quarantined, the track is left incomplete (so the next run redoes it) and `extract_batch`
  raises `ExtractionError` naming every such track, for the caller (the flow's retry) to try again.

Every track that decodes is kept, whatever its length: clip length is a training-time choice.
Dask workers run with `MALLOC_TRIM_THRESHOLD_` removed and BLAS/OpenMP pinned to one thread; see
genreflow/tasks/cluster.py for why.
"""

from __future__ import annotations

import gc
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

from genreflow.core import FeatureConfig
from genreflow.storage.schema import CollectionRecord, QuarantineRecord, TrackRecord
from genreflow.storage.store import FeatureSet
from genreflow.tasks.collection.scan import Collection, SourceTrack, content_key
from genreflow.tasks.collection.sources import read_source
from genreflow.tasks.features.audio import AudioError, decode_audio
from genreflow.tasks.features.compute import compute_features, too_short_for

if TYPE_CHECKING:
    from distributed import Client, Future


@dataclass(frozen=True)
class TrackOutcome:
    """What became of one track: all the client ever receives from a worker."""

    track_id: str
    status: Literal["extracted", "quarantined"]
    reason: str | None
    audio_seconds: float
    seconds: float


@dataclass(frozen=True)
class ExtractionPlan:
    """Which tracks to extract, which are complete already, and why each one is to be done.

    `todo` holds one track per content key: a file copied under two names is extracted once."""

    todo: list[SourceTrack]
    skipped: list[str]
    reasons: dict[str, str] = field(default_factory=dict)  # track id -> why it is in `todo`


class ExtractionError(RuntimeError):
    """Tracks that failed through no fault of their audio (store or disk); retry once the cause is fixed."""

    def __init__(self, failures: dict[str, str], outcomes: list[TrackOutcome]) -> None:
        listing = "; ".join(f"{track_id}: {problem}" for track_id, problem in sorted(failures.items()))
        super().__init__(
            f"{len(failures)} track(s) failed for a reason other than their audio (store, disk or worker) and "
            f"were not quarantined; they stay incomplete and the next run redoes them: {listing}"
        )
        self.failures = failures
        self.outcomes = outcomes

    def __reduce__(self) -> tuple[type, tuple[dict[str, str], list[TrackOutcome]]]:
        """Pickle by the constructor's arguments (Prefect and Dask move exceptions between processes)."""
        return type(self), (self.failures, self.outcomes)


class StoreWriteError(OSError):
    """Writing a track's result into the store failed: the store's problem, never the file's."""


class SourceChanged(OSError):
    """A file's bytes differ from those the plan keyed it by: it changed while the run was reading it."""


# ---- planning --------------------------------------------------------------------------------------------
def plan_extraction(
    collection: Collection, feature_set: FeatureSet, previous: CollectionRecord | None = None
) -> ExtractionPlan:
    """Extract every key the feature set lacks a complete, undamaged copy of (once per key); skip the rest.

    `previous`, the store's record of the same folder from its last extraction, only words the reasons
    ("changed since it was last extracted" rather than "new").
    """
    complete = {record.key for record in feature_set.tracks()}
    wanted = [track.key for track in collection.tracks if track.key in complete]
    known = _KnownState(
        complete=complete,
        damaged=feature_set.check(wanted),
        incomplete=set(feature_set.incomplete_keys()),
        quarantined={record.key for record in feature_set.quarantined()},
        earlier_keys={track.track_id: track.key for track in previous.tracks} if previous else {},
    )
    todo: dict[str, SourceTrack] = {}
    skipped: list[str] = []
    reasons: dict[str, str] = {}
    for track in collection.tracks:
        reason = known.why_extract(track)
        if reason is None:
            skipped.append(track.track_id)
        elif track.key not in todo:
            todo[track.key] = track
            reasons[track.track_id] = reason
    return ExtractionPlan(list(todo.values()), skipped, reasons)


@dataclass(frozen=True)
class _KnownState:
    """What the store says of the keys a plan asks about."""

    complete: set[str]
    damaged: dict[str, str]  # key -> why its stored copy cannot be trusted
    incomplete: set[str]
    quarantined: set[str]
    earlier_keys: dict[str, str]  # track id -> key, as the folder was last extracted

    def why_extract(self, track: SourceTrack) -> str | None:
        if track.key in self.damaged:
            return f"damaged in the store ({self.damaged[track.key]})"
        if track.key in self.complete:
            return None
        if track.key in self.incomplete:
            return "incomplete: an earlier extraction stopped mid-write"
        if track.key in self.quarantined:
            return "quarantined before: trying again"
        if self.earlier_keys.get(track.track_id, track.key) != track.key:
            return "changed since it was last extracted"
        return "new"


# ---- tracks on a worker --------------------------------------------------------------------------------
# Dask's round trip per task and the store's cost per batch array are spread over a task's tracks (a task's
# tracks are one batch, see storage/schema.py): per track, 26.5 ms in tasks of 8 and 19.6 in tasks of 32
# (docs/benchmarks.md).
MEAN_TRACKS_PER_TASK = 32
# ...but each worker needs several tasks, so that all of them finish at about the same time.
MIN_TASKS_PER_WORKER = 4
# A task writes what it holds once its features pass this size (long tracks), not only at its end.
WRITE_BUFFER_BYTES = 64 * 2**20


@dataclass(frozen=True)
class TrackFailure:
    """A track that raised on its worker for a reason other than its audio (see `ExtractionError`)."""

    track_id: str
    error: str


@dataclass(frozen=True)
class _Extracted:
    """A track's features, computed and waiting to be written with the rest of its batch."""

    track_id: str
    record: TrackRecord
    features: np.ndarray
    seconds: float


def extract_tracks(
    tracks: list[SourceTrack], store_location: str, feature_config: FeatureConfig
) -> list[TrackOutcome | TrackFailure]:
    """Decode and log-mel several tracks (one Dask task), then store them as one batch.

    Content that is unusable is quarantined as it comes. A track that raises for another reason is
    returned as a `TrackFailure`, not raised, so the others still count; if the batch write itself fails,
    each of its tracks is such a failure (and stays incomplete in the store).
    """
    feature_set = _open_feature_set(store_location, feature_config)
    results: dict[str, TrackOutcome | TrackFailure] = {}
    pending: list[_Extracted] = []
    for track in tracks:
        try:
            done = _extract_features(track, feature_set, feature_config)
        except Exception as error:  # whatever a worker raised, the batch goes on and the error names it
            results[track.track_id] = TrackFailure(track.track_id, _describe(error))
            continue
        if isinstance(done, TrackOutcome):
            results[track.track_id] = done
            continue
        pending.append(done)
        if sum(item.features.nbytes for item in pending) >= WRITE_BUFFER_BYTES:
            results.update(_write_pending(feature_set, pending))
            pending = []
    results.update(_write_pending(feature_set, pending))
    _freeze_what_is_loaded()
    return [results[track.track_id] for track in tracks]


@lru_cache(maxsize=1)
def _freeze_what_is_loaded() -> None:
    """Once per worker process, after its first task: move every object alive now (modules, librosa, numba,
    Zarr) out of the garbage collector's sight. Dask's messages make full collections frequent, and each
    walked those hundreds of thousands of objects: a fifth of a core per worker's event loop, measured with
    perf, against a thirtieth with this."""
    gc.collect()
    gc.freeze()


def _extract_features(
    track: SourceTrack, feature_set: FeatureSet, feature_config: FeatureConfig
) -> _Extracted | TrackOutcome:
    """The track's features, or, where its content is unusable, the outcome of quarantining it."""
    started = time.perf_counter()
    data = read_source(track.path)
    if content_key(data) != track.key:
        raise SourceChanged(f"{track.path} changed after it was scanned: run again to extract its new content")
    try:
        audio = decode_audio(data, track.path, feature_config.sample_rate)
        unusable = too_short_for(audio, feature_config)
    except AudioError as error:
        unusable = error.reason
    if unusable:
        quarantine = QuarantineRecord(track.key, unusable, track.path)
        _write_or_fail(feature_set, lambda: feature_set.quarantine(quarantine))
        return TrackOutcome(track.track_id, "quarantined", unusable, 0.0, time.perf_counter() - started)
    features = compute_features(audio, feature_config)
    record = TrackRecord(track.key, features.shape[0], audio.size / feature_config.sample_rate, track.path)
    return _Extracted(track.track_id, record, features, time.perf_counter() - started)


def _write_pending(feature_set: FeatureSet, pending: list[_Extracted]) -> dict[str, TrackOutcome | TrackFailure]:
    """Write `pending` as one batch; each track's time includes its share of the write."""
    if not pending:
        return {}
    started = time.perf_counter()
    try:
        _write_or_fail(
            feature_set, lambda: feature_set.write_tracks([(item.record, item.features) for item in pending])
        )
    except Exception as error:
        return {item.track_id: TrackFailure(item.track_id, _describe(error)) for item in pending}
    share = (time.perf_counter() - started) / len(pending)
    return {
        item.track_id: TrackOutcome(item.track_id, "extracted", None, item.record.duration_s, item.seconds + share)
        for item in pending
    }


@lru_cache(maxsize=8)
def _open_feature_set(location: str, feature_config: FeatureConfig) -> FeatureSet:
    """One store handle per worker process, not one per task."""
    return FeatureSet.create_or_open(location, feature_config)


def _write_or_fail(feature_set: FeatureSet, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as error:
        raise StoreWriteError(
            f"writing to the store {feature_set.location} failed: {error.strerror or error}"
        ) from error


# ---- many tracks on Dask --------------------------------------------------------------------------------
def extract_batch(
    batch: list[SourceTrack],
    store_location: str,
    feature_config: FeatureConfig,
    client: Client,
    on_progress: Callable[[int], None] | None = None,
) -> list[TrackOutcome]:
    """Extract `batch` on `client`'s workers; outcomes in batch order. `on_progress` is told, as each task
    finishes, how many tracks it held.

    The outcomes are fetched in one gather once every task has finished, not task by task as they finish: a
    fetch goes through the scheduler to the worker, whose event loop then competes with the task it is
    running (7 % of the stage's wall time, docs/design.md).

    Raises `ExtractionError` after the whole batch has run if any track failed for a reason other than
    its audio; the others are written (and listed in the error's `outcomes`).
    """
    from distributed import as_completed

    FeatureSet.create_or_open(store_location, feature_config)  # headers first, before workers race to them
    groups = task_groups(batch, sum(client.nthreads().values()))
    futures = client.map(
        _extract_task,
        groups,
        store_location=store_location,
        feature_config=feature_config,
        pure=False,
        key="extract_tracks",  # the dashboard's name for these tasks
    )
    if on_progress is not None:  # otherwise the gather below does the waiting
        tracks_in = {future.key: len(group) for future, group in zip(futures, groups, strict=True)}
        for future in as_completed(futures):  # finished, not fetched
            on_progress(tracks_in[future.key])
    outcomes: dict[str, TrackOutcome] = {}
    failures: dict[str, str] = {}
    for result in _all_results(client, futures, groups):
        if isinstance(result, TrackFailure):
            failures[result.track_id] = result.error
        else:
            outcomes[result.track_id] = result
    ordered = [outcomes[track.track_id] for track in batch if track.track_id in outcomes]
    if failures:
        raise ExtractionError(failures, ordered)
    return ordered


def task_groups(batch: list[SourceTrack], threads: int) -> list[list[SourceTrack]]:
    """`batch` cut into Dask tasks, in order: at least MIN_TASKS_PER_WORKER per thread, on average at most
    MEAN_TRACKS_PER_TASK tracks, their number a multiple of `threads` where there are tracks enough.

    The tasks come in rounds of `threads` and shrink from round to round (each gets one track, the rest are
    shared in proportion rounds + 1, rounds, ..., 2 from the first round to the last; a round's tasks are
    within one track of each other): the workers' last tasks are short, so a worker that ran slower keeps
    the other waiting less at the end. 70 tracks on 2 workers: 13, 13, 10, 10, 7, 7, 5, 5.
    """
    threads = max(1, threads)
    wanted = max(math.ceil(len(batch) / MEAN_TRACKS_PER_TASK), threads * MIN_TASKS_PER_WORKER)
    count = min(len(batch), math.ceil(wanted / threads) * threads)
    weights = [math.ceil(count / threads) + 1 - index // threads for index in range(count)]
    spare, total_weight = len(batch) - count, sum(weights)
    shares = [spare * weight // total_weight for weight in weights]  # non-increasing, as the weights are
    for index in range(spare - sum(shares)):  # what rounding down left over (fewer than `count`): to the first
        shares[index] += 1
    bounds = itertools.accumulate((1 + share for share in shares), initial=0)
    return [batch[start:stop] for start, stop in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class _TaskResults:
    """One Dask task's results as one object: Dask serializes a list element by element, about 50 us per
    outcome on each side (docs/design.md)."""

    results: list[TrackOutcome | TrackFailure]


def _extract_task(tracks: list[SourceTrack], store_location: str, feature_config: FeatureConfig) -> _TaskResults:
    """`extract_tracks` as a Dask task: its results boxed for the trip back to the client."""
    return _TaskResults(extract_tracks(tracks, store_location, feature_config))


def _all_results(
    client: Client, futures: list[Future], groups: list[list[SourceTrack]]
) -> Iterator[TrackOutcome | TrackFailure]:
    """Every task's results, fetched at once; where a task failed as a whole (its worker died, its store
    could not be opened), each of its tracks fails with the task's error and the other tasks still count."""
    try:
        results = [task.results for task in client.gather(futures)]
    except Exception:  # which task failed: ask each one
        results = [_group_results(future, group) for future, group in zip(futures, groups, strict=True)]
    for task_results in results:
        yield from task_results


def _group_results(future: Future, group: list[SourceTrack]) -> list[TrackOutcome | TrackFailure]:
    """The task's results, or, where the task itself failed, that failure for each of its tracks."""
    try:
        return future.result().results
    except Exception as error:
        return [TrackFailure(track.track_id, _describe(error)) for track in group]


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
