"""The store as its users see it: `Store` and `FeatureSet`, on the index (storage/index.py) and the Zarr-level
reading and writing (storage/zarr_io.py); the layout is in storage/schema.py.

`Store` is the whole store: its header, the collections it has seen and its feature sets. `FeatureSet` is
one feature configuration's features, stored by content key. Writers (one per extraction task, possibly in
many processes at once) each write their own batch array, so no two writers ever touch the same file.
Readers see only tracks of complete batches, each at its newest copy, and never read damage as data.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.sync import sync

from genreflow.core import FeatureConfig
from genreflow.storage.index import StoredTrack, StoreIndex, Usable
from genreflow.storage.schema import (
    BATCHES_GROUP,
    COLLECTIONS_GROUP,
    COMPLETE_FLAG,
    FEATURE_CONFIG_KEY,
    FEATURES_GROUP,
    HEADER_KEY,
    KEYS_KEY,
    QUARANTINE_GROUP,
    RECORDS_KEY,
    SCHEMA_VERSION,
    CollectionRecord,
    CollectionTrack,
    DamagedTrackError,
    QuarantineRecord,
    StoreError,
    TrackRecord,
    data_version,
    new_batch_name,
)
from genreflow.storage.zarr_io import (
    as_stored,
    batch_metadata,
    bytes_under,
    child_names,
    chunk_damage,
    gathered,
    open_root,
    read_batches,
    read_header,
    require_group,
    write_metadata,
    write_rows,
)

# Tracks whose chunks are checked at once (each chunk is read whole): bounds the memory a check holds.
CHECK_WINDOW_TRACKS = 32


def absolute_location(location: str) -> str:
    """Local paths become absolute, so Dask workers with another working directory find the same store."""
    return location if "://" in location else str(Path(location).resolve())


def utc_now() -> str:
    """The time records are stamped with."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- the whole store ---------------------------------------------------------------------------------------
class Store:
    """A handle on one store: its header is checked once, on open."""

    def __init__(self, root: zarr.AsyncGroup, location: str, writable: bool) -> None:
        self._async_root = root
        self._root = zarr.Group(root)
        self.location = location
        self.writable = writable

    @classmethod
    def create_or_open(cls, location: str, storage_options: dict[str, Any] | None = None) -> Store:
        """Open the store for writing, creating it if absent; refuse one of another schema version."""
        root = open_root(location, "a", storage_options)
        header = read_header(root, location, missing_ok=True)
        if header is None:
            sync(root.update_attributes({HEADER_KEY: {"schema_version": SCHEMA_VERSION}}))
        return cls(root, location, writable=True)

    @classmethod
    def open(cls, location: str, storage_options: dict[str, Any] | None = None, writable: bool = False) -> Store:
        """Open an existing store, for reading unless `writable`."""
        try:
            root = open_root(location, "r+" if writable else "r", storage_options)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as error:
            raise StoreError(f"no genreflow store at {location}") from error
        except (ValueError, json.JSONDecodeError) as error:
            raise StoreError(f"{location}: the store's own metadata is damaged ({error})") from error
        read_header(root, location, missing_ok=False)
        return cls(root, location, writable)

    # ---- feature sets ------------------------------------------------------------------------------
    def feature_set(self, feature_config: FeatureConfig) -> FeatureSet:
        """The features made with `feature_config`; created if the store is writable, else it must exist."""
        path = f"{FEATURES_GROUP}/{feature_config.identity()}"
        if self.writable:
            group = sync(require_group(self._async_root, path))
            if FEATURE_CONFIG_KEY not in group.attrs:
                sync(group.update_attributes({FEATURE_CONFIG_KEY: feature_config.to_dict()}))
        else:
            try:
                group = sync(self._async_root.getitem(path))
            except KeyError:
                raise StoreError(
                    f"{self.location} holds no features made with {feature_config.to_dict()}; extract into it "
                    "first (genreflow extract, or genreflow run)"
                ) from None
        return FeatureSet(self, group, feature_config)

    def feature_configs(self) -> list[FeatureConfig]:
        """The feature configurations the store holds features of."""
        if FEATURES_GROUP not in self._root:
            return []
        groups = sorted(self._root[FEATURES_GROUP].groups())
        return [FeatureConfig.from_dict(group.attrs[FEATURE_CONFIG_KEY]) for _, group in groups]

    # ---- collections -------------------------------------------------------------------------------
    def record_collection(self, root: str, tracks: Iterable[CollectionTrack]) -> CollectionRecord:
        """Remember what the folder `root` holds now (replacing what it held before); returns the record."""
        record = CollectionRecord(root, tuple(sorted(tracks, key=lambda track: track.track_id)), utc_now())
        group = sync(require_group(self._async_root, COLLECTIONS_GROUP))
        sync(group.create_group(record.id, overwrite=True, attributes=record.to_attrs()))
        return record

    def collections(self) -> list[CollectionRecord]:
        """Every collection the store has seen, by folder; a record that does not parse is left out (verify
        names it)."""
        return [record for record in self.collection_records() if isinstance(record, CollectionRecord)]

    def collection(self, root: str) -> CollectionRecord | None:
        """The record of the folder `root`, if it was ever extracted into this store."""
        return next((record for record in self.collections() if record.root == root), None)

    def collection_records(self) -> list[CollectionRecord | tuple[str, str]]:
        """Parsed records, or (node name, why it does not parse)."""
        if COLLECTIONS_GROUP not in self._root:
            return []
        records: list[CollectionRecord | tuple[str, str]] = []
        for name in sync(child_names(self._root[COLLECTIONS_GROUP].store_path)):
            try:
                records.append(CollectionRecord.from_attrs(self._root[COLLECTIONS_GROUP][name].attrs.asdict()))
            except (KeyError, TypeError, ValueError) as error:
                records.append((name, f"collection record unreadable ({type(error).__name__}: {error})"))
        return records

    # ---- sizes -------------------------------------------------------------------------------------
    def bytes_on_disk(self) -> int:
        """Total size of every object in the store (files on disk, or objects in a bucket)."""
        return sync(bytes_under(self._root.store, [""]))


# ---- one feature set -----------------------------------------------------------------------------------------
class FeatureSet:
    """One feature configuration's features, stored by content key.

    Whole-set listings (`tracks`, `incomplete_keys`, `info`) read the batches' metadata afresh each time;
    single tracks (`track`, `read`) are looked up in the index kept from the last listing, which is read again
    only when a key is not in it, so reading many crops costs no metadata reads.
    """

    def __init__(self, store: Store, group: zarr.AsyncGroup, feature_config: FeatureConfig) -> None:
        self.store = store
        self.location = store.location
        self.feature_config = feature_config
        self._group = group
        self._index: StoreIndex | None = None  # replaced whole, never changed in place: safe across threads
        self._batches: zarr.AsyncGroup | None = None

    @classmethod
    def create_or_open(cls, location: str, feature_config: FeatureConfig) -> FeatureSet:
        """The feature set of `feature_config` in the store at `location`, both created if absent."""
        return Store.create_or_open(location).feature_set(feature_config)

    @classmethod
    def open(cls, location: str, feature_config: FeatureConfig) -> FeatureSet:
        """An existing feature set, for reading."""
        return Store.open(location).feature_set(feature_config)

    # ---- writing -------------------------------------------------------------------------------
    def write_tracks(self, tracks: Sequence[tuple[TrackRecord, np.ndarray]]) -> None:
        """Write tracks (each a record and its features (frames, n_mels)) as one new batch.

        The batch's completion flag, with the records, is its very last write; until then none of these
        tracks reads as complete (an older complete copy of one, if any, still does).
        """
        if not tracks:
            return
        for record, features in tracks:
            self._check_features(record, features)
        self.discard_quarantine({record.key for record, _ in tracks})
        layout = batch_metadata(self.feature_config.width, self.feature_config.dtype)  # sync: before the trip
        sync(self._write_batch(new_batch_name(), tracks, layout))
        self._index = None

    def quarantine(self, record: QuarantineRecord) -> None:
        """Record audio content that failed, with its reason."""
        group = sync(require_group(self._group, QUARANTINE_GROUP))
        sync(group.create_group(record.key, overwrite=True, attributes=record.to_attrs()))

    def discard_quarantine(self, keys: set[str]) -> None:
        """Forget earlier failures of content that now extracts (one listing, not one lookup per key)."""
        if QUARANTINE_GROUP not in self._sync_group:
            return
        group = self._sync_group[QUARANTINE_GROUP]
        for name in keys & set(group.group_keys()):
            del group[name]

    # ---- reading -------------------------------------------------------------------------------
    def tracks(self) -> list[TrackRecord]:
        """Every complete track (its newest copy), sorted by key; partial writes are not listed."""
        return self._fresh_index().records()

    def track(self, key: str) -> TrackRecord | None:
        """The complete record of one track, or None if it is absent or incomplete."""
        stored = self._stored(key)
        return None if stored is None else stored.record

    def incomplete_keys(self) -> list[str]:
        """Tracks whose write started but never finished (a killed or failed extraction), sorted."""
        return sorted(self._fresh_index().incomplete)

    def quarantined(self) -> list[QuarantineRecord]:
        """Every content that failed extraction, sorted by key."""
        if QUARANTINE_GROUP not in self._sync_group:
            return []
        nodes = sorted(self._sync_group[QUARANTINE_GROUP].groups())
        return [QuarantineRecord.from_attrs(node.attrs.asdict()) for _, node in nodes]

    def read(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) of a complete track as float32 (frames, n_mels), sliced as Python slices.

        Raises `DamagedTrackError` rather than return what a damaged chunk would give (its fill value, or
        whatever a changed byte decodes to).
        """
        stored = self._stored(key)
        if stored is None:
            raise KeyError(f"track {key} is not complete in {self.location}")
        first, last, _ = slice(start, stop).indices(stored.record.n_frames)
        try:
            frames = np.asarray(stored.batch[stored.row, first : max(first, last)], dtype=np.float32)
        except (ValueError, RuntimeError) as error:  # the checksum codec's and Blosc's "this chunk is bad"
            raise DamagedTrackError(key, f"batch {stored.batch_name}: a chunk does not decode ({error})") from error
        if np.isnan(frames).any():
            raise DamagedTrackError(key, f"batch {stored.batch_name}: a chunk is missing (it reads as the fill value)")
        return frames

    def usable(self, tracks: Iterable[CollectionTrack]) -> Usable:
        """Which of a collection's tracks this feature set can train on, and why the others cannot."""
        index = self._fresh_index()
        failed = {record.key: record.reason for record in self.quarantined()}
        ready, quarantined, missing = [], {}, []
        for track in tracks:
            if track.key in index.complete:
                ready.append(track)
            elif track.key in failed:
                quarantined[track.track_id] = failed[track.key]
            else:
                missing.append(track.track_id)
        return Usable(ready, quarantined, missing)

    def data_version(self, tracks: Sequence[CollectionTrack]) -> str:
        """The identity of training on `tracks` with these features (see `storage.schema.data_version`)."""
        return data_version(self.feature_config.identity(), tracks)

    # ---- checking ------------------------------------------------------------------------------
    def check(self, keys: Iterable[str]) -> dict[str, str]:
        """Damage of the complete tracks among `keys`, by key: a chunk missing, or one whose bytes fail their
        checksum (truncated or altered). Reads every chunk's bytes but decodes none: cheap enough to run before
        every extraction and training."""
        index = self._fresh_index()
        stored = [index.complete[key] for key in dict.fromkeys(keys) if key in index.complete]
        damage: dict[str, str] = {}
        for first in range(0, len(stored), CHECK_WINDOW_TRACKS):
            window = stored[first : first + CHECK_WINDOW_TRACKS]
            reasons = sync(gathered([chunk_damage(track) for track in window]))
            damage.update({track.record.key: reason for track, reason in zip(window, reasons, strict=True) if reason})
        return damage

    def index(self) -> StoreIndex:
        """What the batches hold now, read afresh (one listing, no chunk)."""
        return self._fresh_index()

    def batch_bytes(self, names: Iterable[str]) -> int:
        """Total size of the named batches' objects."""
        prefix = f"{self._sync_group.path}/{BATCHES_GROUP}"
        return sync(bytes_under(self._sync_group.store, [f"{prefix}/{name}" for name in names]))

    def delete_batches(self, names: Iterable[str]) -> None:
        """Delete the named batch arrays whole (compaction decides which may go)."""
        sync(gathered([(self._group.store_path / BATCHES_GROUP / name).delete_dir() for name in names]))
        self._index = None

    # ---- internals -----------------------------------------------------------------------------
    @property
    def _sync_group(self) -> zarr.Group:
        return zarr.Group(self._group)

    def _check_features(self, record: TrackRecord, features: np.ndarray) -> None:
        expected = (record.n_frames, self.feature_config.width)
        if features.shape != expected:
            raise ValueError(f"track {record.key}: features {features.shape} do not match {expected}")
        if record.n_frames < 1:
            raise ValueError(f"track {record.key}: a track needs at least one frame")

    async def _write_batch(
        self, name: str, tracks: Sequence[tuple[TrackRecord, np.ndarray]], layout: ArrayV3Metadata
    ) -> None:
        """Create the batch array, write every row at once, then mark it complete: one event-loop trip."""
        shape = (len(tracks), max(record.n_frames for record, _ in tracks), self.feature_config.width)
        batch = await self._create_batch(name, layout.update_shape(shape), [record.key for record, _ in tracks])
        dtype = self.feature_config.dtype
        await write_rows(batch, [as_stored(features, dtype) for _, features in tracks])
        await batch.update_attributes({COMPLETE_FLAG: True, RECORDS_KEY: [record.to_attrs() for record, _ in tracks]})

    async def _create_batch(self, name: str, layout: ArrayV3Metadata, keys: list[str]) -> zarr.AsyncArray:
        """A new, incomplete batch array: its metadata written, and its parents' unless present.

        Zarr's `create_array` would first read whether the path is free and each parent a group: requests on
        object storage that cannot fail here (the parents are this handle's own groups, a batch name is new
        by construction). The parents are still written if absent, so that a store deleted and made again
        under a long-lived handle (a Dask worker's) never gets batches outside any group.
        """
        batches = await self._batches_group()
        metadata = layout.update_attributes({COMPLETE_FLAG: False, KEYS_KEY: keys})
        path = batches.store_path / name
        parents = (self.store._async_root, self._group, batches)
        await asyncio.gather(
            write_metadata(path, metadata),
            *(write_metadata(group.store_path, group.metadata, if_absent=True) for group in parents),
        )
        return zarr.AsyncArray(metadata, path, config={"write_empty_chunks": True})  # rows only: no fill check

    async def _batches_group(self) -> zarr.AsyncGroup:
        if self._batches is None:
            self._batches = await require_group(self._group, BATCHES_GROUP)
        return self._batches

    def _fresh_index(self) -> StoreIndex:
        """Read every batch's metadata now (one listing), and keep the result for single-track lookups."""
        with _cycle_collection_paused():
            self._index = StoreIndex.of(*sync(read_batches(self._group.store_path / BATCHES_GROUP)))
        return self._index

    def _stored(self, key: str) -> StoredTrack | None:
        """A complete track's location, from the kept index, or from a fresh one if it is not there."""
        index = self._index
        if index is None or key not in index.complete:
            index = self._fresh_index()
        return index.complete.get(key)


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """Python's cycle collector held off while an index is built: the index makes a few objects per track and
    no cycles, yet each collection walks the whole heap, which grows with the collection too; a 10,000-track
    index took 0.54-0.76 s with it and 0.38-0.40 s without (docs/benchmarks.md "Scale")."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
