"""The feature store on object storage: `s3://` through s3fs against a local moto server, and `memory://`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest

from genreflow.config import FeatureConfig
from storage.schema import QuarantineRecord, SourceStamp, StoreError, TrackRecord
from storage.store import FeatureStore
from tests.support.object_store import s3_bucket_in_environment

CONFIG = FeatureConfig(n_mels=16)
BUCKET = "genreflow-test"


@pytest.fixture(scope="module")
def s3_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_bucket_in_environment(tmp_path_factory.mktemp("moto"), BUCKET):
        yield BUCKET


@pytest.fixture
def s3_location(s3_bucket: str) -> str:
    return f"s3://{s3_bucket}/{uuid.uuid4().hex}/store.zarr"


@pytest.fixture
def memory_location() -> Iterator[str]:
    location = f"memory://genreflow-test-{uuid.uuid4().hex}/store.zarr"
    yield location
    fsspec.filesystem("memory").rm(location.removeprefix("memory://"), recursive=True)


def stamp(track_id: str) -> SourceStamp:
    return SourceStamp(path=f"/music/{track_id}", size=1000, mtime_ns=1, xxh3_128=f"hash-{track_id}")


def fake_features(n_frames: int, seed: int) -> np.ndarray:
    """A log-mel-shaped array whose values survive float16 (the store's dtype) closely."""
    return np.random.default_rng(seed).uniform(-80.0, 0.0, size=(n_frames, CONFIG.n_mels)).astype(np.float32)


def fill(location: str) -> dict[str, np.ndarray]:
    """Write two tracks (one batch) and one quarantined file; return what was written."""
    store = FeatureStore.create_or_open(location, CONFIG)
    written = {"blues/a.wav": fake_features(600, seed=1), "rock/b.wav": fake_features(40, seed=2)}
    store.write_tracks([
        (TrackRecord(track_id, track_id.split("/")[0], len(features), len(features) * CONFIG.hop_length / CONFIG.sample_rate, stamp(track_id)), features)
        for track_id, features in written.items()
    ])
    store.quarantine(QuarantineRecord("jazz/broken.wav", "cannot decode", stamp("jazz/broken.wav")))
    return written


@pytest.mark.parametrize("location_fixture", ["s3_location", "memory_location"])
def test_a_store_on_object_storage_reads_back_what_was_written(location_fixture: str, request: pytest.FixtureRequest) -> None:
    location = request.getfixturevalue(location_fixture)
    written = fill(location)

    reopened = FeatureStore.open(location)

    assert [record.track_id for record in reopened.tracks()] == sorted(written)
    for track_id, features in written.items():
        np.testing.assert_allclose(reopened.read(track_id), features, atol=0.05)
    np.testing.assert_allclose(reopened.read("blues/a.wav", 300, 310), written["blues/a.wav"][300:310], atol=0.05)
    assert [record.reason for record in reopened.quarantined()] == ["cannot decode"]
    assert reopened.info()["bytes_on_disk"] > 0


def test_the_data_version_does_not_depend_on_where_the_store_lives(s3_location: str, memory_location: str, tmp_path: Path) -> None:
    """Cache keys hold the data version, so moving a store to a bucket must not invalidate trained models."""
    versions = set()
    for location in (s3_location, memory_location, str(tmp_path / "store.zarr")):
        fill(location)
        versions.add(FeatureStore.open(location).data_version())
    assert len(versions) == 1


def test_the_s3_store_is_really_in_the_bucket(s3_location: str) -> None:
    import s3fs

    fill(s3_location)

    keys = s3fs.S3FileSystem(skip_instance_cache=True).find(s3_location)
    prefix = s3_location.removeprefix("s3://")
    assert f"{prefix}/zarr.json" in keys
    chunks = [key for key in keys if key.startswith(f"{prefix}/batches/") and "/c." in key]
    assert len(chunks) == 2  # one batch, one chunk per track


def test_opening_a_missing_s3_store_names_the_url(s3_location: str) -> None:
    with pytest.raises(StoreError, match=s3_location):
        FeatureStore.open(s3_location)


def test_compacting_a_store_in_the_bucket_deletes_the_superseded_batch_objects(s3_location: str) -> None:
    import s3fs

    written = fill(s3_location)
    newer = fake_features(50, seed=3)
    record = TrackRecord("rock/b.wav", "rock", 50, 50 * CONFIG.hop_length / CONFIG.sample_rate, stamp("rock/b.wav"))
    store = FeatureStore.open(s3_location, writable=True)
    store.write_track(record, newer)
    store.write_track(record, newer + 1.0)  # the batch before is now dead: its one row is superseded
    before = set(s3fs.S3FileSystem(skip_instance_cache=True).find(s3_location))

    compaction = store.compact(min_age_s=0)

    after = set(s3fs.S3FileSystem(skip_instance_cache=True).find(s3_location))
    [dead] = compaction.removed
    assert before - after == {key for key in before if f"/batches/{dead.name}/" in key} and after < before
    reopened = FeatureStore.open(s3_location)
    np.testing.assert_allclose(reopened.read("rock/b.wav"), newer + 1.0, atol=0.05)
    np.testing.assert_allclose(reopened.read("blues/a.wav"), written["blues/a.wav"], atol=0.05)
