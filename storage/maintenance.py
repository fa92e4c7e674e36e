"""Looking after a store: what it holds (`describe`), what in it is damaged (`verify`) and deleting what no
reader needs any more (`compact`). Kept apart from storage/store.py, storage/index.py and storage/zarr_io.py,
whose reading and writing code is part of what a trained cell depends on; nothing here changes what a cell learns.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from genreflow.storage.index import DeadBatch
from genreflow.storage.schema import SCHEMA_VERSION, CollectionRecord, DamagedTrackError
from genreflow.storage.store import FeatureSet, Store


@dataclass(frozen=True)
class Compaction:
    """What `compact` removed (or, in a dry run, would remove), and what it left for later."""

    removed: list[DeadBatch]
    bytes_freed: int
    too_young: int  # dead batches left because they died less than the minimum age ago
    dry_run: bool


@dataclass(frozen=True)
class Damage:
    """Something in the store that cannot be trusted, in one line."""

    kind: Literal["track", "batch", "collection"]
    name: str  # the track's key, the batch's or the collection node's name
    reason: str
    feature_id: str | None = None  # the feature set it is in (None for a collection record)


def compact(store: Store, min_age_s: float, dry_run: bool = False) -> Compaction:
    """Delete, in every feature set, the batch arrays that died at least `min_age_s` ago: every row superseded
    by a newer copy, left incomplete by a writer that stopped, or damaged beyond reading. Batches with any
    newest copy stay whole.

    The age protects two others: a writer still filling a young batch, and a reader (a training run) whose
    index predates the newer copies and still points at the old rows. A compaction killed midway leaves only
    batches that are still dead, and can be run again.
    """
    parts = [compact_feature_set(store.feature_set(config), min_age_s, dry_run) for config in store.feature_configs()]
    return Compaction(
        removed=[batch for part in parts for batch in part.removed],
        bytes_freed=sum(part.bytes_freed for part in parts),
        too_young=sum(part.too_young for part in parts),
        dry_run=dry_run,
    )


def compact_feature_set(feature_set: FeatureSet, min_age_s: float, dry_run: bool = False) -> Compaction:
    """`compact` for one feature set."""
    now = time.time_ns()
    dead = feature_set.index().dead
    due = [batch for batch in dead if now - batch.dead_since_ns >= min_age_s * 1e9]
    bytes_freed = feature_set.batch_bytes(batch.name for batch in due)
    if not dry_run and due:
        feature_set.delete_batches(batch.name for batch in due)
    return Compaction(due, bytes_freed, len(dead) - len(due), dry_run)


def verify(store: Store) -> list[Damage]:
    """Everything in the store that cannot be trusted: collection records that do not parse, and each feature
    set's damaged batches and tracks (every chunk of every complete track is read)."""
    damage = [
        Damage("collection", record[0], record[1])
        for record in store.collection_records()
        if not isinstance(record, CollectionRecord)
    ]
    for config in store.feature_configs():
        damage += verify_feature_set(store.feature_set(config))
    return damage


def verify_feature_set(feature_set: FeatureSet) -> list[Damage]:
    """Batches whose metadata does not read, and complete tracks whose frames do not read back whole (every
    chunk present, checksummed and decoded)."""
    index = feature_set.index()
    feature_id = feature_set.feature_config.identity()
    damage = [Damage("batch", batch.name, batch.reason, feature_id) for batch in index.damaged]
    keys = sorted(index.complete)
    checked = feature_set.check(keys)  # all at once: `check` reads the store's index each time it is called
    for key in keys:
        reason = checked.get(key)
        if reason is None:
            try:
                feature_set.read(key)
            except DamagedTrackError as error:
                reason = error.reason
        if reason is not None:
            damage.append(Damage("track", key, reason, feature_id))
    return damage


def describe(store: Store) -> dict[str, Any]:
    """The summary `genreflow store info` prints: feature sets, collections, size."""
    feature_sets = [store.feature_set(config) for config in store.feature_configs()]
    return {
        "location": store.location,
        "schema_version": SCHEMA_VERSION,
        "feature_sets": [describe_feature_set(feature_set) for feature_set in feature_sets],
        "collections": [_describe_collection(record, feature_sets) for record in store.collections()],
        "bytes_on_disk": store.bytes_on_disk(),
    }


def describe_feature_set(feature_set: FeatureSet) -> dict[str, Any]:
    """Counts of one feature set: tracks, audio, quarantine, incomplete, superseded and damaged batches."""
    index = feature_set.index()
    records = index.records()
    return {
        "feature_id": feature_set.feature_config.identity(),
        "feature_config": feature_set.feature_config.to_dict(),
        "tracks": len(records),
        "audio_hours": round(sum(record.duration_s for record in records) / 3600, 4),
        "quarantined": [{"key": q.key, "source": q.source, "reason": q.reason} for q in feature_set.quarantined()],
        "incomplete_tracks": len(index.incomplete),
        "superseded_copies": index.superseded,
        "damaged_batches": [{"name": batch.name, "reason": batch.reason} for batch in index.damaged],
    }


def _describe_collection(record: CollectionRecord, feature_sets: Sequence[FeatureSet]) -> dict[str, Any]:
    """A collection as `store info` shows it: its folder, tracks, genres and, per feature set, what is usable."""
    return {
        "root": record.root,
        "recorded": record.recorded,
        "tracks": len(record.tracks),
        "genres": dict(sorted(Counter(track.genre for track in record.tracks).items())),
        "feature_sets": {
            feature_set.feature_config.identity(): feature_set.usable(record.tracks).summary()
            for feature_set in feature_sets
        },
    }
