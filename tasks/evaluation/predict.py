"""Genre predictions for audio files, decoded and turned into log-mels by the extraction code itself.

A file is decoded at the model's sample rate (and must last at least one clip), turned into a log-mel and rounded
to the store's dtype by the extraction code itself, exactly as extraction would store it. Its
clips are the evaluation clips (every non-overlapping clip, at least one); its probabilities are the mean
clip softmax, averaged over every fold's model of the model directory (see `genreflow.tasks.training.train`).

A folder contributes the audio files directly inside it (unlabelled) and, in the GTZAN layout
`<folder>/<genre>/<file>`, the files of its genre folders, labelled by the folder name; where labels are
known, the result also holds the track-level accuracy over the files whose genre the model knows.
A file that cannot be read or decoded gets an error entry and the others are still predicted.

The result says what the model learned from (its collection and data version), and marks each file whose
content was among its training or validation tracks (`learned_from`): an accuracy over such files measures
memory, not generalisation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genreflow.core import FeatureConfig
from genreflow.models.directory import FOLD_FILE, CellInfo, fold_dir, is_remote, load_member, local_copy
from genreflow.models.normalisation import BandNormaliser
from genreflow.models.persistence import Classifier
from genreflow.storage.zarr_io import as_stored
from genreflow.tasks.collection.scan import AUDIO_EXTENSIONS, content_key, list_collection
from genreflow.tasks.collection.sources import SourceError, read_source
from genreflow.tasks.evaluation.scoring import mean_per_track, predict_clips
from genreflow.tasks.features.audio import AudioError, decode_audio
from genreflow.tasks.features.clips import cut_clips, evaluation_starts
from genreflow.tasks.features.compute import compute_features

CHUNK_FILES = 64  # files read, then predicted, together: a few full batches of clips, a few MB of log-mels


@dataclass(frozen=True)
class Ensemble:
    """Every fold's model of a model directory, with the normalisation each was trained with."""

    cell: CellInfo
    members: list[tuple[Classifier, BandNormaliser]]
    learned_from: frozenset[str]  # content keys of every track any member trained or validated on

    @classmethod
    def load(cls, model_dir: str | Path) -> Ensemble:
        """Every fold's model, from a local folder or any fsspec URL (loaded into memory, nothing kept)."""
        with local_copy(model_dir) as local:
            cell = CellInfo.load(local)
            folds = [fold_dir(local, index) for index in range(cell.folds)]
            seen = set()
            for folder in folds:
                fold = json.loads((folder / FOLD_FILE).read_text())
                seen.update(track.key for track in cell.tracks_by_id([*fold["train"], *fold["valid"]]))
            return cls(cell, [load_member(folder, cell) for folder in folds], frozenset(seen))

    def probabilities(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """(files, genres): the track-level softmax of each log-mel (frames, mels) as the store holds it. The
        clips of every file go through each model together, in full batches: a file's few clips padded to a
        batch of their own would cost a batch per file."""
        frames = self.cell.clip_frames
        starts = [evaluation_starts(one.shape[0], frames) for one in features]
        counts = np.array([len(file_starts) for file_starts in starts])
        per_member = []
        for model, normaliser in self.members:
            normalised = [normaliser.apply(one) for one in features]
            clips = np.concatenate([cut_clips(one, at, frames) for one, at in zip(normalised, starts, strict=True)])
            per_member.append(mean_per_track(predict_clips(model, clips, self.cell.settings.batch_size), counts))
        return np.mean(per_member, axis=0)


@dataclass(frozen=True)
class AudioInput:
    """A file to predict, and its genre where the folder layout says it."""

    path: str
    genre: str | None = None


def predict_paths(model_dir: str | Path, paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """Predict every audio file named by `paths` (files or folders); the JSON `genreflow predict --json` prints."""
    ensemble = Ensemble.load(model_dir)
    inputs, errors = collect_inputs(paths)
    predictions = []
    for start in range(0, len(inputs), CHUNK_FILES):
        chunk = inputs[start : start + CHUNK_FILES]
        config, clip_seconds = ensemble.cell.feature_config, ensemble.cell.clip_seconds
        read = [features_or_error(item.path, config, clip_seconds) for item in chunk]
        for row in predicted_rows(ensemble, chunk, read):
            (errors if "error" in row else predictions).append(row)
    return {
        "model_dir": str(model_dir) if is_remote(model_dir) else str(Path(model_dir).resolve()),
        "model": ensemble.cell.model,
        "clip_seconds": ensemble.cell.clip_seconds,
        "trained_on": {"collection": ensemble.cell.collection, "data_version": ensemble.cell.data_version},
        "predictions": predictions,
        "errors": errors,
        "learned_from": sum(row["learned_from"] for row in predictions),
        **_accuracy(predictions, ensemble.cell.genres),
    }


def predicted_rows(
    ensemble: Ensemble, inputs: Sequence[AudioInput], read: Sequence[tuple[str, np.ndarray] | str]
) -> list[dict[str, Any]]:
    """A row per input, in order: its prediction (genre, probabilities, whether the model learned from it), or
    `{"path", "error"}` where `read` (its `features_or_error`) holds why it could not be read."""
    decoded = [(item, outcome) for item, outcome in zip(inputs, read, strict=True) if not isinstance(outcome, str)]
    probabilities = iter(ensemble.probabilities([features for _, (_, features) in decoded]) if decoded else [])
    rows = []
    for item, outcome in zip(inputs, read, strict=True):
        if isinstance(outcome, str):
            rows.append({"path": item.path, "error": outcome})
            continue
        row = _prediction(item, next(probabilities), ensemble.cell.genres)
        rows.append({**row, "key": outcome[0], "learned_from": outcome[0] in ensemble.learned_from})
    return rows


def collect_inputs(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[AudioInput], list[dict[str, str]]]:
    """The audio files `paths` name, and an error entry for each path that names none."""
    inputs: list[AudioInput] = []
    errors: list[dict[str, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = _folder_inputs(path)
            inputs += found
            if not found:
                problem = f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder"
                errors.append({"path": str(path), "error": problem})
        elif path.exists():
            inputs.append(AudioInput(str(path)))
        else:
            errors.append({"path": str(path), "error": "no such file or folder"})
    return inputs, errors


def features_or_error(path: str, config: FeatureConfig, clip_seconds: float) -> tuple[str, np.ndarray] | str:
    """`file_features`, or why the file cannot be predicted."""
    try:
        return file_features(path, config, clip_seconds)
    except (AudioError, SourceError) as error:
        return error.reason


def file_features(path: str, config: FeatureConfig, clip_seconds: float) -> tuple[str, np.ndarray]:
    """One file's content key and its log-mel exactly as extraction stores it (with the store's rounding)."""
    data = read_source(path)
    audio = decode_audio(data, path, config.sample_rate, min_seconds=clip_seconds)
    return content_key(data), as_stored(compute_features(audio, config), config.dtype).astype(np.float32)


def _folder_inputs(folder: Path) -> list[AudioInput]:
    loose = [
        AudioInput(str(entry))
        for entry in sorted(folder.iterdir())
        if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in AUDIO_EXTENSIONS
    ]
    labelled = [AudioInput(found.path, found.genre) for found in list_collection(folder).files]
    return loose + labelled


def _prediction(item: AudioInput, probabilities: np.ndarray, genres: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "path": item.path,
        "genre": genres[int(probabilities.argmax())],
        "probabilities": {genre: round(float(p), 4) for genre, p in zip(genres, probabilities, strict=True)},
    }
    if item.genre is not None:
        row["true"] = item.genre
    return row


def _accuracy(predictions: list[dict[str, Any]], genres: list[str]) -> dict[str, Any]:
    """Track-level accuracy over the predictions whose true genre the model knows; nothing if there are none."""
    labelled = [row for row in predictions if row.get("true") in genres]
    if not labelled:
        return {}
    correct = sum(row["genre"] == row["true"] for row in labelled)
    return {"accuracy": correct / len(labelled), "labelled": len(labelled)}
