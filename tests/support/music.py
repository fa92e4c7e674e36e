"""A tiny GTZAN-layout collection of short synthetic tracks, for tests that run the whole flow."""

from __future__ import annotations

from pathlib import Path

from genreflow.tasks.collection.synthetic import GENRES, write_synthetic_collection

TRACKS_PER_GENRE = 3  # the fewest that a stratified train/validation/test split accepts
TRACK_COUNT = TRACKS_PER_GENRE * len(GENRES)
TRACK_SECONDS = 3.0  # the flow's own synthetic tracks last 30 s and would take most of a test's time


def tiny_collection(root: Path) -> Path:
    """Write (once) and return the collection's root folder, to pass as the flow's `data`."""
    return write_synthetic_collection(root, tracks_per_genre=TRACKS_PER_GENRE, seed=0, seconds=TRACK_SECONDS)
