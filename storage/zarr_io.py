"""Zarr-level reading and writing: the root and its header, groups, batch arrays and their chunks.

Kept apart from the facade (storage/store.py) because here Zarr's own machinery is bypassed where it costs
requests or CPU (chunks encoded whole, metadata written by hand, listings that survive a bad document,
checksums checked without decoding); what it writes must stay exactly what Zarr would (tests/storage).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

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

from genreflow.storage.float16 import to_float16
from genreflow.storage.index import DamagedBatch, StoredTrack
from genreflow.storage.schema import (
    BLOSC_CNAME,
    BLOSC_LEVEL,
    CHECKSUM_BYTES,
    CHUNK_FRAMES,
    CHUNK_KEY_SEPARATOR,
    COMPLETE_FLAG,
    HEADER_KEY,
    METADATA_DOCUMENT,
    RECORDS_KEY,
    SCHEMA_VERSION,
    StoreError,
    TrackRecord,
    blosc_block_bytes,
    chunk_count,
    chunk_key,
)


async def read_batches(batches: StorePath) -> tuple[list[zarr.Array], list[DamagedBatch]]:
    """Every batch array under `batches`, oldest first, and those whose metadata is missing or will not parse.

    Read by hand rather than through Zarr's group listing, which stops at the first bad document.
    """
    names = await child_names(batches)
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


async def gathered(coroutines: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Every coroutine's result, run at once on Zarr's event loop (`sync` must be given one coroutine)."""
    return await asyncio.gather(*coroutines)


async def child_names(path: StorePath) -> list[str]:
    """The names of the nodes directly under `path`, sorted (its own metadata document left out)."""
    names = [name async for name in path.store.list_dir(path.path)]
    return sorted(name for name in names if name and name != METADATA_DOCUMENT)


async def chunk_damage(track: StoredTrack) -> str | None:
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


def read_header(root: zarr.AsyncGroup, location: str, missing_ok: bool) -> dict[str, Any] | None:
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


def open_root(location: str, mode: str, storage_options: dict[str, Any] | None) -> zarr.AsyncGroup:
    """The store's root group; a writer that loses the race to create a new store opens the winner's. A local
    path that is a file is refused by name (Zarr would say only "File exists" or "not found")."""
    if "://" not in location and Path(location).is_file():
        raise StoreError(f"{location} is a file, not a store: a store is a folder (or an fsspec URL); name another")
    opening = partial(zarr.api.asynchronous.open_group, store=location, mode=mode, storage_options=storage_options)
    try:
        return sync(opening())
    except zarr.errors.ContainsGroupError:
        return sync(opening())


async def require_group(parent: zarr.AsyncGroup, path: str) -> zarr.AsyncGroup:
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


async def bytes_under(store: zarr.abc.store.Store, prefixes: list[str]) -> int:
    """Total size of the objects under each prefix ("" is the whole store)."""
    return sum(await asyncio.gather(*(store.getsize_prefix(prefix) for prefix in prefixes)))


def as_stored(features: np.ndarray, dtype: str) -> np.ndarray:
    """Features rounded to the store's dtype exactly as the store keeps them (prediction reuses this);
    float16 by `to_float16`, numpy's own cast at a third of its CPU."""
    if np.dtype(dtype) == np.float16 and features.dtype == np.float32:
        return to_float16(features)
    return features.astype(dtype, copy=False)


async def write_rows(batch: zarr.AsyncArray, rows: list[np.ndarray]) -> None:
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


async def write_metadata(node: StorePath, metadata: ArrayV3Metadata | GroupMetadata, if_absent: bool = False) -> None:
    """Write a node's metadata document (zarr.json), or, `if_absent`, only where there is none yet."""
    [(key, document)] = metadata.to_buffer_dict(default_buffer_prototype()).items()
    await ((node / key).set_if_not_exists(document) if if_absent else (node / key).set(document))


@lru_cache(maxsize=4)
def batch_metadata(n_mels: int, dtype: str) -> ArrayV3Metadata:
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
