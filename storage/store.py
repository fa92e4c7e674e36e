"""Reading and writing the Zarr store; the only module that touches Zarr paths (layout in storage/schema.py).

`Store` is the whole store: its header, the collections it has seen and its feature sets. `FeatureSet` is
one feature configuration's features, stored by content key. Writers (one per extraction task, possibly in
many processes at once) each write their own batch array, so no two writers ever touch the same file.
Readers see only tracks of complete batches, each at its newest copy, and never read damage as data.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal

import google_crc32c
import numpy as np
import zarr
import zarr.api.asynchronous
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.sync import sync
from zarr.storage import MemoryStore, StorePath

from genreflow.core import FeatureConfig
from genreflow.storage.float16 import to_float16
from genreflow.storage.schema import (
    BATCHES_GROUP,
    BLOSC_CNAME,
    BLOSC_LEVEL,
    CHECKSUM_BYTES,
    CHUNK_FRAMES,
    CHUNK_KEY_SEPARATOR,
    COLLECTIONS_GROUP,
    COMPLETE_FLAG,
    FEATURE_CONFIG_KEY,
    FEATURES_GROUP,
    HEADER_KEY,
    KEYS_KEY,
    METADATA_DOCUMENT,
    QUARANTINE_GROUP,
    RECORDS_KEY,
    SCHEMA_VERSION,
    CollectionRecord,
    CollectionTrack,
    DamagedTrackError,
    QuarantineRecord,
    StoreError,
    TrackRecord,
    blosc_block_bytes,
    chunk_count,
    chunk_key,
    data_version,
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
        root = _open_root(location, "a", storage_options)
        header = _read_header(root, location, missing_ok=True)
        if header is None:
            sync(root.update_attributes({HEADER_KEY: {"schema_version": SCHEMA_VERSION}}))
        return cls(root, location, writable=True)

    @classmethod
    def open(cls, location: str, storage_options: dict[str, Any] | None = None, writable: bool = False) -> Store:
        """Open an existing store, for reading unless `writable`."""
        try:
            root = _open_root(location, "r+" if writable else "r", storage_options)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as error:
            raise StoreError(f"no genreflow store at {location}") from error
        except (ValueError, json.JSONDecodeError) as error:
            raise StoreError(f"{location}: the store's own metadata is damaged ({error})") from error
        _read_header(root, location, missing_ok=False)
        return cls(root, location, writable)

    # ---- feature sets ------------------------------------------------------------------------------
    def feature_set(self, feature_config: FeatureConfig) -> FeatureSet:
        """The features made with `feature_config`; created if the store is writable, else it must exist."""
        path = f"{FEATURES_GROUP}/{feature_config.identity()}"
        if self.writable:
            group = sync(_require_group(self._async_root, path))
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
        group = sync(_require_group(self._async_root, COLLECTIONS_GROUP))
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
        for name in sync(_child_names(self._root[COLLECTIONS_GROUP].store_path)):
            try:
                records.append(CollectionRecord.from_attrs(self._root[COLLECTIONS_GROUP][name].attrs.asdict()))
            except (KeyError, TypeError, ValueError) as error:
                records.append((name, f"collection record unreadable ({type(error).__name__}: {error})"))
        return records

    # ---- sizes -------------------------------------------------------------------------------------
    def bytes_on_disk(self) -> int:
        """Total size of every object in the store (files on disk, or objects in a bucket)."""
        return sync(_bytes_under(self._root.store, [""]))


# ---- one feature set -----------------------------------------------------------------------------------------
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
        dead = [DeadBatch(batch.name, "damaged", _written_ns(batch.name)) for batch in damaged]
        keys_of: dict[str, list[str]] = {}  # complete batch -> its keys
        for batch in batches:
            attrs = batch.attrs
            if not attrs.get(COMPLETE_FLAG):
                started.update(attrs.get(KEYS_KEY, []))
                dead.append(DeadBatch(batch.basename, "incomplete", _written_ns(batch.basename)))
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
            dead.append(DeadBatch(name, "superseded", max(map(_written_ns, holders))))
    return dead


@dataclass(frozen=True)
class Usable:
    """A collection's tracks as one feature set has them: ready to train on, or why not."""

    ready: list[CollectionTrack]
    quarantined: dict[str, str]  # track id -> reason
    missing: list[str]  # track ids never (completely) extracted into this feature set

    def summary(self) -> dict[str, Any]:
        return {"ready": len(self.ready), "quarantined": len(self.quarantined), "missing": len(self.missing)}


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
        layout = _batch_metadata(self.feature_config.width, self.feature_config.dtype)  # sync: before the trip
        sync(self._write_batch(_new_batch_name(), tracks, layout))
        self._index = None

    def quarantine(self, record: QuarantineRecord) -> None:
        """Record audio content that failed, with its reason."""
        group = sync(_require_group(self._group, QUARANTINE_GROUP))
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
            reasons = sync(_gathered([_chunk_damage(track) for track in window]))
            damage.update({track.record.key: reason for track, reason in zip(window, reasons, strict=True) if reason})
        return damage

    def index(self) -> StoreIndex:
        """What the batches hold now, read afresh (one listing, no chunk)."""
        return self._fresh_index()

    def batch_bytes(self, names: Iterable[str]) -> int:
        """Total size of the named batches' objects."""
        prefix = f"{self._sync_group.path}/{BATCHES_GROUP}"
        return sync(_bytes_under(self._sync_group.store, [f"{prefix}/{name}" for name in names]))

    def delete_batches(self, names: Iterable[str]) -> None:
        """Delete the named batch arrays whole (compaction decides which may go)."""
        sync(_gathered([(self._group.store_path / BATCHES_GROUP / name).delete_dir() for name in names]))
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
        await _write_rows(batch, [as_stored(features, dtype) for _, features in tracks])
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
            _write_metadata(path, metadata),
            *(_write_metadata(group.store_path, group.metadata, if_absent=True) for group in parents),
        )
        return zarr.AsyncArray(metadata, path, config={"write_empty_chunks": True})  # rows only: no fill check

    async def _batches_group(self) -> zarr.AsyncGroup:
        if self._batches is None:
            self._batches = await _require_group(self._group, BATCHES_GROUP)
        return self._batches

    def _fresh_index(self) -> StoreIndex:
        """Read every batch's metadata now (one listing), and keep the result for single-track lookups."""
        self._index = StoreIndex.of(*sync(_read_batches(self._group.store_path / BATCHES_GROUP)))
        return self._index

    def _stored(self, key: str) -> StoredTrack | None:
        """A complete track's location, from the kept index, or from a fresh one if it is not there."""
        index = self._index
        if index is None or key not in index.complete:
            index = self._fresh_index()
        return index.complete.get(key)


async def _read_batches(batches: StorePath) -> tuple[list[zarr.Array], list[DamagedBatch]]:
    """Every batch array under `batches`, oldest first, and those whose metadata is missing or will not parse.

    Read by hand rather than through Zarr's group listing, which stops at the first bad document.
    """
    names = await _child_names(batches)
    documents = await asyncio.gather(*((batches / name / METADATA_DOCUMENT).get() for name in names))
    arrays, damaged = [], []
    for name, document in zip(names, documents, strict=True):
        if document is None:
            damaged.append(DamagedBatch(name, f"its metadata ({METADATA_DOCUMENT}) is missing"))
            continue
        try:
            metadata = ArrayV3Metadata.from_dict(json.loads(document.to_bytes()))
            _check_batch_attributes(metadata.attributes)
        except (ValueError, TypeError, KeyError) as error:  # JSONDecodeError is a ValueError
            damaged.append(DamagedBatch(name, f"its metadata does not parse ({type(error).__name__}: {error})"))
            continue
        arrays.append(zarr.Array(zarr.AsyncArray(metadata, batches / name)))
    return arrays, damaged


def _check_batch_attributes(attributes: dict[str, Any]) -> None:
    """Refuse attributes that say complete without well-formed records (what a reader relies on)."""
    if attributes.get(COMPLETE_FLAG):
        for values in attributes[RECORDS_KEY]:
            TrackRecord.from_attrs(values)


async def _gathered(coroutines: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Every coroutine's result, run at once on Zarr's event loop (`sync` must be given one coroutine)."""
    return await asyncio.gather(*coroutines)


async def _child_names(path: StorePath) -> list[str]:
    """The names of the nodes directly under `path`, sorted (its own metadata document left out)."""
    names = [name async for name in path.store.list_dir(path.path)]
    return sorted(name for name in names if name and name != METADATA_DOCUMENT)


async def _chunk_damage(track: StoredTrack) -> str | None:
    """Why a stored track's chunks cannot be trusted, or None: each must exist and match its checksum."""
    for index in range(chunk_count(track.record.n_frames)):
        key = chunk_key(track.row, index)
        data = await (track.batch.store_path / key).get()
        if data is None:
            return f"batch {track.batch_name}: chunk {key} is missing"
        if not _checksum_matches(data.as_numpy_array()):
            return f"batch {track.batch_name}: chunk {key} fails its checksum (truncated or altered)"
    return None


def _checksum_matches(data: np.ndarray) -> bool:
    """Whether a chunk's last bytes are the CRC-32C of the rest, as Zarr's crc32c codec wrote them."""
    if data.size <= CHECKSUM_BYTES:
        return False
    inner, stored = data[:-CHECKSUM_BYTES], bytes(data[-CHECKSUM_BYTES:])
    return np.uint32(google_crc32c.value(inner.tobytes())).tobytes() == stored


def _read_header(root: zarr.AsyncGroup, location: str, missing_ok: bool) -> dict[str, Any] | None:
    """The store's header, checked; None for a new, empty group when `missing_ok`."""
    header = root.attrs.get(HEADER_KEY)
    if header is None:
        if missing_ok and not root.attrs:
            return None
        raise StoreError(f"{location} is a Zarr group but not a genreflow store (no '{HEADER_KEY}' header)")
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{location} was written by store schema version {version}; this genreflow reads version "
            f"{SCHEMA_VERSION}. Extract into a new store path (or delete the old store)."
        )
    return header


def _open_root(location: str, mode: str, storage_options: dict[str, Any] | None) -> zarr.AsyncGroup:
    """The store's root group; a writer that loses the race to create a new store opens the winner's."""
    opening = partial(zarr.api.asynchronous.open_group, store=location, mode=mode, storage_options=storage_options)
    try:
        return sync(opening())
    except zarr.errors.ContainsGroupError:
        return sync(opening())


async def _require_group(parent: zarr.AsyncGroup, path: str) -> zarr.AsyncGroup:
    """Open or create the group at `path` under `parent`, even while other processes create it too.

    zarr checks, then creates; a writer that loses that race gets ContainsGroupError although the group
    is there. Asking again opens it; each level of `path` can be lost to a race at most once.
    """
    for _ in range(path.count("/") + 1):
        try:
            return await parent.require_group(path)
        except zarr.errors.ContainsGroupError:
            continue
    return await parent.require_group(path)


async def _bytes_under(store: zarr.abc.store.Store, prefixes: list[str]) -> int:
    """Total size of the objects under each prefix ("" is the whole store)."""
    return sum(await asyncio.gather(*(store.getsize_prefix(prefix) for prefix in prefixes)))


def as_stored(features: np.ndarray, dtype: str) -> np.ndarray:
    """Features rounded to the store's dtype exactly as the store keeps them (prediction reuses this);
    float16 by `to_float16`, numpy's own cast at a third of its CPU."""
    if np.dtype(dtype) == np.float16 and features.dtype == np.float32:
        return to_float16(features)
    return features.astype(dtype, copy=False)


async def _write_rows(batch: zarr.AsyncArray, rows: list[np.ndarray]) -> None:
    """Row r of `batch` := rows[r] (frames, n_mels), in whole chunks encoded by the array's own codecs.

    The chunks and keys `batch.setitem` would write, bit for bit (tested), without its machinery per call:
    indexing, merging each chunk into a fresh fill-valued one and, for a row shorter than the batch, first
    reading that chunk, absent as it is (a request each on object storage). A full chunk is the row's own
    memory, not a copy.
    """
    metadata = batch.metadata
    spec = metadata.get_chunk_spec((0, 0, 0), batch.config, default_buffer_prototype())
    chunk_frames = spec.shape[1]
    keys, chunks = [], []
    for row, values in enumerate(rows):
        for index, start in enumerate(range(0, values.shape[0], chunk_frames)):
            chunk = _whole_chunk(values[start : start + chunk_frames], spec.shape, spec.fill_value)
            chunks.append((spec.prototype.nd_buffer.from_numpy_array(chunk), spec))
            keys.append(metadata.encode_chunk_key((row, index, 0)))
    encoded = await batch.codec_pipeline.encode(chunks)
    await asyncio.gather(*((batch.store_path / key).set(data) for key, data in zip(keys, encoded, strict=True)))


def _whole_chunk(piece: np.ndarray, chunk_shape: tuple[int, ...], fill_value: Any) -> np.ndarray:
    """`piece` (frames, n_mels) as one chunk (1, frames, n_mels): a view where it fills the chunk (the frames
    of a long track before its last chunk), else a copy padded with the fill value, as Zarr pads."""
    if piece.shape[0] == chunk_shape[1]:
        return piece.reshape(chunk_shape)
    chunk = np.full(chunk_shape, fill_value, dtype=piece.dtype)
    chunk[0, : piece.shape[0]] = piece
    return chunk


async def _write_metadata(node: StorePath, metadata: ArrayV3Metadata | GroupMetadata, if_absent: bool = False) -> None:
    """Write a node's metadata document (zarr.json), or, `if_absent`, only where there is none yet."""
    [(key, document)] = metadata.to_buffer_dict(default_buffer_prototype()).items()
    await ((node / key).set_if_not_exists(document) if if_absent else (node / key).set(document))


@lru_cache(maxsize=4)
def _batch_metadata(n_mels: int, dtype: str) -> ArrayV3Metadata:
    """What every batch array's metadata says but its shape and attributes (see storage/schema.py), as Zarr's
    own `create_array` writes it, made once in memory."""
    return zarr.create_array(
        MemoryStore(),
        shape=(1, CHUNK_FRAMES, n_mels),
        chunks=(1, CHUNK_FRAMES, n_mels),
        chunk_key_encoding={"name": "default", "separator": CHUNK_KEY_SEPARATOR},
        dtype=dtype,
        fill_value=np.nan,
        compressors=(
            BloscCodec(
                cname=BLOSC_CNAME,
                clevel=BLOSC_LEVEL,
                shuffle=BloscShuffle.shuffle,
                blocksize=blosc_block_bytes(n_mels, np.dtype(dtype).itemsize),
            ),
            Crc32cCodec(),
        ),
    ).metadata


def _new_batch_name() -> str:
    """Sorts by the time it was made (then at random), so the newest copy of a track is the last one listed."""
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def _written_ns(batch_name: str) -> int:
    """When a batch was created, from its name (see `_new_batch_name`); 0 for a name not made that way."""
    stamp = batch_name.partition("-")[0]
    return int(stamp) if stamp.isdigit() else 0
