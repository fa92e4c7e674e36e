"""The feature store on object storage: `s3://` through s3fs against a local moto server, and `memory://`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest

from genreflow.core import FeatureConfig
from genreflow.storage.maintenance import compact_feature_set, describe, verify
from genreflow.storage.schema import CollectionTrack, QuarantineRecord, StoreError, TrackRecord
from genreflow.storage.store import FeatureSet, Store
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


def fake_features(n_frames: int, seed: int) -> np.ndarray:
    """A log-mel-shaped array whose values survive float16 (the store's dtype) closely."""
    return np.random.default_rng(seed).uniform(-80.0, 0.0, size=(n_frames, CONFIG.n_mels)).astype(np.float32)


def track_record(key: str, n_frames: int) -> TrackRecord:
    return TrackRecord(key, n_frames, n_frames * CONFIG.hop_length / CONFIG.sample_rate, f"/music/{key}.wav")


TRACKS = [CollectionTrack("blues/a.wav", "blues", "a"), CollectionTrack("rock/b.wav", "rock", "b")]


def fill(location: str) -> dict[str, np.ndarray]:
    """Write two tracks (one batch), one quarantined file and the collection; return what was written."""
    store = FeatureSet.create_or_open(location, CONFIG)
    written = {"a": fake_features(600, seed=1), "b": fake_features(40, seed=2)}
    store.write_tracks([(track_record(key, len(features)), features) for key, features in written.items()])
    store.quarantine(QuarantineRecord("broken", "cannot decode", "/music/jazz/broken.wav"))
    store.store.record_collection("/music", TRACKS)
    return written


@pytest.mark.parametrize("location_fixture", ["s3_location", "memory_location"])
def test_a_store_on_object_storage_reads_back_what_was_written(
    location_fixture: str, request: pytest.FixtureRequest
) -> None:
    location = request.getfixturevalue(location_fixture)
    written = fill(location)

    reopened = FeatureSet.open(location, CONFIG)

    assert [record.key for record in reopened.tracks()] == sorted(written)
    for key, features in written.items():
        np.testing.assert_allclose(reopened.read(key), features, atol=0.05)
    np.testing.assert_allclose(reopened.read("a", 300, 310), written["a"][300:310], atol=0.05)
    assert [record.reason for record in reopened.quarantined()] == ["cannot decode"]
    assert reopened.check(written) == {}
    assert Store.open(location).collection("/music").tracks == tuple(TRACKS)
    assert verify(Store.open(location)) == []
    assert describe(Store.open(location))["bytes_on_disk"] > 0


def test_the_data_version_does_not_depend_on_where_the_store_lives(
    s3_location: str, memory_location: str, tmp_path: Path
) -> None:
    """Cache keys hold the data version, so moving a store to a bucket must not invalidate trained models."""
    versions = set()
    for location in (s3_location, memory_location, str(tmp_path / "store.zarr")):
        fill(location)
        feature_set = FeatureSet.open(location, CONFIG)
        versions.add(feature_set.data_version(Store.open(location).collection("/music").tracks))
    assert len(versions) == 1


def test_the_s3_store_is_really_in_the_bucket(s3_location: str) -> None:
    import s3fs

    fill(s3_location)

    keys = s3fs.S3FileSystem(skip_instance_cache=True).find(s3_location)
    prefix = s3_location.removeprefix("s3://")
    assert f"{prefix}/zarr.json" in keys
    chunks = [key for key in keys if "/batches/" in key and "/c." in key]
    assert len(chunks) == 2  # one batch, one chunk per track


def test_a_missing_chunk_in_the_bucket_is_named(s3_location: str) -> None:
    import s3fs

    fill(s3_location)
    [chunk] = [key for key in s3fs.S3FileSystem(skip_instance_cache=True).find(s3_location) if key.endswith("/c.1.0.0")]
    s3fs.S3FileSystem(skip_instance_cache=True).rm(chunk)

    assert "c.1.0.0 is missing" in FeatureSet.open(s3_location, CONFIG).check(["a", "b"])["b"]


def test_opening_a_missing_s3_store_names_the_url(s3_location: str) -> None:
    with pytest.raises(StoreError, match=s3_location):
        Store.open(s3_location)


def test_compacting_a_store_in_the_bucket_deletes_the_superseded_batch_objects(s3_location: str) -> None:
    import s3fs

    written = fill(s3_location)
    newer = fake_features(50, seed=3)
    store = Store.open(s3_location, writable=True).feature_set(CONFIG)
    store.write_tracks([(track_record("b", 50), newer)])
    store.write_tracks(
        [(track_record("b", 50), newer + 1.0)]
    )  # the batch before is now dead: its one row is superseded
    before = set(s3fs.S3FileSystem(skip_instance_cache=True).find(s3_location))

    compaction = compact_feature_set(store, min_age_s=0)

    after = set(s3fs.S3FileSystem(skip_instance_cache=True).find(s3_location))
    [dead] = compaction.removed
    assert before - after == {key for key in before if f"/batches/{dead.name}/" in key} and after < before
    reopened = FeatureSet.open(s3_location, CONFIG)
    np.testing.assert_allclose(reopened.read("b"), newer + 1.0, atol=0.05)
    np.testing.assert_allclose(reopened.read("a"), written["a"], atol=0.05)
