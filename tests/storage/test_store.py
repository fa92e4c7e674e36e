"""The store on local disk: layout, completion marker, quarantine, collections, header checks, damage, info."""

from __future__ import annotations

import json
import os
import shutil
import signal
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

from genreflow.config import FeatureConfig
from storage.schema import (
    BATCHES_GROUP,
    BLOSC_CNAME,
    CHUNK_FRAMES,
    FEATURES_GROUP,
    HEADER_KEY,
    QUARANTINE_GROUP,
    SCHEMA_VERSION,
    CollectionTrack,
    DamagedTrackError,
    QuarantineRecord,
    StoreError,
    TrackRecord,
)
from storage.store import FeatureSet, Store, absolute_location

CONFIG = FeatureConfig(n_mels=32)
REPO = Path(__file__).resolve().parents[2]


def record(key: str, n_frames: int) -> TrackRecord:
    return TrackRecord(key, n_frames, n_frames * CONFIG.hop_length / CONFIG.sample_rate, f"/music/{key}.wav")


def features(n_frames: int, n_mels: int = CONFIG.n_mels) -> np.ndarray:
    return np.random.default_rng(n_frames).uniform(-80.0, 20.0, (n_frames, n_mels)).astype(np.float32)


def batches_folder(location: str | Path, config: FeatureConfig = CONFIG) -> Path:
    return Path(location) / FEATURES_GROUP / config.identity() / BATCHES_GROUP


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
    assert sorted(counting.writes) == [f"{prefix}/c.0.0.0", f"{prefix}/c.1.0.0", f"{prefix}/zarr.json", f"{prefix}/zarr.json"]
    parents = [f"{feature_set}/{BATCHES_GROUP}/zarr.json", f"{feature_set}/zarr.json", "zarr.json"]
    assert sorted(counting.writes_if_absent) == sorted(parents)
    assert counting.reads == [f"{feature_set}/{QUARANTINE_GROUP}/zarr.json"]  # are there earlier failures to forget?
    assert [track.key for track in handle.tracks()] == ["b", "c", "first"]


def test_a_batch_holds_the_very_chunks_zarrs_own_writes_make(store: FeatureSet, tmp_path: Path):
    """The store encodes and keys a batch's chunks itself (storage.store._write_rows): they must be what Zarr's
    own setitem writes for the same rows, byte for byte, rows of several chunks and short rows included."""
    lengths = {"a": 2 * CHUNK_FRAMES + 5, "b": 40, "c": CHUNK_FRAMES}
    written = {key: features(frames) for key, frames in lengths.items()}
    store.write_tracks([(record(key, frames), written[key]) for key, frames in lengths.items()])
    [(name, batch)] = zarr.open_group(str(batches_folder(tmp_path / "store.zarr")), mode="r").arrays()

    reference = zarr.create_array(
        str(tmp_path / "reference.zarr"), shape=batch.shape, chunks=batch.chunks, dtype=batch.dtype,
        compressors=batch.compressors, fill_value=batch.fill_value,
        chunk_key_encoding=batch.metadata.chunk_key_encoding, config={"write_empty_chunks": True},
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
    assert store.info()["superseded_copies"] == 1


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
    tracks = [CollectionTrack("g/a.wav", "g", "a"), CollectionTrack("g/q.wav", "g", "q"), CollectionTrack("g/m.wav", "g", "m")]

    usable = store.usable(tracks)

    assert usable.ready == tracks[:1]
    assert usable.quarantined == {"g/q.wav": "silent: RMS level -90 dBFS"}
    assert usable.missing == ["g/m.wav"]


def test_info_summarises_feature_sets_collections_quarantine_and_size(store: FeatureSet, tmp_path: Path):
    store.write_tracks([(record("a", 300), features(300)), (record("c", 40), features(40))])
    store.quarantine(QuarantineRecord("b", "silent", "/music/jazz/b.wav"))
    tracks = [CollectionTrack("blues/a.wav", "blues", "a"), CollectionTrack("jazz/b.wav", "jazz", "b")]
    Store.open(store.location, writable=True).record_collection("/music", tracks)

    info = Store.open(store.location).info()

    assert info["schema_version"] == SCHEMA_VERSION
    [features_info] = info["feature_sets"]
    assert (features_info["tracks"], features_info["incomplete_tracks"], features_info["superseded_copies"]) == (2, 0, 0)
    assert features_info["quarantined"] == [{"key": "b", "source": "/music/jazz/b.wav", "reason": "silent"}]
    assert features_info["feature_config"] == CONFIG.to_dict()
    [collection] = info["collections"]
    assert (collection["root"], collection["tracks"], collection["genres"]) == ("/music", 2, {"blues": 1, "jazz": 1})
    assert collection["feature_sets"] == {CONFIG.identity(): {"ready": 1, "quarantined": 1, "missing": 0}}
    on_disk = sum(path.stat().st_size for path in (tmp_path / "store.zarr").rglob("*") if path.is_file())
    assert info["bytes_on_disk"] == on_disk


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
def damaged_store(tmp_path: Path) -> tuple[FeatureSet, dict[str, Path]]:
    """Four one-chunk tracks in one batch and a fifth in its own; returns the store and each track's chunk file."""
    location = str(tmp_path / "store.zarr")
    store = FeatureSet.create_or_open(location, CONFIG)
    store.write_tracks([(record(key, 50), features(50)) for key in ("a", "b", "c", "d")])
    store.write_tracks([(record("e", 60), features(60))])
    batches = sorted(path for path in batches_folder(location).iterdir() if path.is_dir())
    chunks = {key: batches[0] / f"c.{row}.0.0" for row, key in enumerate("abcd")}
    chunks["e"] = batches[1] / "c.0.0.0"
    return FeatureSet.open(location, CONFIG), chunks


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


def test_a_damaged_batch_metadata_is_listed_and_the_rest_reads(tmp_path: Path):
    store, chunks = damaged_store(tmp_path)
    (chunks["e"].parent / "zarr.json").write_text('{"zarr_format": 3, "node_type": "arr')

    assert [track.key for track in store.tracks()] == ["a", "b", "c", "d"]
    [damaged] = store.info()["damaged_batches"]
    assert damaged["name"] == chunks["e"].parent.name and "does not parse" in damaged["reason"]
    [entry] = Store.open(store.location).verify()
    assert (entry.kind, entry.name) == ("batch", chunks["e"].parent.name)
    assert Store.open(store.location, writable=True).compact(min_age_s=0).removed[0].reason == "damaged"
    assert not chunks["e"].parent.exists()


def test_verify_reads_every_track_and_lists_each_damage_once(tmp_path: Path):
    store, chunks = damaged_store(tmp_path)
    assert Store.open(store.location).verify() == []
    chunks["d"].unlink()
    (tmp_path / "store.zarr" / "collections").mkdir(exist_ok=True)

    damage = Store.open(store.location).verify()

    assert [(entry.kind, entry.name) for entry in damage] == [("track", "d")]
    assert "c.3.0.0 is missing" in damage[0].reason


def test_a_damaged_store_header_is_a_store_error(store: FeatureSet, tmp_path: Path):
    (tmp_path / "store.zarr" / "zarr.json").write_text("{ not json")
    with pytest.raises(StoreError, match="damaged"):
        Store.open(store.location)


# ---- a writer killed mid-write ------------------------------------------------------------------------------
WRITER = """
import sys
import numpy as np
from genreflow.config import FeatureConfig
from storage.schema import TrackRecord
from storage.store import FeatureSet

frames = int(sys.argv[2])
store = FeatureSet.create_or_open(sys.argv[1], FeatureConfig())
values = np.random.default_rng(0).uniform(-80, 0, (frames, 128)).astype(np.float32)
store.write_tracks([(TrackRecord("long", frames, 1.0, "/x"), values)])
print("finished", flush=True)
"""
KILLED_FRAMES = 100 * CHUNK_FRAMES  # 100 chunks: the kill lands long before the last one


def kill_when_chunks_appear(writer: subprocess.Popen[str], batches: Path) -> None:
    deadline = time.monotonic() + 120
    while not any(batches.glob("*/c.*")):
        assert writer.poll() is None, f"the writer exited before writing any chunk: {writer.communicate()}"
        assert time.monotonic() < deadline, "the writer never started writing chunks"
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    writer.wait()


def run_killed_writer(location: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, location, str(KILLED_FRAMES)], stdout=subprocess.PIPE, text=True,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    kill_when_chunks_appear(writer, batches_folder(location, FeatureConfig()))
    assert writer.returncode == -signal.SIGKILL and "finished" not in writer.stdout.read()


def test_a_writer_killed_mid_write_leaves_nothing_that_looks_complete(tmp_path: Path):
    location = str(tmp_path / "store.zarr")

    run_killed_writer(location)

    store = FeatureSet.open(location, FeatureConfig())
    assert store.tracks() == [] and store.track("long") is None
    assert store.incomplete_keys() == ["long"]
    assert (store.info()["tracks"], store.info()["incomplete_tracks"]) == (0, 1)


def test_a_writer_killed_while_replacing_a_track_loses_nothing(tmp_path: Path):
    location = str(tmp_path / "store.zarr")
    earlier = TrackRecord("long", 20, 1.0, "/x")
    FeatureSet.create_or_open(location, FeatureConfig()).write_tracks([(earlier, np.zeros((20, 128), np.float32))])

    run_killed_writer(location)

    store = FeatureSet.open(location, FeatureConfig())
    assert store.tracks() == [earlier] and store.read("long").shape == (20, 128)
    assert store.incomplete_keys() == []  # a complete copy is there


# ---- compaction ----------------------------------------------------------------------------------------------
def store_with_dead_batches(location: str) -> FeatureSet:
    """A killed writer's batch (first: the writer is killed once any chunk is in the store), then a and b (a
    later superseded), c (superseded), c again, a again."""
    run_killed_writer(location)
    config = FeatureConfig()
    store = FeatureSet.create_or_open(location, config)
    store.write_tracks([(record("a", 10), features(10, 128)), (record("b", 11), features(11, 128))])
    store.write_tracks([(record("c", 12), features(12, 128))])
    store.write_tracks([(record("c", 13), features(13, 128))])
    store.write_tracks([(record("a", 14), features(14, 128))])
    return store


def test_compact_deletes_only_what_no_reader_needs_and_every_track_reads_as_before(tmp_path: Path):
    store = store_with_dead_batches(str(tmp_path / "store.zarr"))
    tracks_before = store.tracks()
    features_before = {track.key: store.read(track.key) for track in tracks_before}
    bytes_before = store.store.bytes_on_disk()
    assert (store.info()["superseded_copies"], store.info()["incomplete_tracks"]) == (2, 1)

    compaction = store.compact(min_age_s=0)

    assert sorted(batch.reason for batch in compaction.removed) == ["incomplete", "superseded"]
    assert compaction.too_young == 0 and not compaction.dry_run
    assert bytes_before - store.store.bytes_on_disk() == compaction.bytes_freed > 0
    reopened = FeatureSet.open(store.location, FeatureConfig())
    assert reopened.tracks() == tracks_before
    for key, values in features_before.items():
        np.testing.assert_array_equal(reopened.read(key), values)
    # a's first copy shares its batch with b, the newest copy of b: that batch stays whole
    assert (reopened.info()["superseded_copies"], reopened.info()["incomplete_tracks"]) == (1, 0)
    assert reopened.compact(min_age_s=0).removed == []


def test_compact_leaves_young_dead_batches_and_a_dry_run_deletes_nothing(tmp_path: Path):
    store = store_with_dead_batches(str(tmp_path / "store.zarr"))
    bytes_before = store.store.bytes_on_disk()

    young = store.compact(min_age_s=3600)
    dry = store.compact(min_age_s=0, dry_run=True)

    assert (young.removed, young.too_young, young.bytes_freed) == ([], 2, 0)
    assert len(dry.removed) == 2 and dry.dry_run and dry.bytes_freed > 0
    assert store.store.bytes_on_disk() == bytes_before
    assert (store.info()["superseded_copies"], store.info()["incomplete_tracks"]) == (2, 1)


# ---- writers in several processes creating a new store at once --------------------------------------------------
RACER = """
import sys, time
from pathlib import Path
import numpy as np
from genreflow.config import FeatureConfig
from storage.schema import QuarantineRecord, TrackRecord
from storage.store import FeatureSet

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
        subprocess.Popen([sys.executable, "-c", RACER, location, str(go), name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        for name in ("a", "b", "c")
    ]
    time.sleep(1.0)  # every racer waiting
    go.touch()

    results = [racer.communicate(timeout=120) for racer in racers]

    assert [racer.returncode for racer in racers] == [0, 0, 0], [stderr for _, stderr in results]
    store = FeatureSet.open(location, FeatureConfig(n_mels=8))
    assert (len(store.tracks()), len(store.quarantined())) == (90, 90)
