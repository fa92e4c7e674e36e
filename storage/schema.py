"""The feature store's layout: every name, dtype, chunk shape and version lives here.

Layout of a store (a Zarr v3 group, local path or any fsspec URL)::

    <store>/                         root group, attrs["genreflow"] = StoreHeader
      batches/<batch name>           float16 array (tracks, frames, n_mels), chunks (1, CHUNK_FRAMES, n_mels),
                                     Blosc/zstd, one Blosc block per chunk, chunk keys c.<row>.<i>.0; one
                                     row per track, written by one extraction task;
                                     attrs = {"complete": false, "track_ids": [...]} when created, then
                                     {"complete": true, "tracks": [TrackRecord, one per row]} written last
      quarantine/<genre>/<file name> empty group; attrs = {"track_id", "reason", "source"}

A batch is complete only once its attributes say `"complete": true` and list its tracks' records; that
update is the last write of the batch, so a process killed earlier leaves a batch that readers treat as
missing (its `track_ids` are what `FeatureStore.incomplete_track_ids()` lists, so the next extraction
redoes them). Row r holds the track of record r in its first `n_frames` frames; the frames after them
(a row is as long as the batch's longest track) are never written and never read. Batch names start with
the time they were written, so they sort oldest first: when a changed file is extracted again its newer
copy wins, and the older row stays on disk (`store info` counts such superseded copies). A batch none of whose
rows is a newest copy, or one left incomplete, is dead: `FeatureStore.compact` deletes dead batches once they
have been dead for a minimum age (a batch is deleted whole; one that still holds a newest copy stays).

Why batches, not one array per track: Zarr's cost per array (creating it, its metadata, the event-loop
round trips) was 14 ms of CPU per track here, more than the log-mel itself; one array per extraction task
(up to 32 tracks, tasks/extract.py), written with one round trip, cost about 4 ms per track in batches of
9. Every writer still writes only its own arrays, so writers in many processes never share a file. A store
made with another `SCHEMA_VERSION` or another `FeatureConfig` is refused with an error that says which: one
store holds one feature configuration, so a new configuration needs a new store path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# 1: one array per track (genreflow before batches); 2: batches; 3: sources hashed with XXH3-128, not SHA-256,
# and chunk keys separated by "." (CHUNK_KEY_SEPARATOR)
SCHEMA_VERSION = 3
HEADER_KEY = "genreflow"
BATCHES_GROUP = "batches"
QUARANTINE_GROUP = "quarantine"
COMPLETE_FLAG = "complete"
TRACK_IDS_KEY = "track_ids"  # a batch's tracks, known from its creation on
RECORDS_KEY = "tracks"  # their records, written with the completion flag
# 1,536 frames (35.7 s) of 128 float16 bands is a 384 KiB chunk, so a GTZAN track (1,293 frames) is one
# chunk and a long track is cut into pieces that a random crop reads one or two of. Zarr's cost is per chunk,
# not per byte, at this size (measured here on 30 s tracks, with schema 1's one array per track): writing a
# track took 18.5 ms with 256-frame chunks against 11.2 ms with one chunk, and reading a random 1 s / 5 s /
# 30 s crop of a gtzan-mini track 1.9 / 2.6 / 5.3 ms against 2.1 / 2.0 / 2.0 ms.
CHUNK_FRAMES = 1536
# Chunk keys "c.<row>.<frame chunk>.0", all files in the batch's own folder, rather than Zarr's default
# "c/<row>/<frame chunk>/0", which made two folders per track on local disk (measured here, interleaved over 12
# rounds of gtzan-mini, twice: 3-4% less CPU to write a batch).
CHUNK_KEY_SEPARATOR = "."
BLOSC_CNAME = "zstd"
# Log-mel float16 hardly compresses (331 KB raw per 30 s; with Blosc's default blocks 277 KB at level 1, 267 KB
# at 3 or 5); level 1 costs about 12 ms less CPU per track than level 5 when writing, measured here.
BLOSC_LEVEL = 1
# Blosc cuts a chunk into blocks and compresses each on its own; its default for float16 here is small blocks.
# One block per chunk, measured here on gtzan-mini chunks (interleaved, 25 rounds): 1.07 ms to compress
# instead of 1.54, 0.30 ms to decompress instead of 0.57, and 6% fewer bytes (ratio 0.68 against 0.73). Zarr
# decodes whole chunks anyway, so smaller blocks would buy nothing.


def blosc_block_bytes(n_mels: int, itemsize: int) -> int:
    """Blosc's block size: one block per chunk of CHUNK_FRAMES frames of `n_mels` values (see above)."""
    return CHUNK_FRAMES * n_mels * itemsize


@dataclass(frozen=True)
class SourceStamp:
    """What identifies an audio file: size and mtime tell the next run whether to extract it again, the
    content hash goes into the data version (`FeatureStore.data_version`) that trained models are keyed by.

    The hash is XXH3-128 (hex): it only has to tell accidentally different files apart, which its 128 bits do
    as well as SHA-256's, and it costs 0.03 ms of CPU per 30 s WAV track against SHA-256's 0.88 (measured here,
    SHA-NI in use), about 5% of extracting the track. It is not meant to resist a forger: whoever can write
    the training files can change the models anyway.
    """

    path: str
    size: int
    mtime_ns: int
    xxh3_128: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns, "xxh3_128": self.xxh3_128}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SourceStamp:
        return cls(values["path"], int(values["size"]), int(values["mtime_ns"]), values["xxh3_128"])


@dataclass(frozen=True)
class TrackRecord:
    """One complete track in the store: its label, source and shape."""

    track_id: str
    genre: str
    n_frames: int
    duration_s: float
    source: SourceStamp

    def to_attrs(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "genre": self.genre,
            "n_frames": self.n_frames,
            "duration_s": self.duration_s,
            "source": self.source.to_dict(),
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> TrackRecord:
        return cls(
            track_id=attrs["track_id"],
            genre=attrs["genre"],
            n_frames=int(attrs["n_frames"]),
            duration_s=float(attrs["duration_s"]),
            source=SourceStamp.from_dict(attrs["source"]),
        )


@dataclass(frozen=True)
class QuarantineRecord:
    """A file that could not be turned into features, and why."""

    track_id: str
    reason: str
    source: SourceStamp

    def to_attrs(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "reason": self.reason, "source": self.source.to_dict()}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> QuarantineRecord:
        return cls(attrs["track_id"], attrs["reason"], SourceStamp.from_dict(attrs["source"]))


class StoreError(RuntimeError):
    """The store cannot be used as asked (wrong version, other feature config, missing)."""
