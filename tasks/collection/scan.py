"""Finding the tracks of a collection in the GTZAN layout, `<root>/<genre>/<file>`, and keying them by content.

The genre is the first-level folder's name and the track id is `<genre>/<file name>`. Anything else found
on the way (hidden entries such as `.DS_Store`, loose files at the top, folders inside genre folders, files
with a non-audio extension, genre folders without audio, folders or files that cannot be read) is listed as
ignored with the reason, so a messy folder is reported rather than crashed on or silently half-read.

Every track is keyed by the XXH3-128 hash of its bytes (`scan_collection`): the store keeps features by that
key, so content, never a timestamp, decides whether a file changed (docs/design.md has what reading costs).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from genreflow.tasks.collection.sources import SourceError, read_source
from genreflow.tasks.collection.synthetic import write_synthetic_collection

SYNTHETIC = "synthetic"
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".au", ".flac", ".ogg", ".mp3")
# Files read and hashed at once: reading is I/O, so a few threads keep a disk (or a network folder) busy.
HASH_THREADS = 4


@dataclass(frozen=True)
class FoundFile:
    """An audio file of the collection, found by its place in the folder; `path` is absolute."""

    track_id: str
    genre: str
    path: str


@dataclass(frozen=True)
class SourceTrack:
    """One audio file to extract, with the content key of its bytes; `path` is absolute so Dask workers
    anywhere can open it."""

    track_id: str
    genre: str
    path: str
    key: str


HIDDEN = "hidden"  # the reason given for dot-files and dot-folders, which every folder may hold


@dataclass(frozen=True)
class IgnoredEntry:
    """Something in the collection folder that is not a track, and why (`path` is relative to the root)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Listing:
    """The audio files of a folder, found without reading them, and what was passed over."""

    root: str
    files: list[FoundFile] = field(default_factory=list)
    ignored: list[IgnoredEntry] = field(default_factory=list)

    @property
    def genres(self) -> dict[str, int]:
        """Files per genre, by genre name."""
        return dict(sorted(Counter(found.genre for found in self.files).items()))


@dataclass(frozen=True)
class Collection:
    """The tracks of one folder, sorted by track id, each keyed by content, and what was passed over."""

    root: str
    tracks: list[SourceTrack] = field(default_factory=list)
    ignored: list[IgnoredEntry] = field(default_factory=list)

    @property
    def genres(self) -> list[str]:
        return sorted({track.genre for track in self.tracks})


def list_collection(root: str | os.PathLike[str]) -> Listing:
    """Every `<genre>/<audio file>` under `root`, without reading any; raises if `root` is not a folder."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"collection folder {root} does not exist or is not a folder")
    files: list[FoundFile] = []
    ignored: list[IgnoredEntry] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            ignored.append(IgnoredEntry(entry.name, HIDDEN))
        elif not entry.is_dir():
            ignored.append(IgnoredEntry(entry.name, "not inside a genre folder"))
        else:
            found, passed_over = _scan_genre_folder(root, entry)
            files.extend(found)
            ignored.extend(passed_over)
    return Listing(str(root), files, ignored)


def scan_collection(root: str | os.PathLike[str]) -> Collection:
    """`list_collection`, then every file read and keyed by the hash of its bytes; a file that cannot be
    read is ignored with the reason."""
    listing = list_collection(root)
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        keys = list(pool.map(_content_key, [found.path for found in listing.files]))
    tracks, ignored = [], list(listing.ignored)
    for found, key in zip(listing.files, keys, strict=True):
        if isinstance(key, SourceError):
            ignored.append(IgnoredEntry(found.track_id, key.reason))
        else:
            tracks.append(SourceTrack(found.track_id, found.genre, found.path, key))
    return Collection(listing.root, tracks, ignored)


def content_key(data: bytes) -> str:
    """The key of a file's content in the store: XXH3-128 of its bytes, in hex. It tells accidentally
    different files apart as well as a cryptographic hash does, at a fraction of the cost; it is not meant
    to resist a forger, who could change the training files anyway."""
    return xxhash.xxh3_128_hexdigest(data)


def _content_key(path: str) -> str | SourceError:
    try:
        return content_key(read_source(path))
    except SourceError as error:
        return error


def load_collection(
    data: str, tracks_per_genre: int = 20, synthetic_root: str | os.PathLike[str] | None = None, seed: int = 0
) -> Collection:
    """The collection `data` names, scanned: a GTZAN-layout folder, or "synthetic".

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


def _scan_genre_folder(root: Path, folder: Path) -> tuple[list[FoundFile], list[IgnoredEntry]]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        return [], [IgnoredEntry(folder.name, f"genre folder cannot be read ({error.strerror or error})")]
    files: list[FoundFile] = []
    ignored: list[IgnoredEntry] = []
    for entry in entries:
        relative = entry.relative_to(root).as_posix()
        reason = _why_not_a_track(entry)
        if reason:
            ignored.append(IgnoredEntry(relative, reason))
        else:
            files.append(FoundFile(track_id=relative, genre=folder.name, path=str(entry)))
    if not files:
        ignored.append(IgnoredEntry(folder.name, "genre folder without audio files"))
    return files, ignored


def _why_not_a_track(entry: Path) -> str | None:
    if entry.name.startswith("."):
        return HIDDEN
    if entry.is_dir():
        return "folder nested inside a genre folder (only <genre>/<file> is read)"
    if not entry.is_file():
        return "not a regular file"
    if entry.suffix.lower() not in AUDIO_EXTENSIONS:
        return f"not an audio file extension ({entry.suffix or 'none'}; expected {', '.join(AUDIO_EXTENSIONS)})"
    return None
