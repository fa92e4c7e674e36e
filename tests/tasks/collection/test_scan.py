"""Scanning a GTZAN-layout folder: tracks found and keyed by content, everything else reported with a reason,
never a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash

from genreflow.tasks.collection.scan import (
    SourceTrack,
    collection_folder,
    default_synthetic_root,
    load_collection,
    scan_collection,
)
from tests.support.paths import REPO_ROOT
from tests.support.processes import as_unprivileged


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """A collection as people really keep them: hidden files, notes, stray folders, odd case."""
    for relative in (
        "blues/b1.wav",
        "blues/B2.WAV",
        "blues/.DS_Store",
        "blues/notes.txt",
        "blues/live/b3.wav",
        "rock/r1.au",
        "rock/r2.mp3",
        "README.md",
        ".hidden/x.wav",
        "empty/readme.txt",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(relative.encode())
    (tmp_path / "nothing").mkdir()
    return tmp_path


def test_finds_genre_tracks_and_reports_everything_else(messy_folder: Path):
    collection = scan_collection(messy_folder)

    assert [track.track_id for track in collection.tracks] == [
        "blues/B2.WAV",
        "blues/b1.wav",
        "rock/r1.au",
        "rock/r2.mp3",
    ]
    key = xxhash.xxh3_128_hexdigest(b"blues/B2.WAV")
    assert collection.tracks[0] == SourceTrack(
        "blues/B2.WAV", "blues", str(messy_folder.resolve() / "blues/B2.WAV"), key
    )
    assert collection.genres == ["blues", "rock"]
    reasons = {entry.path: entry.reason for entry in collection.ignored}
    assert reasons.keys() == {
        ".hidden",
        "README.md",
        "blues/.DS_Store",
        "blues/live",
        "blues/notes.txt",
        "empty/readme.txt",
        "empty",
        "nothing",
    }
    assert reasons[".hidden"] == reasons["blues/.DS_Store"] == "hidden"
    assert reasons["README.md"] == "not inside a genre folder"
    assert reasons["blues/live"].startswith("folder nested inside a genre folder")
    assert reasons["blues/notes.txt"].startswith("not an audio file extension (.txt")
    assert reasons["empty"] == reasons["nothing"] == "genre folder without audio files"


def test_tracks_are_keyed_by_content_whatever_their_names_and_timestamps(messy_folder: Path, tmp_path: Path):
    other = shutil.copytree(messy_folder, tmp_path / "other")
    (other / "rock" / "r1.au").write_bytes(b"changed")
    os.utime(other / "rock" / "r1.au", ns=(1, 1))  # same size and mtime tricks would not matter

    keys = {track.track_id: track.key for track in scan_collection(messy_folder).tracks}
    copied = {track.track_id: track.key for track in scan_collection(other).tracks}

    assert copied["blues/b1.wav"] == keys["blues/b1.wav"]
    assert copied["rock/r1.au"] != keys["rock/r1.au"]
    assert len(set(keys.values())) == len(keys)


SCAN = """
import json, sys
from genreflow.tasks.collection.scan import scan_collection
collection = scan_collection(sys.argv[1])
ignored = {entry.path: entry.reason for entry in collection.ignored}
print(json.dumps({"tracks": [track.track_id for track in collection.tracks], "ignored": ignored}))
"""


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root without setpriv ignores permissions"
)
def test_an_unreadable_genre_folder_or_file_is_ignored_and_the_rest_is_read(messy_folder: Path):
    (messy_folder / "rock").chmod(0)
    (messy_folder / "blues" / "b1.wav").chmod(0)
    try:
        scan = subprocess.run(
            as_unprivileged([sys.executable, "-c", SCAN, str(messy_folder)]),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            check=True,
        )
    finally:
        (messy_folder / "rock").chmod(0o755)
        (messy_folder / "blues" / "b1.wav").chmod(0o644)
    result = json.loads(scan.stdout)
    assert result["tracks"] == ["blues/B2.WAV"]
    assert result["ignored"]["rock"] == "genre folder cannot be read (Permission denied)"
    assert result["ignored"]["blues/b1.wav"] == "unreadable: permission denied"


def test_a_missing_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(NotADirectoryError, match="does-not-exist"):
        scan_collection(tmp_path / "does-not-exist")


def test_synthetic_is_written_once_under_its_own_named_folder(tmp_path: Path):
    collection = load_collection("synthetic", tracks_per_genre=1, synthetic_root=tmp_path, seed=4)

    folder = tmp_path / "synthetic-seed4-n1"
    assert [Path(track.path).parent.parent for track in collection.tracks] == [folder.resolve()] * len(
        collection.tracks
    )
    assert len(collection.genres) >= 5 and len(collection.tracks) == len(collection.genres)
    assert [entry.path for entry in collection.ignored] == [".synthetic-manifest.json"]
    assert collection_folder("synthetic", 1, tmp_path, seed=4) == folder


def test_a_folder_is_passed_through_and_synthetic_needs_a_root(tmp_path: Path):
    assert collection_folder(str(tmp_path)) == tmp_path
    with pytest.raises(ValueError, match="synthetic_root"):
        collection_folder("synthetic")


def test_the_synthetic_collection_goes_beside_a_local_store_and_under_runs_for_a_url(tmp_path: Path):
    assert default_synthetic_root(str(tmp_path / "stores" / "store.zarr")) == tmp_path / "stores"
    assert default_synthetic_root("s3://bucket/store.zarr") == Path("runs")
