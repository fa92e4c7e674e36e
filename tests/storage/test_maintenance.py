"""Looking after a store: describing it, verifying it (damage named, one line each) and compacting it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genreflow.core import FeatureConfig
from genreflow.storage.maintenance import compact, compact_feature_set, describe, describe_feature_set, verify
from genreflow.storage.schema import SCHEMA_VERSION, CollectionTrack, QuarantineRecord
from genreflow.storage.store import FeatureSet, Store
from tests.support.feature_sets import CONFIG, damaged_store, features, record, run_killed_writer


def test_describe_summarises_feature_sets_collections_quarantine_and_size(tmp_path: Path):
    store = FeatureSet.create_or_open(str(tmp_path / "store.zarr"), CONFIG)
    store.write_tracks([(record("a", 300), features(300)), (record("c", 40), features(40))])
    store.quarantine(QuarantineRecord("b", "silent", "/music/jazz/b.wav"))
    tracks = [CollectionTrack("blues/a.wav", "blues", "a"), CollectionTrack("jazz/b.wav", "jazz", "b")]
    Store.open(store.location, writable=True).record_collection("/music", tracks)

    info = describe(Store.open(store.location))

    assert info["schema_version"] == SCHEMA_VERSION
    [features_info] = info["feature_sets"]
    assert (features_info["tracks"], features_info["incomplete_tracks"], features_info["superseded_copies"]) == (
        2,
        0,
        0,
    )
    assert features_info["quarantined"] == [{"key": "b", "source": "/music/jazz/b.wav", "reason": "silent"}]
    assert features_info["feature_config"] == CONFIG.to_dict()
    [collection] = info["collections"]
    assert (collection["root"], collection["tracks"], collection["genres"]) == ("/music", 2, {"blues": 1, "jazz": 1})
    assert collection["feature_sets"] == {CONFIG.identity(): {"ready": 1, "quarantined": 1, "missing": 0}}
    on_disk = sum(path.stat().st_size for path in (tmp_path / "store.zarr").rglob("*") if path.is_file())
    assert info["bytes_on_disk"] == on_disk


def test_a_damaged_batch_metadata_is_listed_and_the_rest_reads(tmp_path: Path):
    store, chunks = damaged_store(tmp_path)
    (chunks["e"].parent / "zarr.json").write_text('{"zarr_format": 3, "node_type": "arr')

    assert [track.key for track in store.tracks()] == ["a", "b", "c", "d"]
    [damaged] = describe_feature_set(store)["damaged_batches"]
    assert damaged["name"] == chunks["e"].parent.name and damaged["reason"].startswith("its metadata does not parse")
    [entry] = verify(Store.open(store.location))
    assert (entry.kind, entry.name) == ("batch", chunks["e"].parent.name)
    assert compact(Store.open(store.location, writable=True), min_age_s=0).removed[0].reason == "damaged"
    assert not chunks["e"].parent.exists()


def test_verify_reads_every_track_and_lists_each_damage_once(tmp_path: Path):
    store, chunks = damaged_store(tmp_path)
    assert verify(Store.open(store.location)) == []
    chunks["d"].unlink()
    (tmp_path / "store.zarr" / "collections").mkdir(exist_ok=True)

    damage = verify(Store.open(store.location))

    assert [(entry.kind, entry.name) for entry in damage] == [("track", "d")]
    assert "c.3.0.0 is missing" in damage[0].reason


def test_verify_reads_the_stores_index_a_fixed_number_of_times_whatever_the_tracks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checking each track with a fresh index of every batch made verify quadratic: 42 s at 1,000 tracks of 10 s
    # (bench/scale.py), where reading them all takes 2 s.
    import genreflow.storage.store as store_module

    store = FeatureSet.create_or_open(str(tmp_path / "store.zarr"), CONFIG)
    for batch in range(30):
        store.write_tracks([(record(f"t{batch:02d}{row}", 4), features(4)) for row in range(10)])
    listings = []
    original = store_module.read_batches
    monkeypatch.setattr(store_module, "read_batches", lambda *args: listings.append(1) or original(*args))
    assert verify(Store.open(store.location)) == []
    assert len(listings) <= 3, f"{len(listings)} reads of the index to verify 300 tracks in 30 batches"


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
    assert (describe_feature_set(store)["superseded_copies"], describe_feature_set(store)["incomplete_tracks"]) == (
        2,
        1,
    )

    compaction = compact_feature_set(store, min_age_s=0)

    assert sorted(batch.reason for batch in compaction.removed) == ["incomplete", "superseded"]
    assert compaction.too_young == 0 and not compaction.dry_run
    assert bytes_before - store.store.bytes_on_disk() == compaction.bytes_freed > 0
    reopened = FeatureSet.open(store.location, FeatureConfig())
    assert reopened.tracks() == tracks_before
    for key, values in features_before.items():
        np.testing.assert_array_equal(reopened.read(key), values)
    # a's first copy shares its batch with b, the newest copy of b: that batch stays whole
    assert (
        describe_feature_set(reopened)["superseded_copies"],
        describe_feature_set(reopened)["incomplete_tracks"],
    ) == (1, 0)
    assert compact_feature_set(reopened, min_age_s=0).removed == []


def test_compact_leaves_young_dead_batches_and_a_dry_run_deletes_nothing(tmp_path: Path):
    store = store_with_dead_batches(str(tmp_path / "store.zarr"))
    bytes_before = store.store.bytes_on_disk()

    young = compact_feature_set(store, min_age_s=3600)
    dry = compact_feature_set(store, min_age_s=0, dry_run=True)

    assert (young.removed, young.too_young, young.bytes_freed) == ([], 2, 0)
    assert len(dry.removed) == 2 and dry.dry_run and dry.bytes_freed > 0
    assert store.store.bytes_on_disk() == bytes_before
    assert (describe_feature_set(store)["superseded_copies"], describe_feature_set(store)["incomplete_tracks"]) == (
        2,
        1,
    )
