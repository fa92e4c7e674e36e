"""Finding the tracks of a collection in the GTZAN layout, `<root>/<genre>/<file>`.

The genre is the first-level folder's name and the track id is `<genre>/<file name>`. Anything else found
on the way (hidden entries such as `.DS_Store`, loose files at the top, folders inside genre folders,
files with a non-audio extension, genre folders without audio) is listed as ignored with the reason,
so a messy folder is reported rather than crashed on or silently half-read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from genreflow.config import AUDIO_EXTENSIONS
from tasks.synthetic import write_synthetic_collection

SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class SourceTrack:
    """One audio file to extract; `path` is absolute so Dask workers anywhere can open it."""

    track_id: str
    genre: str
    path: str


@dataclass(frozen=True)
class IgnoredEntry:
    """Something in the collection folder that is not a track, and why (`path` is relative to the root)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Collection:
    """The tracks of one folder, sorted by track id, and what was passed over."""

    tracks: list[SourceTrack] = field(default_factory=list)
    ignored: list[IgnoredEntry] = field(default_factory=list)

    @property
    def genres(self) -> list[str]:
        return sorted({track.genre for track in self.tracks})


def scan_collection(root: str | os.PathLike[str]) -> Collection:
    """Every `<genre>/<audio file>` under `root`; raises if `root` is not a folder."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"collection folder {root} does not exist or is not a folder")
    tracks: list[SourceTrack] = []
    ignored: list[IgnoredEntry] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            ignored.append(IgnoredEntry(entry.name, "hidden"))
        elif not entry.is_dir():
            ignored.append(IgnoredEntry(entry.name, "not inside a genre folder"))
        else:
            found, passed_over = _scan_genre_folder(root, entry)
            tracks.extend(found)
            ignored.extend(passed_over)
    return Collection(tracks, ignored)


def load_collection(
    data: str, tracks_per_genre: int = 20, synthetic_root: str | os.PathLike[str] | None = None, seed: int = 0
) -> Collection:
    """The collection `data` names: a GTZAN-layout folder, or "synthetic".

    "synthetic" writes (once) the seeded collection into `synthetic_root/synthetic-seed<seed>-n<tracks>`
    and scans it, so the flow and the `extract` command share the same files for the same parameters.
    """
    return scan_collection(collection_folder(data, tracks_per_genre, synthetic_root, seed))


def collection_folder(
    data: str, tracks_per_genre: int = 20, synthetic_root: str | os.PathLike[str] | None = None, seed: int = 0
) -> Path:
    """The folder `data` names, writing the synthetic collection there first when asked for it."""
    if data != SYNTHETIC:
        return Path(data)
    if synthetic_root is None:
        raise ValueError("the synthetic collection needs a folder to be written to (synthetic_root)")
    folder = Path(synthetic_root) / f"synthetic-seed{seed}-n{tracks_per_genre}"
    return write_synthetic_collection(folder, tracks_per_genre=tracks_per_genre, seed=seed)


def default_synthetic_root(store_location: str) -> Path:
    """Beside a local store; under ./runs for a store behind a URL (the audio must be on local disk)."""
    return Path("runs") if "://" in store_location else Path(store_location).resolve().parent


def _scan_genre_folder(root: Path, folder: Path) -> tuple[list[SourceTrack], list[IgnoredEntry]]:
    tracks: list[SourceTrack] = []
    ignored: list[IgnoredEntry] = []
    for entry in sorted(folder.iterdir()):
        relative = entry.relative_to(root).as_posix()
        reason = _why_not_a_track(entry)
        if reason:
            ignored.append(IgnoredEntry(relative, reason))
        else:
            tracks.append(SourceTrack(track_id=relative, genre=folder.name, path=str(entry)))
    if not tracks:
        ignored.append(IgnoredEntry(folder.name, "genre folder without audio files"))
    return tracks, ignored


def _why_not_a_track(entry: Path) -> str | None:
    if entry.name.startswith("."):
        return "hidden"
    if entry.is_dir():
        return "folder nested inside a genre folder (only <genre>/<file> is read)"
    if not entry.is_file():
        return "not a regular file"
    if entry.suffix.lower() not in AUDIO_EXTENSIONS:
        return f"not an audio file extension ({entry.suffix or 'none'}; expected {', '.join(AUDIO_EXTENSIONS)})"
    return None
