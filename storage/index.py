"""The track index: which tracks and batches a feature set holds, decided from its batches' metadata alone.

Kept apart from the Zarr reading and writing (storage/zarr_io.py) so that what readers trust (each track's
newest complete copy), what they treat as missing, and what compaction may delete are decided in one place,
in memory, on metadata already read: no chunk and no request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import zarr

from genreflow.storage.schema import (
    COMPLETE_FLAG,
    KEYS_KEY,
    RECORDS_KEY,
    CollectionTrack,
    TrackRecord,
    written_ns,
)


@dataclass(frozen=True)
class StoredTrack:
    """Where a complete track's frames are: a row of a batch array."""

    record: TrackRecord
    batch: zarr.Array
    row: int

    @property
    def batch_name(self) -> str:
        return self.batch.basename


@dataclass(frozen=True)
class DeadBatch:
    """A batch array that no reader with a current index needs: every row superseded, never completed, or
    damaged beyond reading its metadata."""

    name: str
    reason: Literal["superseded", "incomplete", "damaged"]
    # Since when nothing new needs it, ns since the epoch: for a superseded batch, when the newest of the copies
    # that replaced its rows was written; for the others, when it was created.
    dead_since_ns: int


@dataclass(frozen=True)
class DamagedBatch:
    """A batch whose metadata cannot be read: its tracks are unknown, so they read as never extracted."""

    name: str
    reason: str


@dataclass(frozen=True)
class StoreIndex:
    """What a feature set's batches hold, read from their metadata alone (no chunk is read)."""

    complete: dict[str, StoredTrack]  # key -> its newest complete copy
    incomplete: set[str]  # keys of batches that never finished, with no complete copy anywhere
    superseded: int  # older complete copies of tracks that were extracted again
    dead: tuple[DeadBatch, ...]
    damaged: tuple[DamagedBatch, ...]

    @classmethod
    def of(cls, batches: Sequence[zarr.Array], damaged: Sequence[DamagedBatch]) -> StoreIndex:
        """Index `batches`, oldest first, so that a newer copy of a track replaces an older one."""
        complete: dict[str, StoredTrack] = {}
        started: set[str] = set()
        superseded = 0
        dead = [DeadBatch(batch.name, "damaged", written_ns(batch.name)) for batch in damaged]
        keys_of: dict[str, list[str]] = {}  # complete batch -> its keys
        for batch in batches:
            attrs = batch.attrs
            if not attrs.get(COMPLETE_FLAG):
                started.update(attrs.get(KEYS_KEY, []))
                dead.append(DeadBatch(batch.basename, "incomplete", written_ns(batch.basename)))
                continue
            records = [TrackRecord.from_attrs(values) for values in attrs[RECORDS_KEY]]
            keys_of[batch.basename] = [record.key for record in records]
            for row, record in enumerate(records):
                superseded += record.key in complete
                complete[record.key] = StoredTrack(record, batch, row)
        dead += _superseded_batches(keys_of, complete)
        return cls(complete, started - complete.keys(), superseded, tuple(dead), tuple(damaged))

    def records(self) -> list[TrackRecord]:
        """The complete tracks' records, sorted by key."""
        return [self.complete[key].record for key in sorted(self.complete)]


def _superseded_batches(keys_of: dict[str, list[str]], newest: dict[str, StoredTrack]) -> list[DeadBatch]:
    """Complete batches none of whose rows is its track's newest copy."""
    dead = []
    for name, keys in keys_of.items():
        holders = [newest[key].batch_name for key in keys]
        if name not in holders:
            dead.append(DeadBatch(name, "superseded", max(map(written_ns, holders))))
    return dead


@dataclass(frozen=True)
class Usable:
    """A collection's tracks as one feature set has them: ready to train on, or why not."""

    ready: list[CollectionTrack]
    quarantined: dict[str, str]  # track id -> reason
    missing: list[str]  # track ids never (completely) extracted into this feature set

    def summary(self) -> dict[str, Any]:
        return {"ready": len(self.ready), "quarantined": len(self.quarantined), "missing": len(self.missing)}
