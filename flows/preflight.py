"""Checks a run's parameters before any work starts, so that a mistake costs a second, not a Prefect start-up.

`genreflow run` calls `check_run` before it imports Prefect, and the flow calls it again first thing (a
deployment's parameters never went through the command line). Nothing here imports Prefect or TensorFlow.
Every refusal is one line that names what is wrong.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from genreflow.core import TrainingSettings
from genreflow.models.registry import MODELS, spec
from genreflow.parameters import RunParameters
from genreflow.tasks.collection.scan import SYNTHETIC, list_collection
from genreflow.tasks.collection.synthetic import GENRES as SYNTHETIC_GENRES
from genreflow.tasks.training.splits import MIN_GENRES, SplitError, make_folds, parse_split


class RunRefused(ValueError):
    """The run cannot start as asked; the message says why in one line."""


def check_run(parameters: RunParameters) -> None:
    """Refuse a run that cannot work: unknown models, degenerate clips, bad seeds or split, training settings
    that contradict each other, a collection that is missing, unreadable or has fewer than two genres, or an
    output location that cannot be written."""
    try:
        check_grid(parameters.models, parameters.clip_seconds, parameters.seeds, parameters.split)
        check_training(parameters.training_settings(), parameters.models)
        genre_of = _collection_tracks(parameters.data, parameters.tracks_per_genre)
        for seed in parameters.seeds:
            make_folds(genre_of, parameters.split, seed)
        for location in parameters.locations():
            check_writable(location)
    except (ValueError, OSError) as error:
        raise RunRefused(str(error)) from error


def check_grid(models: list[str], clip_seconds: list[float], seeds: list[int], split: str) -> None:
    """Models known, each with at least one clip it can take, seeds non-negative integers, a known split."""
    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        raise ValueError(f"unknown model(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODELS)}")
    if not clip_seconds:
        raise ValueError("give at least one clip length")
    for model in models:
        errors = [spec(model).clip_problem(seconds) for seconds in clip_seconds]
        if all(errors):  # a clip too short for some models is skipped for them; a model with no clip is refused
            raise ValueError(errors[0])
    if not seeds or any(not isinstance(seed, int) or seed < 0 for seed in seeds):
        raise ValueError(f"seeds must be non-negative integers, got {seeds}")
    parse_split(split)


def check_training(settings: TrainingSettings, models: list[str]) -> None:
    """The run's training settings, then each network's as it trains with them, its own filled in where the run
    left them open (a refusal there names the network)."""
    settings.check()
    for model in models:
        if spec(model).neural:
            spec(model).checked_settings(settings)


def _collection_tracks(data: str, tracks_per_genre: int) -> dict[str, str]:
    """Track id -> genre of the collection `data` names, read from its folder listing (no file is read)."""
    if data == SYNTHETIC:
        if tracks_per_genre < 1:
            raise ValueError(f"tracks_per_genre must be at least 1, got {tracks_per_genre}")
        return {f"{genre}/{index}": genre for genre in SYNTHETIC_GENRES for index in range(tracks_per_genre)}
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"--data {data}: no such folder; give a GTZAN-layout folder <root>/<genre>/<file> or 'synthetic'"
        )
    listing = list_collection(folder)
    genres = listing.genres
    if len(genres) < MIN_GENRES:
        found = ", ".join(f"{genre} ({count})" for genre, count in genres.items()) or "none"
        raise SplitError(
            f"--data {data}: a genre classifier needs audio files in at least {MIN_GENRES} genre folders; found "
            f"{found}{_ignored_note(listing.ignored)}"
        )
    return {found.track_id: found.genre for found in listing.files}


def _ignored_note(ignored: list) -> str:
    if not ignored:
        return ""
    shown = "; ".join(f"{entry.path}: {entry.reason}" for entry in ignored[:3])
    return f" (ignored {len(ignored)}: {shown}{', ...' if len(ignored) > 3 else ''})"


def check_writable(location: str) -> None:
    """A local folder that exists or can be made, and into which a file can be written; URLs pass (their
    credentials are checked by the first write)."""
    if "://" in location:
        return
    folder = Path(location).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".genreflow-write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise OSError(f"{location}: cannot write there ({reason}); choose another folder") from None
    if not os.access(folder, os.W_OK):
        raise OSError(f"{location}: cannot write there; choose another folder")
