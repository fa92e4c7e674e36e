"""Train / validation / test splits, always by track, so no clip of a test track is ever trained on.

Split names (`parse_split` checks them):
- `stratified`: seeded, per genre 20 % test, 10 % validation, 70 % train (at least one track each).
- `paper`: the last 10 tracks of each genre in sorted order are the test set, as the paper describes; a
  seeded eighth of the rest is held out for validation (early stopping), the remainder trains.
- `fault-filtered`: the standard artist-filtered GTZAN lists in `fault_filtered/` beside this module. Tracks are matched
  by `<genre>/<file stem>`, so `.au` and `.wav` copies of GTZAN both match; every listed track must exist.
- `kfold:K`: K folds, stratified by genre; each track is tested in exactly one fold, and each fold holds out
  a seeded eighth of its training tracks for validation.

Shuffles draw from `numpy.random.default_rng([seed, purpose, crc32(genre)])` per genre, so a seed gives the
same split on every machine, and adding a genre leaves the other genres' splits alone.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

SPLIT_NAMES = ("stratified", "paper", "fault-filtered", "kfold:K")
MIN_GENRES = 2  # fewer, and a classifier is right by construction
TEST_FRACTION = 0.2
VALID_FRACTION_OF_REST = 0.125  # 10 % of the whole when the test set is 20 %
PAPER_TEST_TRACKS = 10
# The purposes a shuffle serves, mixed into its seed so that each draw is independent of the others.
TEST_DRAW, VALID_DRAW = 0, 1
FAULT_FILTERED_DIR = Path(__file__).with_name("fault_filtered")
FAULT_FILTERED_LISTS = {"train": "train_filtered.txt", "valid": "valid_filtered.txt", "test": "test_filtered.txt"}


class SplitError(ValueError):
    """A split that cannot be made on this collection; the message says why."""


@dataclass(frozen=True)
class Fold:
    """One training's tracks: each tuple sorted, the three disjoint."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]


@dataclass(frozen=True)
class SplitSpec:
    kind: str
    folds: int = 1


def parse_split(split: str) -> SplitSpec:
    """The split a name asks for; an unknown name or a bad K is refused with the valid forms."""
    if split in ("stratified", "paper", "fault-filtered"):
        return SplitSpec(split)
    kind, _, count = split.partition(":")
    if kind == "kfold" and count.isdigit() and int(count) >= 2:
        return SplitSpec("kfold", int(count))
    raise SplitError(f"unknown split {split!r}; choose from {', '.join(SPLIT_NAMES)} (K an integer >= 2)")


def make_folds(genre_of: Mapping[str, str], split: str, seed: int) -> list[Fold]:
    """The folds of `split` over the tracks `genre_of` (track id -> genre): one fold unless `kfold:K`."""
    spec = parse_split(split)
    by_genre = _tracks_by_genre(genre_of)
    if spec.kind == "stratified":
        return [_stratified(by_genre, seed)]
    if spec.kind == "paper":
        return [_paper(by_genre, seed)]
    if spec.kind == "fault-filtered":
        return [_fault_filtered(genre_of)]
    return _kfold(by_genre, spec.folds, seed)


# ---- the splits ------------------------------------------------------------------------------------------
def _stratified(by_genre: dict[str, list[str]], seed: int) -> Fold:
    test: list[str] = []
    rest: dict[str, list[str]] = {}
    for genre, tracks in by_genre.items():
        _require(len(tracks) >= 3, f"genre {genre!r} has {len(tracks)} track(s); a stratified split needs 3 per genre")
        shuffled = _shuffled(tracks, genre, (seed, TEST_DRAW))
        n_test = max(1, round(TEST_FRACTION * len(tracks)))
        test += shuffled[:n_test]
        rest[genre] = shuffled[n_test:]
    return _fold_holding_out_validation(rest, test, (seed, VALID_DRAW))


def _paper(by_genre: dict[str, list[str]], seed: int) -> Fold:
    test: list[str] = []
    rest: dict[str, list[str]] = {}
    for genre, tracks in by_genre.items():
        _require(
            len(tracks) >= PAPER_TEST_TRACKS + 2,
            f"genre {genre!r} has {len(tracks)} tracks; the paper split tests the last {PAPER_TEST_TRACKS} of each "
            f"genre and needs {PAPER_TEST_TRACKS + 2} (use stratified or kfold:K on a small collection)",
        )
        test += tracks[-PAPER_TEST_TRACKS:]
        rest[genre] = tracks[:-PAPER_TEST_TRACKS]
    return _fold_holding_out_validation(rest, test, (seed, VALID_DRAW))


def _fault_filtered(genre_of: Mapping[str, str]) -> Fold:
    by_key = {_stem_key(track_id): track_id for track_id in genre_of}
    parts: dict[str, tuple[str, ...]] = {}
    missing: list[str] = []
    for part, file_name in FAULT_FILTERED_LISTS.items():
        listed = [line.strip() for line in (FAULT_FILTERED_DIR / file_name).read_text().splitlines() if line.strip()]
        missing += [entry for entry in listed if _stem_key(entry) not in by_key]
        parts[part] = tuple(sorted(by_key[_stem_key(entry)] for entry in listed if _stem_key(entry) in by_key))
    listed_total = sum(len(part) for part in parts.values()) + len(missing)
    _require(
        not missing,
        f"the fault-filtered split lists {listed_total} GTZAN tracks and this collection lacks {len(missing)} of "
        f"them (e.g. {', '.join(missing[:3])}); it needs the full GTZAN collection",
    )
    return Fold(**parts)


def _kfold(by_genre: dict[str, list[str]], k: int, seed: int) -> list[Fold]:
    fold_of: dict[str, int] = {}
    position = 0  # continues across genres so that the folds come out the same size
    for genre, tracks in by_genre.items():
        for track_id in _shuffled(tracks, genre, (seed, TEST_DRAW)):
            fold_of[track_id] = position % k
            position += 1
    _require(len(fold_of) >= k, f"kfold:{k} needs at least {k} tracks, the collection has {len(fold_of)}")
    folds = []
    for fold in range(k):
        test = [track_id for track_id, index in fold_of.items() if index == fold]
        rest = {genre: [t for t in tracks if fold_of[t] != fold] for genre, tracks in by_genre.items()}
        for genre, tracks in rest.items():
            _require(
                len(tracks) >= 2,
                f"kfold:{k} leaves genre {genre!r} only {len(tracks)} track(s) to train and validate on; "
                "use a smaller K",
            )
        folds.append(_fold_holding_out_validation(rest, test, (seed, VALID_DRAW, fold)))
    return folds


# ---- helpers ---------------------------------------------------------------------------------------------
def _fold_holding_out_validation(rest: dict[str, list[str]], test: Sequence[str], entropy: tuple[int, ...]) -> Fold:
    """Per genre, a seeded eighth (at least one track) of `rest` validates and the remainder trains."""
    train: list[str] = []
    valid: list[str] = []
    for genre, tracks in rest.items():
        shuffled = _shuffled(tracks, genre, entropy)
        n_valid = max(1, round(VALID_FRACTION_OF_REST * len(tracks)))
        valid += shuffled[:n_valid]
        train += shuffled[n_valid:]
    return Fold(tuple(sorted(train)), tuple(sorted(valid)), tuple(sorted(test)))


def _tracks_by_genre(genre_of: Mapping[str, str]) -> dict[str, list[str]]:
    by_genre: dict[str, list[str]] = defaultdict(list)
    for track_id in sorted(genre_of):
        by_genre[genre_of[track_id]].append(track_id)
    _require(bool(by_genre), "the collection has no tracks to split")
    return dict(sorted(by_genre.items()))


def _shuffled(tracks: Sequence[str], genre: str, entropy: tuple[int, ...]) -> list[str]:
    """`tracks` (sorted) in an order that depends only on `entropy` (seed, purpose, ...) and the genre's name."""
    rng = np.random.default_rng([*entropy, zlib.crc32(genre.encode())])
    return [tracks[index] for index in rng.permutation(len(tracks))]


def _stem_key(track_id: str) -> str:
    path = PurePosixPath(track_id)
    return f"{path.parent.as_posix()}/{path.stem}"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SplitError(message)
