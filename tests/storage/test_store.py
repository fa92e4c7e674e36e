"""The feature store on local disk: layout, completion marker, quarantine, header checks, info."""

from __future__ import annotations

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
    HEADER_KEY,
    QUARANTINE_GROUP,
    SCHEMA_VERSION,
    QuarantineRecord,
    SourceStamp,
    StoreError,
    TrackRecord,
)
from storage.store import FeatureStore, absolute_location

CONFIG = FeatureConfig(n_mels=32)
REPO = Path(__file__).resolve().parents[2]


def record(track_id: str, n_frames: int, content_hash: str = "abc") -> TrackRecord:
    stamp = SourceStamp(f"/music/{track_id}", 1234, 5678, content_hash)
    return TrackRecord(track_id, track_id.split("/")[0], n_frames, n_frames * CONFIG.hop_length / CONFIG.sample_rate, stamp)


def features(n_frames: int, n_mels: int = CONFIG.n_mels) -> np.ndarray:
    return np.random.default_rng(n_frames).uniform(-80.0, 20.0, (n_frames, n_mels)).astype(np.float32)


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore.create_or_open(str(tmp_path / "store.zarr"), CONFIG)


def test_a_written_track_reads_back_in_the_documented_layout(store: FeatureStore, tmp_path: Path):
    written = features(600)
    store.write_track(record("blues/a.wav", 600), written)

    reopened = FeatureStore.open(str(tmp_path / "store.zarr"))
    assert reopened.feature_config == CONFIG
    assert reopened.tracks() == [record("blues/a.wav", 600)]
    np.testing.assert_array_equal(reopened.read("blues/a.wav"), written.astype(np.float16))  # numpy's rounding
    np.testing.assert_array_equal(reopened.read("blues/a.wav", 300, 310), reopened.read("blues/a.wav")[300:310])
    [(_, batch)] = zarr.open_group(str(tmp_path / "store.zarr" / BATCHES_GROUP), mode="r").arrays()
    assert batch.chunks == (1, CHUNK_FRAMES, CONFIG.n_mels) and batch.dtype == np.float16
    [compressor] = batch.compressors
    assert compressor.cname.value == BLOSC_CNAME
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
    FeatureStore.create_or_open(str(location), CONFIG)
    handle = FeatureStore(sync(zarr.api.asynchronous.open_group(store=counting, mode="r+")), CONFIG, str(location))
    handle.write_track(record("blues/first.wav", 10), features(10))  # a handle's first write opens the batches group
    counting.reads.clear(), counting.writes.clear(), counting.writes_if_absent.clear()

    handle.write_tracks([(record("jazz/b.wav", 20), features(20)), (record("rock/c.wav", 12), features(12))])

    newest_batch = max(path.name for path in (location / BATCHES_GROUP).iterdir() if path.is_dir())
    prefix = f"{BATCHES_GROUP}/{newest_batch}"
    assert sorted(counting.writes) == [f"{prefix}/c.0.0.0", f"{prefix}/c.1.0.0", f"{prefix}/zarr.json", f"{prefix}/zarr.json"]
    assert sorted(counting.writes_if_absent) == [f"{BATCHES_GROUP}/zarr.json", "zarr.json"]  # its parents
    assert counting.reads == [f"{QUARANTINE_GROUP}/zarr.json"]  # are there earlier failures to forget?
    assert [track.track_id for track in handle.tracks()] == ["blues/first.wav", "jazz/b.wav", "rock/c.wav"]


def test_a_batch_holds_the_very_chunks_zarrs_own_writes_make(store: FeatureStore, tmp_path: Path):
    """The store encodes and keys a batch's chunks itself (storage.store._write_rows): they must be what Zarr's
    own setitem writes for the same rows, byte for byte, rows of several chunks and short rows included."""
    lengths = {"blues/a.wav": 2 * CHUNK_FRAMES + 5, "rock/b.wav": 40, "rock/c.wav": CHUNK_FRAMES}
    written = {track_id: features(frames) for track_id, frames in lengths.items()}
    store.write_tracks([(record(track_id, frames), written[track_id]) for track_id, frames in lengths.items()])
    [(name, batch)] = zarr.open_group(str(tmp_path / "store.zarr" / BATCHES_GROUP), mode="r").arrays()

    reference = zarr.create_array(
        str(tmp_path / "reference.zarr"), shape=batch.shape, chunks=batch.chunks, dtype=batch.dtype,
        compressors=batch.compressors, fill_value=batch.fill_value,
        chunk_key_encoding=batch.metadata.chunk_key_encoding, config={"write_empty_chunks": True},
    )
    for row, (track_id, frames) in enumerate(lengths.items()):
        reference[row, :frames] = written[track_id].astype(np.float16)

    def chunk_files(folder: Path) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in folder.iterdir() if path.name != "zarr.json"}

    ours = chunk_files(tmp_path / "store.zarr" / BATCHES_GROUP / name)
    assert sorted(ours) == ["c.0.0.0", "c.0.1.0", "c.0.2.0", "c.1.0.0", "c.2.0.0"]  # 3 + 1 + 1 chunks, flat
    assert ours == chunk_files(tmp_path / "reference.zarr")


def test_tracks_of_different_lengths_share_a_batch_and_read_back_at_their_own_length(store: FeatureStore):
    lengths = {"blues/a.wav": 2 * CHUNK_FRAMES + 5, "rock/b.wav": 40, "rock/c.wav": 1}
    written = {track_id: features(frames) for track_id, frames in lengths.items()}

    store.write_tracks([(record(track_id, lengths[track_id]), written[track_id]) for track_id in lengths])

    assert [track.track_id for track in store.tracks()] == sorted(lengths)
    for track_id, values in written.items():
        np.testing.assert_allclose(store.read(track_id), values, atol=0.07)
    assert store.read("rock/b.wav", 30).shape == (10, CONFIG.n_mels)  # never the padding after its end
    assert store.read("rock/b.wav", 30, 10_000).shape == (10, CONFIG.n_mels)
    with pytest.raises(KeyError, match="rock/zzz.wav"):
        store.read("rock/zzz.wav")


def test_a_track_extracted_again_reads_as_its_newest_copy(store: FeatureStore):
    store.write_tracks([(record("blues/a.wav", 10, content_hash="old"), features(10)), (record("jazz/b.wav", 5), features(5))])
    newer = features(12) + 1.0

    store.write_track(record("blues/a.wav", 12, content_hash="new"), newer)

    assert store.track("blues/a.wav") == record("blues/a.wav", 12, content_hash="new")
    np.testing.assert_allclose(FeatureStore.open(store.location).read("blues/a.wav"), newer, atol=0.07)
    assert [track.track_id for track in store.tracks()] == ["blues/a.wav", "jazz/b.wav"]
    assert store.info()["superseded_copies"] == 1


def test_features_of_the_wrong_shape_are_refused(store: FeatureStore):
    with pytest.raises(ValueError, match="blues/a.wav"):
        store.write_track(record("blues/a.wav", 10), features(10, n_mels=CONFIG.n_mels + 1))
    with pytest.raises(ValueError, match="<genre>/<file name>"):
        store.write_track(record("no-genre.wav", 10), features(10))


def test_a_handle_kept_across_a_deleted_and_recreated_store_still_writes_visible_tracks(tmp_path: Path):
    """Dask workers keep one handle per store for their lifetime; a user may delete the store between runs."""
    location = tmp_path / "store.zarr"
    kept = FeatureStore.create_or_open(str(location), CONFIG)
    kept.write_track(record("blues/a.wav", 10), features(10))
    shutil.rmtree(location)
    FeatureStore.create_or_open(str(location), CONFIG)  # the next run's client makes the store again

    kept.write_track(record("jazz/b.wav", 12), features(12))

    assert [track.track_id for track in FeatureStore.open(str(location)).tracks()] == ["jazz/b.wav"]


def test_a_successful_extraction_clears_an_earlier_quarantine(store: FeatureStore):
    failed = QuarantineRecord("jazz/b.wav", "corrupt", SourceStamp("/music/jazz/b.wav", 1, 2, ""))
    store.quarantine(failed)
    assert store.quarantined() == [failed]

    store.write_track(record("jazz/b.wav", 5), features(5))

    assert store.quarantined() == []
    assert [track.track_id for track in store.tracks()] == ["jazz/b.wav"]


def test_another_feature_configuration_is_refused_naming_both(store: FeatureStore):
    other = FeatureConfig(n_mels=64)
    with pytest.raises(StoreError, match="n_mels.: 32.*n_mels.: 64"):
        FeatureStore.create_or_open(store.location, other)


def test_another_schema_version_is_refused(store: FeatureStore):
    root = zarr.open_group(store.location, mode="a")
    root.attrs[HEADER_KEY] = {**root.attrs[HEADER_KEY], "schema_version": 0}
    with pytest.raises(StoreError, match="schema version 0"):
        FeatureStore.open(store.location)


def test_a_missing_store_and_a_foreign_group_are_refused(tmp_path: Path):
    with pytest.raises(StoreError, match="no genreflow store"):
        FeatureStore.open(str(tmp_path / "absent.zarr"))
    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a genreflow store"):
        FeatureStore.open(str(tmp_path / "foreign.zarr"))


def test_info_summarises_tracks_quarantine_and_size(store: FeatureStore, tmp_path: Path):
    store.write_track(record("blues/a.wav", 300), features(300))
    store.write_track(record("rock/c.wav", 40), features(40))
    store.quarantine(QuarantineRecord("jazz/b.wav", "silent", SourceStamp("/music/jazz/b.wav", 1, 2, "")))

    info = store.info()

    assert (info["tracks"], info["genres"], info["schema_version"]) == (2, {"blues": 1, "rock": 1}, SCHEMA_VERSION)
    assert (info["incomplete_tracks"], info["superseded_copies"]) == (0, 0)
    assert info["quarantined"] == [{"path": "/music/jazz/b.wav", "track_id": "jazz/b.wav", "reason": "silent"}]
    assert info["feature_config"] == CONFIG.to_dict()
    on_disk = sum(path.stat().st_size for path in (tmp_path / "store.zarr").rglob("*") if path.is_file())
    assert info["bytes_on_disk"] == on_disk


def test_the_data_version_follows_the_content_of_the_tracks(store: FeatureStore):
    store.write_track(record("blues/a.wav", 10, content_hash="one"), features(10))
    before = store.data_version()
    store.write_track(record("blues/a.wav", 10, content_hash="two"), features(10))
    assert store.data_version() != before


def test_local_paths_become_absolute_and_urls_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_location("store.zarr") == str(tmp_path / "store.zarr")
    assert absolute_location("s3://bucket/store.zarr") == "s3://bucket/store.zarr"


# ---- a writer killed mid-write ------------------------------------------------------------------------------
WRITER = """
import sys
import numpy as np
from genreflow.config import FeatureConfig
from storage.schema import SourceStamp, TrackRecord
from storage.store import FeatureStore

frames = int(sys.argv[2])
store = FeatureStore.create_or_open(sys.argv[1], FeatureConfig())
values = np.random.default_rng(0).uniform(-80, 0, (frames, 128)).astype(np.float32)
store.write_track(TrackRecord("blues/long.wav", "blues", frames, 1.0, SourceStamp("/x", 1, 1, "new")), values)
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
    kill_when_chunks_appear(writer, Path(location) / BATCHES_GROUP)
    assert writer.returncode == -signal.SIGKILL and "finished" not in writer.stdout.read()


def test_a_writer_killed_mid_write_leaves_nothing_that_looks_complete(tmp_path: Path):
    location = str(tmp_path / "store.zarr")

    run_killed_writer(location)

    store = FeatureStore.open(location)
    assert store.tracks() == [] and store.track("blues/long.wav") is None
    assert store.incomplete_track_ids() == ["blues/long.wav"]
    assert (store.info()["tracks"], store.info()["incomplete_tracks"]) == (0, 1)


def test_a_writer_killed_while_replacing_a_track_loses_nothing(tmp_path: Path):
    location = str(tmp_path / "store.zarr")
    earlier = TrackRecord("blues/long.wav", "blues", 20, 1.0, SourceStamp("/x", 1, 1, "old"))
    FeatureStore.create_or_open(location, FeatureConfig()).write_track(earlier, np.zeros((20, 128), np.float32))

    run_killed_writer(location)

    store = FeatureStore.open(location)
    assert store.tracks() == [earlier] and store.read("blues/long.wav").shape == (20, 128)
    assert store.incomplete_track_ids() == []  # a complete copy is there: the plan decides by its stamp


# ---- compaction ----------------------------------------------------------------------------------------------
def store_with_dead_batches(location: str) -> FeatureStore:
    """A killed writer's batch (first: the writer is killed once any chunk is in the store), then a and b (a
    later superseded), c (superseded), c again, a again."""
    run_killed_writer(location)
    store = FeatureStore.create_or_open(location, FeatureConfig())
    store.write_tracks([(record("blues/a.wav", 10), features(10, 128)), (record("jazz/b.wav", 11), features(11, 128))])
    store.write_track(record("rock/c.wav", 12), features(12, 128))
    store.write_track(record("rock/c.wav", 13, content_hash="new"), features(13, 128))
    store.write_track(record("blues/a.wav", 14, content_hash="new"), features(14, 128))
    return store


def test_compact_deletes_only_what_no_reader_needs_and_every_track_reads_as_before(tmp_path: Path):
    store = store_with_dead_batches(str(tmp_path / "store.zarr"))
    tracks_before = store.tracks()
    features_before = {track.track_id: store.read(track.track_id) for track in tracks_before}
    bytes_before = store.bytes_on_disk()
    assert (store.info()["superseded_copies"], store.info()["incomplete_tracks"]) == (2, 1)

    compaction = store.compact(min_age_s=0)

    assert sorted(batch.reason for batch in compaction.removed) == ["incomplete", "superseded"]
    assert compaction.too_young == 0 and not compaction.dry_run
    assert bytes_before - store.bytes_on_disk() == compaction.bytes_freed > 0
    reopened = FeatureStore.open(store.location)
    assert reopened.tracks() == tracks_before
    for track_id, values in features_before.items():
        np.testing.assert_array_equal(reopened.read(track_id), values)
    # a's first copy shares its batch with b, the newest copy of b: that batch stays whole
    assert (reopened.info()["superseded_copies"], reopened.info()["incomplete_tracks"]) == (1, 0)
    assert reopened.compact(min_age_s=0).removed == []


def test_compact_leaves_young_dead_batches_and_a_dry_run_deletes_nothing(tmp_path: Path):
    store = store_with_dead_batches(str(tmp_path / "store.zarr"))
    bytes_before = store.bytes_on_disk()

    young = store.compact(min_age_s=3600)
    dry = store.compact(min_age_s=0, dry_run=True)

    assert (young.removed, young.too_young, young.bytes_freed) == ([], 2, 0)
    assert len(dry.removed) == 2 and dry.dry_run and dry.bytes_freed > 0
    assert store.bytes_on_disk() == bytes_before
    assert (store.info()["superseded_copies"], store.info()["incomplete_tracks"]) == (2, 1)


# ---- writers in several processes creating the same genres at once ---------------------------------------------
RACER = """
import sys, time
from pathlib import Path
import numpy as np
from genreflow.config import FeatureConfig
from storage.schema import SourceStamp, TrackRecord
from storage.store import FeatureStore

location, go, name = sys.argv[1:4]
store = FeatureStore.create_or_open(location, FeatureConfig(n_mels=8))
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.001)
for genre in range(30):
    stamp = SourceStamp("/x", 1, 1, "h")
    store.write_track(TrackRecord(f"g{genre:02d}/{name}.wav", f"g{genre:02d}", 4, 0.1, stamp), np.zeros((4, 8), np.float32))
"""


def test_writers_creating_the_same_new_genres_at_once_all_succeed(tmp_path: Path):
    """Without care, zarr's check-then-create lets all but one writer fail on a new group (seen in 5 of 15)."""
    location, go = str(tmp_path / "store.zarr"), tmp_path / "go"
    FeatureStore.create_or_open(location, FeatureConfig(n_mels=8))
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, location, str(go), name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        for name in ("a", "b", "c")
    ]
    assert [racer.stdout.readline().strip() for racer in racers] == ["ready"] * 3
    go.touch()

    results = [racer.communicate(timeout=120) for racer in racers]

    assert [racer.returncode for racer in racers] == [0, 0, 0], [stderr for _, stderr in results]
    assert len(FeatureStore.open(location).tracks()) == 90
