"""The store on local disk: layout, completion marker, quarantine, collections, header checks, damage, info."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.api.asynchronous
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, WrapperStore

from genreflow.core import FeatureConfig
from genreflow.storage.maintenance import describe_feature_set
from genreflow.storage.schema import (
    BATCHES_GROUP,
    BLOSC_CNAME,
    CHUNK_FRAMES,
    FEATURES_GROUP,
    HEADER_KEY,
    QUARANTINE_GROUP,
    CollectionTrack,
    DamagedTrackError,
    QuarantineRecord,
    StoreError,
    TrackRecord,
)
from genreflow.storage.store import FeatureSet, Store, absolute_location
from tests.support.feature_sets import CONFIG, batches_folder, damaged_store, features, record, run_killed_writer
from tests.support.paths import REPO_ROOT


@pytest.fixture
def store(tmp_path: Path) -> FeatureSet:
    return FeatureSet.create_or_open(str(tmp_path / "store.zarr"), CONFIG)


def test_a_written_track_reads_back_in_the_documented_layout(store: FeatureSet, tmp_path: Path):
    written = features(600)
    store.write_tracks([(record("a", 600), written)])

    reopened = FeatureSet.open(str(tmp_path / "store.zarr"), CONFIG)
    assert reopened.tracks() == [record("a", 600)]
    np.testing.assert_array_equal(reopened.read("a"), written.astype(np.float16))  # numpy's rounding
    np.testing.assert_array_equal(reopened.read("a", 300, 310), reopened.read("a")[300:310])
    [(_, batch)] = zarr.open_group(str(batches_folder(tmp_path / "store.zarr")), mode="r").arrays()
    assert batch.chunks == (1, CHUNK_FRAMES, CONFIG.n_mels) and batch.dtype == np.float16
    assert np.isnan(batch.fill_value)  # a missing chunk can never read as data
    [compressor, checksum] = batch.compressors
    assert compressor.cname.value == BLOSC_CNAME and checksum.to_dict() == {"name": "crc32c"}
    assert compressor.blocksize == CHUNK_FRAMES * CONFIG.n_mels * 2  # one Blosc block per float16 chunk


class CountingStore(WrapperStore[LocalStore]):
    """A local store that notes the key of every read, write and write-if-absent made through it."""

    def __init__(self, store: LocalStore) -> None:
        super().__init__(store)
        self.reads: list[str] = []
        self.writes: list[str] = []
        self.writes_if_absent: list[str] = []

    async def get(self, key: str, prototype: BufferPrototype, byte_range: object = None) -> Buffer | None:
        self.reads.append(key)
        return await super().get(key, prototype, byte_range)

    async def exists(self, key: str) -> bool:
        self.reads.append(key)
        return await super().exists(key)

    async def set(self, key: str, value: Buffer) -> None:
        self.writes.append(key)
        await super().set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self.writes_if_absent.append(key)
        await super().set_if_not_exists(key, value)


def test_a_batch_costs_its_metadata_twice_its_chunks_and_no_reads_of_its_own(tmp_path: Path):
    """Each read or write is a request on object storage: a batch is created without reading anything first,
    and a row shorter than the batch's longest does not read its chunk before writing it."""
    location = tmp_path / "store.zarr"
    counting = CountingStore(LocalStore(location))
    FeatureSet.create_or_open(str(location), CONFIG)
    root = Store(sync(zarr.api.asynchronous.open_group(store=counting, mode="r+")), str(location), writable=True)
    handle = root.feature_set(CONFIG)
    handle.write_tracks([(record("first", 10), features(10))])  # a handle's first write opens the batches group
    counting.reads.clear(), counting.writes.clear(), counting.writes_if_absent.clear()

    handle.write_tracks([(record("b", 20), features(20)), (record("c", 12), features(12))])

    newest_batch = max(path.name for path in batches_folder(location).iterdir() if path.is_dir())
    feature_set = f"{FEATURES_GROUP}/{CONFIG.identity()}"
    prefix = f"{feature_set}/{BATCHES_GROUP}/{newest_batch}"
    assert sorted(counting.writes) == [
        f"{prefix}/c.0.0.0",
        f"{prefix}/c.1.0.0",
        f"{prefix}/zarr.json",
        f"{prefix}/zarr.json",
    ]
    parents = [f"{feature_set}/{BATCHES_GROUP}/zarr.json", f"{feature_set}/zarr.json", "zarr.json"]
    assert sorted(counting.writes_if_absent) == sorted(parents)
    assert counting.reads == [f"{feature_set}/{QUARANTINE_GROUP}/zarr.json"]  # are there earlier failures to forget?
    assert [track.key for track in handle.tracks()] == ["b", "c", "first"]


def test_a_batch_holds_the_very_chunks_zarrs_own_writes_make(store: FeatureSet, tmp_path: Path):
    """The store encodes and keys a batch's chunks itself (storage.zarr_io.write_rows): they must be what Zarr's
    own setitem writes for the same rows, byte for byte, rows of several chunks and short rows included."""
    lengths = {"a": 2 * CHUNK_FRAMES + 5, "b": 40, "c": CHUNK_FRAMES}
    written = {key: features(frames) for key, frames in lengths.items()}
    store.write_tracks([(record(key, frames), written[key]) for key, frames in lengths.items()])
    [(name, batch)] = zarr.open_group(str(batches_folder(tmp_path / "store.zarr")), mode="r").arrays()

    reference = zarr.create_array(
        str(tmp_path / "reference.zarr"),
        shape=batch.shape,
        chunks=batch.chunks,
        dtype=batch.dtype,
        compressors=batch.compressors,
        fill_value=batch.fill_value,
        chunk_key_encoding=batch.metadata.chunk_key_encoding,
        config={"write_empty_chunks": True},
    )
    for row, (key, frames) in enumerate(lengths.items()):
        reference[row, :frames] = written[key].astype(np.float16)

    def chunk_files(folder: Path) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in folder.iterdir() if path.name != "zarr.json"}

    ours = chunk_files(batches_folder(tmp_path / "store.zarr") / name)
    assert sorted(ours) == ["c.0.0.0", "c.0.1.0", "c.0.2.0", "c.1.0.0", "c.2.0.0"]  # 3 + 1 + 1 chunks, flat
    assert ours == chunk_files(tmp_path / "reference.zarr")


def test_tracks_of_different_lengths_share_a_batch_and_read_back_at_their_own_length(store: FeatureSet):
    lengths = {"a": 2 * CHUNK_FRAMES + 5, "b": 40, "c": 1}
    written = {key: features(frames) for key, frames in lengths.items()}

    store.write_tracks([(record(key, lengths[key]), written[key]) for key in lengths])

    assert [track.key for track in store.tracks()] == sorted(lengths)
    for key, values in written.items():
        np.testing.assert_allclose(store.read(key), values, atol=0.07)
    assert store.read("b", 30).shape == (10, CONFIG.n_mels)  # never the padding after its end
    assert store.read("b", 30, 10_000).shape == (10, CONFIG.n_mels)
    with pytest.raises(KeyError, match="zzz"):
        store.read("zzz")


def test_a_track_extracted_again_reads_as_its_newest_copy(store: FeatureSet):
    store.write_tracks([(record("a", 10), features(10)), (record("b", 5), features(5))])
    newer = features(12) + 1.0

    store.write_tracks([(record("a", 12), newer)])

    assert store.track("a") == record("a", 12)
    np.testing.assert_allclose(FeatureSet.open(store.location, CONFIG).read("a"), newer, atol=0.07)
    assert [track.key for track in store.tracks()] == ["a", "b"]
    assert describe_feature_set(store)["superseded_copies"] == 1


def test_features_of_the_wrong_shape_are_refused(store: FeatureSet):
    with pytest.raises(ValueError, match="track a: features"):
        store.write_tracks([(record("a", 10), features(10, n_mels=CONFIG.n_mels + 1))])
    with pytest.raises(ValueError, match="at least one frame"):
        store.write_tracks([(record("a", 0), features(0))])


def test_a_handle_kept_across_a_deleted_and_recreated_store_still_writes_visible_tracks(tmp_path: Path):
    """Dask workers keep one handle per store for their lifetime; a user may delete the store between runs."""
    location = tmp_path / "store.zarr"
    kept = FeatureSet.create_or_open(str(location), CONFIG)
    kept.write_tracks([(record("a", 10), features(10))])
    shutil.rmtree(location)
    FeatureSet.create_or_open(str(location), CONFIG)  # the next run's client makes the store again

    kept.write_tracks([(record("b", 12), features(12))])

    assert [track.key for track in FeatureSet.open(str(location), CONFIG).tracks()] == ["b"]


def test_a_successful_extraction_clears_an_earlier_quarantine(store: FeatureSet):
    failed = QuarantineRecord("b", "corrupt", "/music/jazz/b.wav")
    store.quarantine(failed)
    assert store.quarantined() == [failed]

    store.write_tracks([(record("b", 5), features(5))])

    assert store.quarantined() == []
    assert [track.key for track in store.tracks()] == ["b"]


def test_feature_configurations_live_side_by_side_and_an_absent_one_is_named(store: FeatureSet):
    other = FeatureConfig(n_mels=64)
    store.write_tracks([(record("a", 10), features(10))])
    with pytest.raises(StoreError, match="no features made with .*'n_mels': 64"):
        FeatureSet.open(store.location, other)

    FeatureSet.create_or_open(store.location, other).write_tracks([(record("a", 7), features(7, n_mels=64))])

    assert FeatureSet.open(store.location, CONFIG).track("a").n_frames == 10
    assert FeatureSet.open(store.location, other).track("a").n_frames == 7
    assert Store.open(store.location).feature_configs() == sorted([CONFIG, other], key=FeatureConfig.identity)


def test_another_schema_version_is_refused(store: FeatureSet):
    root = zarr.open_group(store.location, mode="a")
    root.attrs[HEADER_KEY] = {**root.attrs[HEADER_KEY], "schema_version": 3}
    with pytest.raises(StoreError, match="schema version 3; this genreflow reads version 4"):
        Store.open(store.location)
    with pytest.raises(StoreError, match="schema version 3"):
        FeatureSet.create_or_open(store.location, CONFIG)


def test_a_missing_store_and_a_foreign_group_are_refused(tmp_path: Path):
    with pytest.raises(StoreError, match="no genreflow store"):
        Store.open(str(tmp_path / "absent.zarr"))
    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w", attributes={"other": 1})
    with pytest.raises(StoreError, match="not a genreflow store"):
        Store.open(str(tmp_path / "foreign.zarr"))
    with pytest.raises(StoreError, match="not a genreflow store"):
        Store.create_or_open(str(tmp_path / "foreign.zarr"))


def test_collections_are_recorded_by_folder_and_replaced_when_extracted_again(store: FeatureSet):
    root = Store.open(store.location, writable=True)
    first = [CollectionTrack("blues/a.wav", "blues", "a"), CollectionTrack("rock/b.wav", "rock", "b")]
    root.record_collection("/music/one", first)
    root.record_collection("/music/two", [CollectionTrack("blues/a.wav", "blues", "other")])
    root.record_collection("/music/one", first[:1])

    assert {record.root for record in root.collections()} == {"/music/one", "/music/two"}
    assert root.collection("/music/one").tracks == (first[0],)
    assert root.collection("/music/two").tracks[0].key == "other"  # same name, other content: never merged
    assert root.collection("/music/three") is None


def test_usable_says_which_tracks_are_ready_quarantined_or_missing(store: FeatureSet):
    store.write_tracks([(record("a", 10), features(10))])
    store.quarantine(QuarantineRecord("q", "silent: RMS level -90 dBFS", "/music/q.wav"))
    tracks = [
        CollectionTrack("g/a.wav", "g", "a"),
        CollectionTrack("g/q.wav", "g", "q"),
        CollectionTrack("g/m.wav", "g", "m"),
    ]

    usable = store.usable(tracks)

    assert usable.ready == tracks[:1]
    assert usable.quarantined == {"g/q.wav": "silent: RMS level -90 dBFS"}
    assert usable.missing == ["g/m.wav"]


def test_reading_the_index_of_hundreds_of_tracks_holds_off_the_cycle_collector(store: FeatureSet):
    # Each collection walks the whole heap, which grows with the collection too: the training-data stage, which
    # reads the index, grew as tracks^1.2 up to 10,000 tracks (bench/scale.py) though the index makes no cycles.
    import gc

    for batch in range(40):
        store.write_tracks([(record(f"t{batch:02d}{row:02d}", 4), features(4)) for row in range(15)])
    reader = FeatureSet.open(store.location, CONFIG)
    collections: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        index = reader.index()
    finally:
        gc.callbacks.remove(count)

    assert len(index.complete) == 600
    # At most the young objects' one sweep once the collector resumes; unpaused, it ran every 700 allocations.
    assert len(collections) <= 1, f"{len(collections)} cycle collections while indexing 600 tracks"
    assert gc.isenabled()


def test_the_data_version_covers_exactly_the_tracks_given(store: FeatureSet):
    tracks = [CollectionTrack("blues/a.wav", "blues", "one"), CollectionTrack("rock/b.wav", "rock", "two")]
    version = store.data_version(tracks)
    assert store.data_version(tracks[::-1]) == version  # order does not matter
    assert store.data_version(tracks[:1]) != version
    assert store.data_version([tracks[0], CollectionTrack("rock/b.wav", "rock", "changed")]) != version
    assert store.data_version([tracks[0], CollectionTrack("rock/b.wav", "jazz", "two")]) != version  # relabelled
    other = FeatureSet.create_or_open(store.location, FeatureConfig(n_mels=64))
    assert other.data_version(tracks) != version


def test_local_paths_become_absolute_and_urls_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_location("store.zarr") == str(tmp_path / "store.zarr")
    assert absolute_location("s3://bucket/store.zarr") == "s3://bucket/store.zarr"


# ---- damage ----------------------------------------------------------------------------------------------------
def test_a_deleted_truncated_or_altered_chunk_is_named_never_read_as_data(tmp_path: Path):
    store, chunks = damaged_store(tmp_path)
    chunks["a"].unlink()
    chunks["b"].write_bytes(chunks["b"].read_bytes()[:-100])
    altered = bytearray(chunks["c"].read_bytes())
    altered[len(altered) // 2] ^= 0xFF
    chunks["c"].write_bytes(bytes(altered))

    damage = store.check(["a", "b", "c", "d", "e"])

    assert sorted(damage) == ["a", "b", "c"]
    assert "c.0.0.0 is missing" in damage["a"]
    assert "c.1.0.0 fails its checksum" in damage["b"] and "c.2.0.0 fails its checksum" in damage["c"]
    for key, needle in (("a", "missing"), ("b", "does not decode"), ("c", "does not decode")):
        with pytest.raises(DamagedTrackError, match=needle):
            store.read(key)
    assert store.read("d").shape == (50, CONFIG.n_mels)


def test_a_damaged_store_header_is_a_store_error(store: FeatureSet, tmp_path: Path):
    (tmp_path / "store.zarr" / "zarr.json").write_text("{ not json")
    with pytest.raises(StoreError, match="damaged"):
        Store.open(store.location)


# ---- a writer killed mid-write ------------------------------------------------------------------------------
def test_a_writer_killed_mid_write_leaves_nothing_that_looks_complete(tmp_path: Path):
    location = str(tmp_path / "store.zarr")

    run_killed_writer(location)

    store = FeatureSet.open(location, FeatureConfig())
    assert store.tracks() == [] and store.track("long") is None
    assert store.incomplete_keys() == ["long"]
    assert (describe_feature_set(store)["tracks"], describe_feature_set(store)["incomplete_tracks"]) == (0, 1)


def test_a_writer_killed_while_replacing_a_track_loses_nothing(tmp_path: Path):
    location = str(tmp_path / "store.zarr")
    earlier = TrackRecord("long", 20, 1.0, "/x")
    FeatureSet.create_or_open(location, FeatureConfig()).write_tracks([(earlier, np.zeros((20, 128), np.float32))])

    run_killed_writer(location)

    store = FeatureSet.open(location, FeatureConfig())
    assert store.tracks() == [earlier] and store.read("long").shape == (20, 128)
    assert store.incomplete_keys() == []  # a complete copy is there


# ---- writers in several processes creating a new store at once --------------------------------------------------
RACER = """
import sys, time
from pathlib import Path
import numpy as np
from genreflow.core import FeatureConfig
from genreflow.storage.schema import QuarantineRecord, TrackRecord
from genreflow.storage.store import FeatureSet

location, go, name = sys.argv[1:4]
while not Path(go).exists():
    time.sleep(0.001)
store = FeatureSet.create_or_open(location, FeatureConfig(n_mels=8))
for index in range(30):
    store.write_tracks([(TrackRecord(f"{name}{index:02d}", 4, 0.1, "/x"), np.zeros((4, 8), np.float32))])
    store.quarantine(QuarantineRecord(f"bad-{name}{index:02d}", "silent", "/x"))
"""


def test_writers_creating_the_same_new_store_at_once_all_succeed(tmp_path: Path):
    """Without care, zarr's check-then-create lets all but one writer fail on a new group."""
    location, go = str(tmp_path / "store.zarr"), tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, location, str(go), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        for name in ("a", "b", "c")
    ]
    time.sleep(1.0)  # every racer waiting
    go.touch()

    results = [racer.communicate(timeout=120) for racer in racers]

    assert [racer.returncode for racer in racers] == [0, 0, 0], [stderr for _, stderr in results]
    store = FeatureSet.open(location, FeatureConfig(n_mels=8))
    assert (len(store.tracks()), len(store.quarantined())) == (90, 90)
