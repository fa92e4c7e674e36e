"""Clips stream from a real Zarr store: the right frames, normalised per band, shuffled, and in bounded memory."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from genreflow.storage.schema import CollectionTrack, DamagedTrackError, StoreError
from genreflow.storage.store import FeatureSet
from genreflow.tasks.training.augment import genre_targets, mixup
from genreflow.tasks.training.dataset import (
    BandNormaliser,
    ClipStream,
    LabelledTrack,
    cut_clips,
    epoch_batches,
    evaluation_plan,
    evaluation_starts,
    fit_band_normaliser,
    labelled_tracks,
    to_tf_dataset,
    training_clip_count,
    training_plan,
)
from tests.support.stores import write_tiny_store

CLIP = 22  # frames, about half a second


class Tracks(list):
    """A tiny store's tracks as training sees them, and the store they are in."""

    store: FeatureSet


def stored_tracks(location: Path, **sizes: int) -> Tracks:
    data = write_tiny_store(location, **sizes)
    store = FeatureSet.open(data.store, data.feature_config)
    tracks = Tracks(labelled_tracks(store, data.tracks))
    tracks.store = store
    return tracks


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Tracks:
    return stored_tracks(tmp_path_factory.mktemp("dataset") / "store.zarr", genres=3, tracks_per_genre=3)


@pytest.fixture(scope="module")
def store(records: Tracks) -> FeatureSet:
    return records.store


def genre_index(records: list[LabelledTrack]) -> dict[str, int]:
    return {genre: index for index, genre in enumerate(sorted({record.genre for record in records}))}


def identity(n_mels: int = 128) -> BandNormaliser:
    return BandNormaliser(np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32))


def test_evaluation_uses_every_whole_non_overlapping_clip_and_at_least_one() -> None:
    assert evaluation_starts(130, 43) == (0, 43, 86)
    assert evaluation_starts(129, 43) == (0, 43, 86)
    assert evaluation_starts(128, 43) == (0, 43)
    assert evaluation_starts(1289, 1292) == (0,)  # a 29.93 s GTZAN track still gives its one 30 s clip


def test_a_clip_longer_than_its_track_is_padded_with_the_track_mirrored() -> None:
    frames = np.arange(5, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    (clip,) = cut_clips(frames, [0], 8)
    assert clip[:, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]


def test_training_draws_random_crops_inside_each_track_in_a_random_order(records: Tracks) -> None:
    plan = training_plan(records, genre_index(records), CLIP, None, np.random.default_rng(0))
    assert sorted(item.track_id for item in plan) == [record.track_id for record in records]
    assert [item.track_id for item in plan] != [record.track_id for record in records]
    frames = {record.track_id: record.n_frames for record in records}
    for item in plan:
        assert len(item.starts) == frames[item.track_id] // CLIP  # as many crops as the track holds clips
        assert all(0 <= start <= frames[item.track_id] - CLIP for start in item.starts)
    assert training_clip_count(records, CLIP, None) == sum(len(item.starts) for item in plan)
    assert training_clip_count(records, CLIP, 2) == 2 * len(records)


def test_a_crop_budget_is_the_same_at_every_clip_length_overlapping_where_a_track_is_short(records: Tracks) -> None:
    shortest = min(record.n_frames for record in records)
    for clip in (CLIP, shortest):  # the second holds one clip of the shortest track: its crops overlap
        plan = training_plan(records, genre_index(records), clip, 6, np.random.default_rng(0))
        assert [len(item.starts) for item in plan] == [6] * len(records)
        assert training_clip_count(records, clip, 6) == 6 * len(records)


def test_band_statistics_match_numpy_over_every_frame_of_the_given_tracks(store: FeatureSet, records: Tracks) -> None:
    keys = [record.key for record in records][:4]
    everything = np.concatenate([store.read(key) for key in keys]).astype(np.float64)
    normaliser = fit_band_normaliser(store, keys)
    np.testing.assert_allclose(normaliser.mean, everything.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(normaliser.std, everything.std(axis=0), rtol=1e-4)
    standardised = normaliser.apply(everything)
    np.testing.assert_allclose(standardised.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(standardised.std(axis=0), 1, atol=1e-3)


def test_band_statistics_survive_a_round_trip_to_disk(store: FeatureSet, records: Tracks, tmp_path: Path) -> None:
    normaliser = fit_band_normaliser(store, [records[0].key])
    normaliser.save(tmp_path / "normalisation.json")
    loaded = BandNormaliser.load(tmp_path / "normalisation.json")
    np.testing.assert_array_equal(loaded.mean, normaliser.mean)
    np.testing.assert_array_equal(loaded.std, normaliser.std)


def test_evaluation_batches_hold_the_stored_frames_in_plan_order(store: FeatureSet, records: Tracks) -> None:
    normaliser = fit_band_normaliser(store, [record.key for record in records])
    stream = ClipStream(store, CLIP, normaliser, batch_size=4)
    plan = evaluation_plan(records, genre_index(records), CLIP)
    clips, labels = (np.concatenate(parts) for parts in zip(*stream.batches(plan), strict=True))
    expected = [normaliser.apply(store.read(item.key, start, start + CLIP)) for item in plan for start in item.starts]
    np.testing.assert_array_equal(clips, np.stack(expected))
    assert labels.tolist() == [item.label for item in plan for _ in item.starts]


def test_training_batches_shuffle_clips_across_tracks_and_keep_their_labels(store: FeatureSet, records: Tracks) -> None:
    stream = ClipStream(store, CLIP, identity(), batch_size=8)
    plan = training_plan(records, genre_index(records), CLIP, 3, np.random.default_rng(1))
    batches = list(stream.batches(plan, np.random.default_rng(2)))
    assert [len(labels) for _, labels in batches] == [8, 8, 8, 3]
    labels = np.concatenate([labels for _, labels in batches])
    assert Counter(labels.tolist()) == Counter({0: 9, 1: 9, 2: 9})
    assert len(set(labels[:9].tolist())) > 1, "the first clips all came from one genre: no shuffling"
    clips = np.concatenate([clips for clips, _ in batches])
    band_of_genre = clips.reshape(-1, CLIP, 128)[:, :, :36].reshape(len(clips), CLIP, 3, 12).mean(axis=(1, 3))
    assert (band_of_genre.argmax(axis=1) == labels).all(), "a clip came with another track's label"


def test_each_epoch_draws_new_crops_and_the_seed_repeats_them(store: FeatureSet, records: Tracks) -> None:
    stream = ClipStream(store, CLIP, identity(), batch_size=16)
    first_run = epoch_batches(stream, records, genre_index(records), None, (0, 0))
    epoch_1, epoch_2 = (np.concatenate([clips for clips, _ in first_run()]) for _ in range(2))
    assert not np.array_equal(epoch_1, epoch_2)
    again = np.concatenate([clips for clips, _ in epoch_batches(stream, records, genre_index(records), None, (0, 0))()])
    np.testing.assert_array_equal(again, epoch_1)


def test_specaugment_masks_each_training_clip_from_its_own_generator_and_keeps_the_crops(
    store: FeatureSet, records: Tracks
) -> None:
    stream, genres = ClipStream(store, CLIP, identity(), batch_size=64), genre_index(records)
    plain = next(epoch_batches(stream, records, genres, 2, (0, 0))())
    masked = next(epoch_batches(stream, records, genres, 2, (0, 0), "specaugment")())
    again = next(epoch_batches(stream, records, genres, 2, (0, 0), "specaugment")())
    np.testing.assert_array_equal(masked[1], plain[1])  # the same crops, in the same order
    np.testing.assert_array_equal(masked[0], again[0])  # deterministic
    changed = masked[0] != plain[0]
    assert changed.any() and (masked[0][changed] == 0).all()  # only blanked, nothing invented
    bands_blanked = (masked[0] == 0).all(axis=1).sum(axis=1)  # per clip, bands zero over every frame
    assert bands_blanked.max() <= 2 * (128 // 8)


def test_mixup_blends_each_clip_and_its_target_alike_from_its_own_generator(store: FeatureSet, records: Tracks) -> None:
    stream, genres = ClipStream(store, CLIP, identity(), batch_size=64), genre_index(records)
    plain = next(epoch_batches(stream, records, genres, 2, (0, 0), as_targets=True)())
    mixed = next(epoch_batches(stream, records, genres, 2, (0, 0), "mixup", as_targets=True)())
    again = next(epoch_batches(stream, records, genres, 2, (0, 0), "mixup", as_targets=True)())
    np.testing.assert_array_equal(plain[1], np.eye(3)[plain[1].argmax(axis=1)])  # one-hot without mixup
    np.testing.assert_array_equal(mixed[0], again[0])  # deterministic
    np.testing.assert_allclose(mixed[1].sum(axis=1), 1.0, rtol=1e-6)
    assert ((mixed[1] > 0).sum(axis=1) == 2).any(), "no clip was blended across genres"

    clips = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    blended, targets = mixup(clips, np.eye(3, dtype=np.float32), np.random.default_rng(1))
    for clip, target in zip(blended, targets, strict=True):  # a clip is the blend its target says
        np.testing.assert_allclose(clip, np.tensordot(target, clips, axes=1), rtol=1e-5)


def test_the_tf_dataset_feeds_the_same_batches_and_knows_their_number(store: FeatureSet, records: Tracks) -> None:
    stream = ClipStream(store, CLIP, identity(), batch_size=8)
    plan = evaluation_plan(records, genre_index(records), CLIP)
    expected = list(stream.batches(plan))
    dataset = to_tf_dataset(lambda: genre_targets(stream.batches(plan), 3), stream, len(expected), 3)
    assert int(dataset.cardinality()) == len(expected)
    for (clips, labels), (tf_clips, tf_targets) in zip(expected, dataset, strict=True):
        np.testing.assert_array_equal(tf_clips.numpy(), clips)
        np.testing.assert_array_equal(tf_targets.numpy(), np.eye(3)[labels])


def test_streaming_an_epoch_stays_under_the_memory_cap_of_a_larger_store(tmp_path: Path) -> None:
    records = stored_tracks(tmp_path / "big.zarr", genres=4, tracks_per_genre=10, n_frames=1292)  # 40 x 30 s
    decoded_mb = sum(record.n_frames for record in records) * 128 * 4 / 2**20
    cap_mb = 6.0
    stream = ClipStream(records.store, 215, identity(), batch_size=8, memory_cap_mb=cap_mb)
    plan = training_plan(records, genre_index(records), 215, None, np.random.default_rng(0))
    tracemalloc.start()
    try:
        seen = sum(len(labels) for _, labels in stream.batches(plan, np.random.default_rng(0)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == training_clip_count(records, 215, None)
    assert decoded_mb > 4 * cap_mb
    batch_mb = 8 * 215 * 128 * 4 / 2**20
    assert peak / 2**20 < cap_mb + 2 * batch_mb


def test_a_chunk_damaged_while_streaming_is_named_by_its_track(tmp_path: Path) -> None:
    records = stored_tracks(tmp_path / "store.zarr", genres=2, tracks_per_genre=2)
    next((tmp_path / "store.zarr").rglob("c.1.0.0")).unlink()  # the second track's only chunk
    stream = ClipStream(records.store, CLIP, identity(), batch_size=4)
    plan = evaluation_plan(records, genre_index(records), CLIP)

    with pytest.raises(DamagedTrackError, match=f"{records[1].track_id}: batch .*a chunk is missing"):
        list(stream.batches(plan))


def test_tracks_the_store_lacks_or_holds_damaged_are_refused_by_name(tmp_path: Path) -> None:
    data = write_tiny_store(tmp_path / "store.zarr", genres=2, tracks_per_genre=2)
    store = FeatureSet.open(data.store, data.feature_config)
    chunk = next((tmp_path / "store.zarr").rglob("c.2.0.0"))
    chunk.write_bytes(chunk.read_bytes()[:10])
    missing = CollectionTrack("g9/absent.wav", "g9", "0" * 32)

    with pytest.raises(StoreError, match="lacks 1 of the tracks asked for \\(g9/absent.wav\\)"):
        labelled_tracks(store, [*data.tracks, missing])
    with pytest.raises(StoreError, match=f"damaged copies of 1 track.*{data.tracks[2].track_id} \\(batch .*checksum"):
        labelled_tracks(store, data.tracks)
