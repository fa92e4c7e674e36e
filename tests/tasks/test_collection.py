"""Scanning a GTZAN-layout folder: tracks found, everything else reported with a reason, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.collection import SourceTrack, collection_folder, default_synthetic_root, load_collection, scan_collection


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """A collection as people really keep them: hidden files, notes, stray folders, odd case."""
    for relative in (
        "blues/b1.wav", "blues/B2.WAV", "blues/.DS_Store", "blues/notes.txt", "blues/live/b3.wav",
        "rock/r1.au", "rock/r2.mp3", "README.md", ".hidden/x.wav", "empty/readme.txt",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    (tmp_path / "nothing").mkdir()
    return tmp_path


def test_finds_genre_tracks_and_reports_everything_else(messy_folder: Path):
    collection = scan_collection(messy_folder)

    assert [track.track_id for track in collection.tracks] == ["blues/B2.WAV", "blues/b1.wav", "rock/r1.au", "rock/r2.mp3"]
    assert collection.tracks[0] == SourceTrack("blues/B2.WAV", "blues", str(messy_folder.resolve() / "blues/B2.WAV"))
    assert collection.genres == ["blues", "rock"]
    reasons = {entry.path: entry.reason for entry in collection.ignored}
    assert reasons.keys() == {
        ".hidden", "README.md", "blues/.DS_Store", "blues/live", "blues/notes.txt", "empty/readme.txt", "empty", "nothing"
    }
    assert reasons[".hidden"] == reasons["blues/.DS_Store"] == "hidden"
    assert reasons["README.md"] == "not inside a genre folder"
    assert reasons["blues/live"].startswith("folder nested inside a genre folder")
    assert reasons["blues/notes.txt"].startswith("not an audio file extension (.txt")
    assert reasons["empty"] == reasons["nothing"] == "genre folder without audio files"


def test_a_missing_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(NotADirectoryError, match="does-not-exist"):
        scan_collection(tmp_path / "does-not-exist")


def test_synthetic_is_written_once_under_its_own_named_folder(tmp_path: Path):
    collection = load_collection("synthetic", tracks_per_genre=1, synthetic_root=tmp_path, seed=4)

    folder = tmp_path / "synthetic-seed4-n1"
    assert [Path(track.path).parent.parent for track in collection.tracks] == [folder.resolve()] * len(collection.tracks)
    assert len(collection.genres) >= 5 and len(collection.tracks) == len(collection.genres)
    assert [entry.path for entry in collection.ignored] == ["synthetic-manifest.json"]
    assert collection_folder("synthetic", 1, tmp_path, seed=4) == folder


def test_a_folder_is_passed_through_and_synthetic_needs_a_root(tmp_path: Path):
    assert collection_folder(str(tmp_path)) == tmp_path
    with pytest.raises(ValueError, match="synthetic_root"):
        collection_folder("synthetic")


def test_the_synthetic_collection_goes_beside_a_local_store_and_under_runs_for_a_url(tmp_path: Path):
    assert default_synthetic_root(str(tmp_path / "stores" / "store.zarr")) == tmp_path / "stores"
    assert default_synthetic_root("s3://bucket/store.zarr") == Path("runs")
