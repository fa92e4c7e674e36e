"""Reading and writing the Zarr feature store; the only module that touches Zarr paths.

Writers (one per track, possibly in many processes at once) each write their own array, so no two writers
ever touch the same file. Readers see only tracks whose completion flag is set.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle
from zarr.core.sync import sync

from genreflow.config import FeatureConfig
from storage.schema import (
    BLOSC_CNAME,
    BLOSC_LEVEL,
    CHUNK_FRAMES,
    COMPLETE_FLAG,
    HEADER_KEY,
    QUARANTINE_GROUP,
    SCHEMA_VERSION,
    TRACKS_GROUP,
    QuarantineRecord,
    StoreError,
    TrackRecord,
)


def absolute_location(location: str) -> str:
    """Local paths become absolute, so Dask workers with another working directory find the same store."""
    return location if "://" in location else str(Path(location).resolve())


def _split_track_id(track_id: str) -> tuple[str, str]:
    genre, _, name = track_id.partition("/")
    if not genre or not name or "/" in name:
        raise ValueError(f"track id must be '<genre>/<file name>', got {track_id!r}")
    return genre, name


class FeatureStore:
    """A handle on one store: its header is checked once, on open."""

    def __init__(self, root: zarr.Group, feature_config: FeatureConfig, location: str) -> None:
        self._root = root
        self.feature_config = feature_config
        self.location = location

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def create_or_open(
        cls, location: str, feature_config: FeatureConfig, storage_options: dict[str, Any] | None = None
    ) -> FeatureStore:
        """Open the store for writing, creating it if absent; refuse one of another version or config."""
        root = zarr.open_group(store=location, mode="a", storage_options=storage_options)
        header = root.attrs.get(HEADER_KEY)
        if header is None:
            root.attrs[HEADER_KEY] = {
                "schema_version": SCHEMA_VERSION,
                "feature_config": feature_config.to_dict(),
                "feature_id": feature_config.identity(),
            }
        else:
            _check_header(header, location, expected=feature_config)
        return cls(root, feature_config, location)

    @classmethod
    def open(cls, location: str, storage_options: dict[str, Any] | None = None) -> FeatureStore:
        """Open an existing store for reading; its own header says how its features were made."""
        try:
            root = zarr.open_group(store=location, mode="r", storage_options=storage_options)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as error:
            raise StoreError(f"no genreflow store at {location}") from error
        header = root.attrs.get(HEADER_KEY)
        if header is None:
            raise StoreError(f"{location} is a Zarr group but not a genreflow store (no '{HEADER_KEY}' header)")
        _check_header(header, location, expected=None)
        return cls(root, FeatureConfig.from_dict(header["feature_config"]), location)

    # ---- writing -------------------------------------------------------------------------------
    def write_track(self, record: TrackRecord, features: np.ndarray) -> None:
        """Write one track's log-mel (frames, n_mels); its completion flag is the very last write."""
        expected = (record.n_frames, self.feature_config.n_mels)
        if features.shape != expected:
            raise ValueError(f"{record.track_id}: features {features.shape} do not match {expected}")
        genre, name = _split_track_id(record.track_id)
        self.discard_quarantine(record.track_id)
        genre_group = self._require_group(f"{TRACKS_GROUP}/{genre}")
        array = genre_group.create_array(
            name,
            shape=expected,
            chunks=(CHUNK_FRAMES, self.feature_config.n_mels),
            dtype=self.feature_config.dtype,
            compressors=BloscCodec(cname=BLOSC_CNAME, clevel=BLOSC_LEVEL, shuffle=BloscShuffle.shuffle),
            attributes={COMPLETE_FLAG: False, "track_id": record.track_id},
            overwrite=True,
        )
        array[...] = features.astype(self.feature_config.dtype, copy=False)
        array.update_attributes(record.to_attrs())  # one metadata write, the last of the track

    def quarantine(self, record: QuarantineRecord) -> None:
        """Record a file that failed, with its reason; a complete copy of it, if any, is left alone."""
        genre, name = _split_track_id(record.track_id)
        genre_group = self._require_group(f"{QUARANTINE_GROUP}/{genre}")
        genre_group.create_group(name, overwrite=True, attributes=record.to_attrs())

    def discard_quarantine(self, track_id: str) -> None:
        """Forget an earlier failure of a file that now extracts."""
        genre, name = _split_track_id(track_id)
        path = f"{QUARANTINE_GROUP}/{genre}"
        if path in self._root and name in self._root[path]:
            del self._root[path][name]

    # ---- reading -------------------------------------------------------------------------------
    def tracks(self) -> list[TrackRecord]:
        """Every complete track, sorted by track id; partial writes are not listed."""
        return sorted(self._complete_records(), key=lambda record: record.track_id)

    def track(self, track_id: str) -> TrackRecord | None:
        """The complete record of one track, or None if it is absent or incomplete."""
        genre, name = _split_track_id(track_id)
        try:
            attrs = dict(self._root[f"{TRACKS_GROUP}/{genre}/{name}"].attrs)
        except (KeyError, json.JSONDecodeError, ValueError):
            return None
        return TrackRecord.from_attrs(attrs) if attrs.get(COMPLETE_FLAG) else None

    def incomplete_track_ids(self) -> list[str]:
        """Tracks whose write started but never finished (a killed or failed extraction), sorted."""
        return sorted(
            node.path.removeprefix(f"{TRACKS_GROUP}/")
            for node in self._nodes(TRACKS_GROUP)
            if not node.attrs.get(COMPLETE_FLAG)
        )

    def read(self, track_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) of a complete track as float32 (frames, n_mels)."""
        genre, name = _split_track_id(track_id)
        return np.asarray(self._root[f"{TRACKS_GROUP}/{genre}/{name}"][start:stop], dtype=np.float32)

    def quarantined(self) -> list[QuarantineRecord]:
        """Every file that failed extraction, sorted by track id."""
        records = [QuarantineRecord.from_attrs(dict(node.attrs)) for node in self._nodes(QUARANTINE_GROUP)]
        return sorted(records, key=lambda record: record.track_id)

    def data_version(self) -> str:
        """A hash of the feature config and the content of every complete track: the data's identity."""
        return self._data_version(self.tracks())

    def _data_version(self, records: list[TrackRecord]) -> str:
        digest = hashlib.sha256(self.feature_config.identity().encode())
        for record in records:
            digest.update(f"\n{record.track_id}:{record.source.sha256}".encode())
        return digest.hexdigest()[:16]

    def bytes_on_disk(self) -> int:
        """Total size of every object in the store (files on disk, or objects in a bucket)."""
        store = self._root.store

        async def total_size() -> int:
            return sum([await store.getsize(key) async for key in store.list()])

        return sync(total_size())

    def info(self) -> dict[str, Any]:
        """The summary `genreflow store info` prints."""
        records = self.tracks()
        return {
            "location": self.location,
            "schema_version": SCHEMA_VERSION,
            "feature_config": self.feature_config.to_dict(),
            "feature_id": self.feature_config.identity(),
            "data_version": self._data_version(records),
            "tracks": len(records),
            "genres": dict(sorted(Counter(record.genre for record in records).items())),
            "audio_hours": round(sum(record.duration_s for record in records) / 3600, 4),
            "quarantined": [{"path": q.source.path, "track_id": q.track_id, "reason": q.reason} for q in self.quarantined()],
            "bytes_on_disk": self.bytes_on_disk(),
        }

    # ---- internals -----------------------------------------------------------------------------
    def _require_group(self, path: str) -> zarr.Group:
        """Open or create the group at `path`, even while other processes create it (or its parent) too.

        zarr checks, then creates; a writer that loses that race gets ContainsGroupError although the group
        is there. Asking again opens it; each level of `path` can be lost to a race at most once.
        """
        for _ in range(path.count("/") + 1):
            try:
                return self._root.require_group(path)
            except zarr.errors.ContainsGroupError:
                continue
        return self._root.require_group(path)

    def _nodes(self, top: str) -> Iterator[Any]:
        if top not in self._root:
            return
        for _, genre_group in sorted(self._root[top].groups()):
            for _, node in sorted(genre_group.members()):
                yield node

    def _complete_records(self) -> Iterator[TrackRecord]:
        for node in self._nodes(TRACKS_GROUP):
            attrs = dict(node.attrs)
            if attrs.get(COMPLETE_FLAG):
                yield TrackRecord.from_attrs(attrs)


def _check_header(header: dict[str, Any], location: str, expected: FeatureConfig | None) -> None:
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{location} was written by store schema version {version}; this genreflow reads version "
            f"{SCHEMA_VERSION}. Extract into a new store path (or delete the old store)."
        )
    if expected is not None and header.get("feature_id") != expected.identity():
        raise StoreError(
            f"{location} holds features made with {header.get('feature_config')}, not the requested "
            f"{expected.to_dict()}. One store holds one feature configuration: use another --store path."
        )
