"""Extraction on a real Dask LocalCluster into a real Zarr store: outcomes, quarantine, reruns, failures."""

from __future__ import annotations

import os
import pickle
import resource
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import xxhash

import genreflow.tasks.features.extract
from genreflow.core import FeatureConfig
from genreflow.storage.schema import BATCHES_GROUP, FEATURES_GROUP, CollectionTrack
from genreflow.storage.store import FeatureSet, Store
from genreflow.tasks.cluster import dask_client, default_worker_count
from genreflow.tasks.collection.scan import Collection, SourceTrack, scan_collection
from genreflow.tasks.collection.sources import read_source
from genreflow.tasks.collection.synthetic import write_synthetic_collection
from genreflow.tasks.features.audio import decode_audio
from genreflow.tasks.features.extract import (
    MEAN_TRACKS_PER_TASK,
    MIN_TASKS_PER_WORKER,
    ExtractionError,
    TrackOutcome,
    extract_batch,
    extract_tracks,
    plan_extraction,
    task_groups,
)
from genreflow.tasks.features.logmel import log_mel

CONFIG = FeatureConfig()
SECONDS = 3.0
# Larger than a track's metadata (about 1 KiB), smaller than one compressed chunk (about 50 KiB).
FILE_SIZE_LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def client() -> Iterator:
    with dask_client(None, 2) as dask:
        yield dask


@pytest.fixture(scope="module")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_collection(tmp_path_factory.mktemp("synthetic"), tracks_per_genre=1, seed=0, seconds=SECONDS)


@pytest.fixture
def collection_dir(synthetic_source: Path, tmp_path: Path) -> Path:
    """The synthetic tracks plus two bad files; a copy per test, so tests may change files."""
    folder = shutil.copytree(synthetic_source, tmp_path / "collection")
    (folder / "ambient" / "notes.wav").write_text("not audio")
    sf.write(
        folder / "ambient" / "quiet.wav", np.zeros(int(SECONDS * CONFIG.sample_rate), np.float32), CONFIG.sample_rate
    )
    return folder


def extract(collection: Collection, location: str, client, **kwargs) -> list[TrackOutcome]:
    return extract_batch(collection.tracks, location, CONFIG, client, **kwargs)


def feature_set(location: str) -> FeatureSet:
    return FeatureSet.open(location, CONFIG)


def keys_of(collection: Collection, track_ids: set[str] | None = None) -> set[str]:
    return {track.key for track in collection.tracks if track_ids is None or track.track_id in track_ids}


def plan(collection: Collection, location: str):
    store = Store.create_or_open(location)
    return plan_extraction(collection, store.feature_set(CONFIG), store.collection(collection.root))


def record(collection: Collection, location: str) -> None:
    tracks = [CollectionTrack(track.track_id, track.genre, track.key) for track in collection.tracks]
    Store.create_or_open(location).record_collection(collection.root, tracks)


def test_good_tracks_are_stored_and_bad_ones_quarantined(client, collection_dir: Path, tmp_path: Path):
    collection = scan_collection(collection_dir)
    location = str(tmp_path / "store.zarr")
    progress: list[int] = []

    outcomes = extract(collection, location, client, on_progress=progress.append)

    assert [outcome.track_id for outcome in outcomes] == [track.track_id for track in collection.tracks]
    assert sorted(progress) == sorted(map(len, task_groups(collection.tracks, len(client.nthreads()))))
    statuses = {outcome.track_id: outcome.status for outcome in outcomes}
    assert statuses.pop("ambient/notes.wav") == statuses.pop("ambient/quiet.wav") == "quarantined"
    assert set(statuses.values()) == {"extracted"}
    store = feature_set(location)
    assert {record.key for record in store.tracks()} == keys_of(collection, set(statuses))
    by_key = {track.key: track.track_id for track in collection.tracks}
    assert {(by_key[record.key], record.reason.split(" ")[0]) for record in store.quarantined()} == {
        ("ambient/notes.wav", "not"),
        ("ambient/quiet.wav", "silent:"),
    }


def test_every_track_that_decodes_is_kept_however_short(client, tmp_path: Path):
    folder = tmp_path / "short"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    tone = np.sin(np.arange(int(0.3 * CONFIG.sample_rate)) * 0.05).astype(np.float32) * 0.3
    sf.write(folder / "a" / "short.wav", tone, CONFIG.sample_rate)
    sf.write(folder / "b" / "short.wav", tone[::-1].copy(), CONFIG.sample_rate)

    outcomes = extract(scan_collection(folder), str(tmp_path / "store.zarr"), client)

    assert [outcome.status for outcome in outcomes] == ["extracted", "extracted"]


def test_a_task_writes_its_tracks_as_one_batch_unless_they_outgrow_the_write_buffer(
    collection_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    good = [track for track in scan_collection(collection_dir).tracks if track.genre != "ambient"][:3]

    one_batch = extract_tracks(good, str(tmp_path / "one.zarr"), CONFIG)
    monkeypatch.setattr(
        genreflow.tasks.features.extract, "WRITE_BUFFER_BYTES", 1
    )  # every track outgrows it: written at once
    three_batches = extract_tracks(good, str(tmp_path / "three.zarr"), CONFIG)

    for results, location, batches in ((one_batch, "one.zarr", 1), (three_batches, "three.zarr", 3)):
        assert [(result.track_id, result.status) for result in results] == [
            (track.track_id, "extracted") for track in good
        ]
        folder = tmp_path / location / FEATURES_GROUP / CONFIG.identity() / BATCHES_GROUP
        assert len(list(folder.iterdir())) - 1 == batches  # and the group's zarr.json
        assert {record.key for record in feature_set(str(tmp_path / location)).tracks()} == {t.key for t in good}


def test_stored_features_and_records_are_those_of_the_file(client, collection_dir: Path, tmp_path: Path):
    track = scan_collection(collection_dir).tracks[0]
    location = str(tmp_path / "store.zarr")

    [outcome] = extract_batch([track], location, CONFIG, client)

    store = feature_set(location)
    content = Path(track.path).read_bytes()
    assert track.key == xxhash.xxh3_128_hexdigest(content)
    record = store.track(track.key)
    expected = log_mel(decode_audio(read_source(track.path), track.path, CONFIG.sample_rate), CONFIG)
    np.testing.assert_allclose(store.read(track.key), expected, rtol=2**-10, atol=1e-3)  # float16 storage
    assert record.source == track.path
    assert record.duration_s == pytest.approx(SECONDS) == outcome.audio_seconds
    assert record.n_frames == expected.shape[0]


def test_a_rerun_skips_what_is_complete_and_says_why_it_redoes_the_rest(client, collection_dir: Path, tmp_path: Path):
    location = str(tmp_path / "store.zarr")
    first = scan_collection(collection_dir)
    extract(first, location, client)
    record(first, location)
    changed = collection_dir / "beats" / "beats.00000.wav"
    stat = os.stat(changed)
    audio, rate = sf.read(changed)
    sf.write(changed, audio[::-1], rate)  # same length, so the same size...
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and the same timestamps: content decides
    assert os.stat(changed).st_size == stat.st_size
    shutil.copy(changed, collection_dir / "beats" / "beats.new.wav")  # the same content under a second name

    again = plan(scan_collection(collection_dir), location)

    assert again.reasons == {
        "ambient/notes.wav": "quarantined before: trying again",
        "ambient/quiet.wav": "quarantined before: trying again",
        "beats/beats.00000.wav": "changed since it was last extracted",
    }
    assert sorted(track.track_id for track in again.todo) == sorted(again.reasons)  # the copy is extracted once
    assert len(again.skipped) == len(scan_collection(collection_dir).tracks) - 4


def test_a_track_damaged_in_the_store_is_extracted_again(client, collection_dir: Path, tmp_path: Path):
    location = str(tmp_path / "store.zarr")
    collection = scan_collection(collection_dir)
    extract(collection, location, client)
    chunk = next((tmp_path / "store.zarr").rglob("c.0.0.0"))
    chunk.write_bytes(chunk.read_bytes()[:-7])  # some track's chunk, truncated
    damaged_key = next(key for key, reason in feature_set(location).check(keys_of(collection)).items())

    again = plan(collection, location)

    [track_id] = [track.track_id for track in collection.tracks if track.key == damaged_key]
    assert (
        again.reasons[track_id].startswith("damaged in the store (batch ")
        and "fails its checksum" in again.reasons[track_id]
    )
    extract(Collection(collection.root, again.todo), location, client)
    assert feature_set(location).check(keys_of(collection)) == {}
    assert feature_set(location).read(damaged_key).shape[1] == CONFIG.n_mels


def test_a_file_that_changes_after_the_scan_fails_and_is_not_stored_under_its_old_key(
    client, collection_dir: Path, tmp_path: Path
):
    collection = scan_collection(collection_dir)
    track = next(track for track in collection.tracks if track.genre == "beats")
    audio, rate = sf.read(track.path)
    sf.write(track.path, audio * 0.5, rate)
    location = str(tmp_path / "store.zarr")

    with pytest.raises(ExtractionError, match="changed after it was scanned"):
        extract_batch([track], location, CONFIG, client)

    assert feature_set(location).tracks() == [] and feature_set(location).quarantined() == []


@contextmanager
def store_disk_full(client) -> Iterator[None]:
    """The workers may write no file beyond 16 KiB: to them the store's disk is full (EFBIG, for real)."""
    client.run(_limit_file_size, FILE_SIZE_LIMIT)
    try:
        yield
    finally:
        client.run(_limit_file_size, resource.RLIM_INFINITY)


def _limit_file_size(limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))


def test_a_store_that_cannot_be_written_fails_loudly_quarantines_nothing_and_is_redone(
    client, collection_dir: Path, tmp_path: Path
):
    good = [track for track in scan_collection(collection_dir).tracks if track.genre == "beats"]
    location = str(tmp_path / "store.zarr")

    with store_disk_full(client), pytest.raises(ExtractionError) as caught:
        extract_batch(good, location, CONFIG, client)

    assert "beats/beats.00000.wav: StoreWriteError" in str(caught.value)
    assert "File too large" in str(caught.value) and location in str(caught.value)
    assert caught.value.outcomes == []
    store = feature_set(location)
    assert store.tracks() == [] and store.quarantined() == []
    assert store.incomplete_keys() == [good[0].key]
    redo = plan(Collection(str(collection_dir), good), location)
    assert redo.reasons == {"beats/beats.00000.wav": "incomplete: an earlier extraction stopped mid-write"}

    [outcome] = extract_batch(redo.todo, location, CONFIG, client)

    assert outcome.status == "extracted"
    assert [record.key for record in store.tracks()] == [good[0].key]
    assert store.incomplete_keys() == []


@contextmanager
def store_unreachable_from_each_worker_once(client) -> Iterator[None]:
    """Each worker's next extraction task fails as a whole, as when the store cannot be reached from it."""
    client.run(_fail_the_next_store_open)
    try:
        yield
    finally:
        client.run(_open_stores_normally)  # on a worker that got no task


def _fail_the_next_store_open() -> None:
    opens = genreflow.tasks.features.extract._open_feature_set

    def unreachable(location: str, feature_config: FeatureConfig) -> FeatureSet:
        genreflow.tasks.features.extract._open_feature_set = opens
        raise ConnectionError(f"cannot reach {location}")

    unreachable.opens = opens  # type: ignore[attr-defined]
    genreflow.tasks.features.extract._open_feature_set = unreachable


def _open_stores_normally() -> None:
    genreflow.tasks.features.extract._open_feature_set = getattr(
        genreflow.tasks.features.extract._open_feature_set, "opens", genreflow.tasks.features.extract._open_feature_set
    )


def test_a_task_that_fails_as_a_whole_fails_its_tracks_and_the_other_tasks_still_count(
    client, collection_dir: Path, tmp_path: Path
):
    good = [track for track in scan_collection(collection_dir).tracks if track.genre != "ambient"]
    location = str(tmp_path / "store.zarr")
    assert {len(group) for group in task_groups(good, len(client.nthreads()))} == {1}

    with store_unreachable_from_each_worker_once(client), pytest.raises(ExtractionError) as caught:
        extract_batch(good, location, CONFIG, client)

    failed, outcomes = caught.value.failures, caught.value.outcomes
    assert 1 <= len(failed) <= len(client.nthreads())  # each worker's first task, of one track
    assert set(failed.values()) == {f"ConnectionError: cannot reach {location}"}
    assert sorted([*failed, *(outcome.track_id for outcome in outcomes)]) == sorted(track.track_id for track in good)
    stored = feature_set(location).tracks()
    by_id = {track.track_id: track.key for track in good}
    assert sorted(record.key for record in stored) == sorted(by_id[outcome.track_id] for outcome in outcomes)


def worker_settings() -> tuple[str | None, str | None, str | None, bool]:
    import dask

    return (
        os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        os.environ.get("MALLOC_TOP_PAD_"),
        os.environ.get("OMP_NUM_THREADS"),
        dask.config.get("distributed.worker.profile.enabled"),
    )


def test_workers_run_without_the_malloc_trap_and_with_one_thread_each(client):
    assert set(client.run(worker_settings).values()) == {(None, str(64 * 2**20), "1", False)}
    assert {info["nthreads"] for info in client.scheduler_info()["workers"].values()} == {1}


def housekeeping_intervals_ms(dask_worker=None, dask_scheduler=None) -> dict[str, float]:
    server = dask_worker or dask_scheduler
    names = ("tick", "monitor", "memory_monitor")
    return {name: server.periodic_callbacks[name].callback_time for name in names if name in server.periodic_callbacks}


def test_the_cluster_keeps_its_housekeeping_quiet(client):
    workers = {"tick": 1000, "monitor": 2000, "memory_monitor": 500}
    assert list(client.run(housekeeping_intervals_ms).values()) == [workers] * len(client.nthreads())
    assert client.run_on_scheduler(housekeeping_intervals_ms) == {"tick": 1000, "monitor": 2000}


def test_a_trap_in_the_parent_is_not_inherited_and_the_parent_keeps_its_environment(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as an earlier default Dask cluster leaves it
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    names = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "OMP_NUM_THREADS", "PYTHONHASHSEED")
    before = {name: os.environ.get(name) for name in names}

    with dask_client(None, 1) as fresh:
        settings = set(fresh.run(worker_settings).values())

    assert settings == {(None, str(64 * 2**20), "1", False)}
    assert {name: os.environ.get(name) for name in names} == before


def test_an_extraction_error_survives_pickling_between_processes():
    outcome = TrackOutcome("rock/a.wav", "extracted", None, 30.0, 0.1)
    error = pickle.loads(pickle.dumps(ExtractionError({"rock/b.wav": "StoreWriteError: disk full"}, [outcome])))
    assert (error.failures, error.outcomes) == ({"rock/b.wav": "StoreWriteError: disk full"}, [outcome])
    assert "rock/b.wav: StoreWriteError: disk full" in str(error)


def test_dask_client_joins_a_running_scheduler(client):
    with dask_client(client.scheduler.address) as joined:
        assert len(joined.scheduler_info()["workers"]) == 2


def test_a_local_cluster_is_sized_to_the_cores_by_default():
    assert default_worker_count() == len(os.sched_getaffinity(0)) >= 1


@pytest.mark.parametrize(("tracks", "threads"), [(70, 2), (1002, 2), (16, 2), (5, 2), (9, 4), (70, 1), (0, 2)])
def test_tasks_come_in_rounds_one_per_worker_that_shrink_to_the_end(tracks: int, threads: int):
    batch = [SourceTrack(f"g/{index}.wav", "g", f"/music/g/{index}.wav", str(index)) for index in range(tracks)]

    groups = task_groups(batch, threads)

    assert [track for group in groups for track in group] == batch  # every track once, in order
    sizes = [len(group) for group in groups]
    assert all(size >= 1 for size in sizes) and sizes == sorted(sizes, reverse=True)
    rounds = [sizes[start : start + threads] for start in range(0, len(sizes), threads)]
    assert all(max(round_) - min(round_) <= 1 for round_ in rounds)
    assert len(groups) * MEAN_TRACKS_PER_TASK >= tracks
    if tracks >= threads * MIN_TASKS_PER_WORKER:
        assert len(groups) % threads == 0 and len(groups) >= threads * MIN_TASKS_PER_WORKER
        assert sum(rounds[-1]) * 2 <= sum(rounds[0])  # the last tasks are short: little to wait for at the end
