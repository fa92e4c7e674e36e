"""Splits are by track: disjoint, stratified by genre, stable for a seed, and honest about what they need."""

from __future__ import annotations

from collections import Counter

import pytest

from genreflow.tasks.training.splits import (
    FAULT_FILTERED_DIR,
    FAULT_FILTERED_LISTS,
    Fold,
    SplitError,
    make_folds,
    parse_split,
)


def collection(genres: int = 3, per_genre: int = 10, extension: str = ".wav") -> dict[str, str]:
    """track id -> genre, GTZAN-style names."""
    return {f"g{g}/g{g}.{i:05d}{extension}": f"g{g}" for g in range(genres) for i in range(per_genre)}


def per_genre(track_ids: tuple[str, ...], genre_of: dict[str, str]) -> Counter[str]:
    return Counter(genre_of[track_id] for track_id in track_ids)


def assert_partition(fold: Fold, genre_of: dict[str, str]) -> None:
    parts = [set(fold.train), set(fold.valid), set(fold.test)]
    assert sum(len(part) for part in parts) == len(set.union(*parts)), "a track is in two parts"
    assert set.union(*parts) == set(genre_of)
    assert all(list(part) == sorted(part) for part in (fold.train, fold.valid, fold.test))


def test_stratified_is_70_10_20_in_every_genre() -> None:
    genre_of = collection(per_genre=10)
    (fold,) = make_folds(genre_of, "stratified", seed=0)
    assert_partition(fold, genre_of)
    assert per_genre(fold.train, genre_of) == Counter({"g0": 7, "g1": 7, "g2": 7})
    assert per_genre(fold.valid, genre_of) == Counter({"g0": 1, "g1": 1, "g2": 1})
    assert per_genre(fold.test, genre_of) == Counter({"g0": 2, "g1": 2, "g2": 2})


def test_stratified_is_stable_for_a_seed_and_changes_with_it() -> None:
    genre_of = collection()
    reordered = dict(reversed(genre_of.items()))
    assert make_folds(genre_of, "stratified", seed=4) == make_folds(reordered, "stratified", seed=4)
    assert make_folds(genre_of, "stratified", seed=4) != make_folds(genre_of, "stratified", seed=5)


def test_adding_a_genre_leaves_the_other_genres_split_alone() -> None:
    (before,) = make_folds(collection(genres=2), "stratified", seed=1)
    (after,) = make_folds(collection(genres=3), "stratified", seed=1)
    assert [t for t in after.test if not t.startswith("g2/")] == list(before.test)


def test_stratified_keeps_one_track_per_part_on_a_tiny_collection() -> None:
    genre_of = collection(per_genre=3)
    (fold,) = make_folds(genre_of, "stratified", seed=0)
    assert per_genre(fold.train, genre_of) == per_genre(fold.valid, genre_of) == per_genre(fold.test, genre_of)


def test_stratified_refuses_a_genre_too_small_to_split() -> None:
    genre_of = {**collection(per_genre=5), "tiny/tiny.00000.wav": "tiny", "tiny/tiny.00001.wav": "tiny"}
    with pytest.raises(SplitError, match="genre 'tiny' has 2 track"):
        make_folds(genre_of, "stratified", seed=0)


def test_paper_tests_the_last_ten_tracks_of_each_genre_in_sorted_order() -> None:
    genre_of = collection(per_genre=30)
    (fold,) = make_folds(genre_of, "paper", seed=0)
    assert_partition(fold, genre_of)
    assert set(fold.test) == {f"g{g}/g{g}.{i:05d}.wav" for g in range(3) for i in range(20, 30)}
    assert per_genre(fold.valid, genre_of) == Counter({"g0": 2, "g1": 2, "g2": 2})  # an eighth of the 20 left


def test_paper_refuses_a_collection_with_too_few_tracks_per_genre() -> None:
    with pytest.raises(SplitError, match="genre 'g0' has 7 tracks.*last 10"):
        make_folds(collection(per_genre=7), "paper", seed=0)


def listed_tracks() -> dict[str, list[str]]:
    return {part: (FAULT_FILTERED_DIR / name).read_text().split() for part, name in FAULT_FILTERED_LISTS.items()}


def test_fault_filtered_uses_the_standard_lists_and_matches_au_files() -> None:
    lists = listed_tracks()
    assert {part: len(tracks) for part, tracks in lists.items()} == {"train": 443, "valid": 197, "test": 290}
    genre_of = {track.replace(".wav", ".au"): track.split("/")[0] for tracks in lists.values() for track in tracks}
    genre_of["blues/blues.00099.au"] = "blues"  # a track the lists leave out (filtered) is in no part
    (fold,) = make_folds(genre_of, "fault-filtered", seed=0)
    assert fold.test == tuple(sorted(track.replace(".wav", ".au") for track in lists["test"]))
    assert len(fold.train) == 443 and len(fold.valid) == 197


def test_fault_filtered_on_a_small_collection_says_how_many_tracks_are_missing() -> None:
    lists = listed_tracks()
    present = lists["train"][:5]
    with pytest.raises(SplitError, match="lists 930 GTZAN tracks and this collection lacks 925 of them"):
        make_folds({track: track.split("/")[0] for track in present}, "fault-filtered", seed=0)


def test_kfold_tests_every_track_exactly_once_with_stratified_folds() -> None:
    genre_of = collection(genres=3, per_genre=7)
    folds = make_folds(genre_of, "kfold:5", seed=2)
    assert len(folds) == 5
    for fold in folds:
        assert_partition(fold, genre_of)
        assert set(per_genre(fold.valid, genre_of)) == {"g0", "g1", "g2"}
    tested = Counter(track for fold in folds for track in fold.test)
    assert set(tested) == set(genre_of) and set(tested.values()) == {1}
    assert {len(fold.test) for fold in folds} <= {4, 5}  # 21 tracks: sizes differ by at most one
    assert make_folds(genre_of, "kfold:5", seed=2) == folds


def test_kfold_refuses_folds_that_leave_a_genre_nothing_to_train_on() -> None:
    with pytest.raises(SplitError, match="use a smaller K"):
        make_folds(collection(per_genre=2), "kfold:2", seed=0)


@pytest.mark.parametrize("name", ["random", "kfold", "kfold:1", "kfold:x", "paper:3"])
def test_unknown_split_names_are_refused_with_the_valid_forms(name: str) -> None:
    with pytest.raises(SplitError, match="stratified, paper, fault-filtered, kfold:K"):
        parse_split(name)
