"""The store's layout: every name, dtype, chunk shape and version lives here.

Layout of a store (a Zarr v3 group, local path or any fsspec URL)::

    <store>/                              root group, attrs["genreflow"] = {"schema_version": 4}
      features/<feature id>/              one group per feature configuration, attrs {"feature_config": ...}
        batches/<batch name>              float16 array (tracks, frames, n_mels), chunks (1, CHUNK_FRAMES,
                                          n_mels), Blosc/zstd then a CRC-32C checksum per chunk, fill value
                                          NaN, chunk keys c.<row>.<i>.0; one row per track, written by one
                                          extraction task; attrs = {"complete": false, "keys": [...]} when
                                          created, then {"complete": true, "tracks": [TrackRecord, ...]} last
        quarantine/<key>                  empty group; attrs = QuarantineRecord
      collections/<collection id>         empty group; attrs = CollectionRecord (a folder's tracks, labelled)

Features are stored by the *content* of the audio they came from (`key`: the XXH3-128 hash of the file's
bytes), never by its name: two folders holding different files under the same names never overwrite each
other, a file copied elsewhere is extracted once, and a file whose bytes change is a new key whatever its
timestamps say. Labels belong to a collection, not to the features: a collection record lists a folder's
tracks as (track id `<genre>/<file name>`, genre, key). A run trains on exactly its collection's tracks.

A batch is complete only once its attributes say `"complete": true` and list its tracks' records; that update
is the last write of the batch, so a process killed earlier leaves a batch that readers treat as missing (its
`keys` are what `FeatureSet.incomplete_keys()` lists). Row r holds the track of record r in its first
`n_frames` frames; the frames after them (a row is as long as the batch's longest track) are never read.
Batch names start with the time they were written, so they sort oldest first: a track extracted again wins
over its older copy, which `FeatureSet.compact` deletes once no reader can still need it.

Damage is caught, never read as data: every chunk carries a CRC-32C of its compressed bytes, a missing chunk
reads as the NaN fill value (log-mels are always finite), and a batch whose metadata does not parse is
listed as damaged rather than crashing a listing (`genreflow store verify`).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

# 1: one array per track; 2: batches; 3: XXH3-128 source hashes; 4: features by content key, several feature
# configurations and the collections' labels in one store, checksummed chunks with a NaN fill value.
SCHEMA_VERSION = 4
HEADER_KEY = "genreflow"
FEATURES_GROUP = "features"
BATCHES_GROUP = "batches"
QUARANTINE_GROUP = "quarantine"
COLLECTIONS_GROUP = "collections"
FEATURE_CONFIG_KEY = "feature_config"
COMPLETE_FLAG = "complete"
KEYS_KEY = "keys"  # a batch's tracks, known from its creation on
RECORDS_KEY = "tracks"  # their records, written with the completion flag
METADATA_DOCUMENT = "zarr.json"
# 1,536 frames (35.7 s) of 128 float16 bands is a 384 KiB chunk, so a GTZAN track (1,293 frames) is one
# chunk and a long track is cut into pieces that a random crop reads one or two of (docs/design.md).
CHUNK_FRAMES = 1536
# Chunk keys "c.<row>.<frame chunk>.0": every file of a batch in its own folder (docs/design.md).
CHUNK_KEY_SEPARATOR = "."
BLOSC_CNAME = "zstd"
BLOSC_LEVEL = 1  # log-mel float16 hardly compresses more at higher levels, which cost more CPU
CHECKSUM_BYTES = 4  # the CRC-32C the crc32c codec appends to each chunk


def blosc_block_bytes(n_mels: int, itemsize: int) -> int:
    """One Blosc block per chunk: Zarr decodes whole chunks anyway, and one block compresses faster."""
    return CHUNK_FRAMES * n_mels * itemsize


def chunk_count(n_frames: int) -> int:
    """How many chunks a row of `n_frames` frames is written in (at least one)."""
    return max(1, -(-n_frames // CHUNK_FRAMES))


def chunk_key(row: int, index: int) -> str:
    """A chunk's key inside its batch, as the array's chunk key encoding writes it."""
    return CHUNK_KEY_SEPARATOR.join(("c", str(row), str(index), "0"))


def new_batch_name() -> str:
    """Sorts by the time it was made (then at random), so the newest copy of a track is the last one listed."""
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def written_ns(batch_name: str) -> int:
    """When a batch was created, from its name (see `new_batch_name`); 0 for a name not made that way."""
    stamp = batch_name.partition("-")[0]
    return int(stamp) if stamp.isdigit() else 0


def collection_id(root: str) -> str:
    """A collection's name in the store: its folder (absolute path or URL), hashed to a safe node name."""
    return hashlib.sha256(root.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrackRecord:
    """One complete track's features: the content key of its audio, its length, and where it was read."""

    key: str
    n_frames: int
    duration_s: float
    source: str  # the path it was first extracted from (for people; the key is what identifies it)

    def to_attrs(self) -> dict[str, Any]:
        return {"key": self.key, "n_frames": self.n_frames, "duration_s": self.duration_s, "source": self.source}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> TrackRecord:
        return cls(str(attrs["key"]), int(attrs["n_frames"]), float(attrs["duration_s"]), str(attrs["source"]))


@dataclass(frozen=True)
class QuarantineRecord:
    """Audio content that could not be turned into features, and why."""

    key: str
    reason: str
    source: str

    def to_attrs(self) -> dict[str, Any]:
        return {"key": self.key, "reason": self.reason, "source": self.source}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> QuarantineRecord:
        return cls(str(attrs["key"]), str(attrs["reason"]), str(attrs["source"]))


@dataclass(frozen=True)
class CollectionTrack:
    """One track of a collection: its id (`<genre>/<file name>`), its label and the key of its content."""

    track_id: str
    genre: str
    key: str

    def to_json(self) -> list[str]:
        return [self.track_id, self.genre, self.key]

    @classmethod
    def from_json(cls, values: list[str]) -> CollectionTrack:
        track_id, genre, key = values
        return cls(str(track_id), str(genre), str(key))


@dataclass(frozen=True)
class CollectionRecord:
    """What a folder held when it was last extracted: its tracks, each labelled and keyed by content."""

    root: str
    tracks: tuple[CollectionTrack, ...]
    recorded: str  # ISO time of the extraction that wrote this record

    @property
    def id(self) -> str:
        return collection_id(self.root)

    @property
    def genres(self) -> list[str]:
        return sorted({track.genre for track in self.tracks})

    def to_attrs(self) -> dict[str, Any]:
        return {"root": self.root, "recorded": self.recorded, "tracks": [track.to_json() for track in self.tracks]}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> CollectionRecord:
        tracks = tuple(CollectionTrack.from_json(values) for values in attrs["tracks"])
        return cls(str(attrs["root"]), tracks, str(attrs["recorded"]))


def data_version(feature_id: str, tracks: list[CollectionTrack] | tuple[CollectionTrack, ...]) -> str:
    """The identity of what a training learns from: the feature configuration and every track's id, label
    and content, in track order. Nothing else (other collections in the store, clip lengths) enters it."""
    digest = hashlib.sha256(feature_id.encode())
    for track in sorted(tracks, key=lambda track: track.track_id):
        digest.update(f"\n{track.track_id}\t{track.genre}\t{track.key}".encode())
    return digest.hexdigest()[:16]


class StoreError(RuntimeError):
    """The store cannot be used as asked (missing, another version, damaged, lacking a feature set)."""


class DamagedTrackError(StoreError):
    """A stored track's features cannot be trusted: a chunk is missing, fails its checksum or will not decode."""

    def __init__(self, key: str, reason: str, track_id: str | None = None) -> None:
        super().__init__(f"{track_id or 'track ' + key}: {reason}")
        self.key = key
        self.reason = reason
        self.track_id = track_id

    def named(self, track_id: str) -> DamagedTrackError:
        """The same damage, named by the track id a reader knows the track by."""
        return DamagedTrackError(self.key, self.reason, track_id)

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:
        """Pickle by the constructor's arguments (Dask and Prefect move exceptions between processes)."""
        return type(self), (self.key, self.reason, self.track_id)
