"""Honest evaluation of a trained cell on its test tracks: the per-cell result JSON of docs/CONTRACTS.md.

Every non-overlapping clip of each test track is scored (clip level); a track's prediction is the mean of
its clips' softmax (track level), and, reported beside it, the genre most of its clips predict (`track_vote`).
For kfold:K each fold's model scores its own test tracks, so the result covers every track the cell used
exactly once. The test tracks are those recorded in the model directory, read by content key: a store that
lacks them or holds them damaged is refused by name. Beyond the contract's keys: `folds` (per fold: tracks,
epochs, seconds, track accuracy), `clip_frames`, `settings`, `collection` and `excluded` (tracks too short
for the clip, with the reason).

For kfold, `n_tracks.train` / `valid` and `epochs_run` are the rounded means over the folds (what one
training saw and ran), `train_seconds` is the total of all folds (what the cell cost), `history` is fold 0's,
and `params` / `size_bytes` are those of one model (fold 0's file).
`predict_clips_per_second` counts only the time spent inside the models, not reading the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from genreflow.files import write_json
from genreflow.models.directory import FOLD_FILE, RESULT_FILE, CellInfo, fold_dir, load_member
from genreflow.models.persistence import Classifier, model_file
from genreflow.storage.store import FeatureSet
from genreflow.tasks.evaluation.scoring import mean_per_track, predict_clips, vote_per_track
from genreflow.tasks.training.dataset import ClipStream, TrackClips, evaluation_plan, labelled_tracks


@dataclass(frozen=True)
class FoldScores:
    """One fold's model on its test tracks: softmax per clip, grouped by track."""

    track_ids: list[str]
    labels: np.ndarray  # (tracks,) genre index
    clip_probabilities: np.ndarray  # (clips, genres)
    clips_per_track: np.ndarray  # (tracks,)
    model_seconds: float
    params: int  # the fold's model's

    @property
    def track_probabilities(self) -> np.ndarray:
        return mean_per_track(self.clip_probabilities, self.clips_per_track)


def evaluate_cell(model_dir: str | Path, store_location: str) -> dict[str, Any]:
    """Score the cell in `model_dir` on its test tracks in the store; the result is also written to result.json."""
    model_dir = Path(model_dir)
    cell = CellInfo.load(model_dir)
    store = FeatureSet.open(store_location, cell.feature_config)
    folds = [json.loads((fold_dir(model_dir, index) / FOLD_FILE).read_text()) for index in range(cell.folds)]
    scores = [_score_fold(cell, store, fold_dir(model_dir, index), fold["test"]) for index, fold in enumerate(folds)]
    result = _result(cell, model_dir, folds, scores)
    write_json(model_dir / RESULT_FILE, result)
    return result


def classification_metrics(true: Sequence[int], predicted: Sequence[int], genres: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over every genre, per-genre precision / recall / F1, confusion (rows = true)."""
    true, predicted = np.asarray(true), np.asarray(predicted)
    labels = list(range(len(genres)))
    precision, recall, f1, _ = precision_recall_fscore_support(true, predicted, labels=labels, zero_division=0)
    return {
        "accuracy": float(np.mean(true == predicted)),
        "macro_f1": float(np.mean(f1)),
        "per_genre": {
            genre: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i])}
            for i, genre in enumerate(genres)
        },
        "confusion": confusion_matrix(true, predicted, labels=labels).tolist(),
    }


# ---- scoring ---------------------------------------------------------------------------------------------
def _score_fold(cell: CellInfo, store: FeatureSet, directory: Path, test_ids: Sequence[str]) -> FoldScores:
    """The fold's model on its own test tracks, read by content key (refused by name if damaged or missing)."""
    model, normaliser = load_member(directory, cell)
    tracks = labelled_tracks(store, cell.tracks_by_id(test_ids))
    genre_index = {genre: index for index, genre in enumerate(cell.genres)}
    plan = evaluation_plan(tracks, genre_index, cell.clip_frames)
    stream = ClipStream(store, cell.clip_frames, normaliser, cell.settings.batch_size, cell.settings.memory_cap_mb)
    probabilities, seconds = _predict_plan(model, stream, plan)
    return FoldScores(
        track_ids=list(test_ids),
        labels=np.array([item.label for item in plan]),
        clip_probabilities=probabilities,
        clips_per_track=np.array([len(item.starts) for item in plan]),
        model_seconds=seconds,
        params=int(model.count_params()),
    )


def _predict_plan(model: Classifier, stream: ClipStream, plan: Sequence[TrackClips]) -> tuple[np.ndarray, float]:
    """Softmax of every clip in plan order, and the seconds spent inside the model (after one warm-up batch)."""
    outputs, seconds = [], 0.0
    for clips, _ in stream.batches(plan):
        if not outputs:
            predict_clips(model, clips, stream.batch_size)  # compiles; kept out of the throughput
        started = time.perf_counter()
        outputs.append(predict_clips(model, clips, stream.batch_size))
        seconds += time.perf_counter() - started
    return np.concatenate(outputs), seconds


# ---- the result ------------------------------------------------------------------------------------------
def _result(cell: CellInfo, model_dir: Path, folds: list[dict[str, Any]], scores: list[FoldScores]) -> dict[str, Any]:
    track_ids = [track_id for fold in scores for track_id in fold.track_ids]
    track_true = np.concatenate([fold.labels for fold in scores])
    track_probabilities = np.concatenate([fold.track_probabilities for fold in scores])
    clip_true = np.concatenate([np.repeat(fold.labels, fold.clips_per_track) for fold in scores])
    clip_probabilities = np.concatenate([fold.clip_probabilities for fold in scores])
    return {
        "model": cell.model,
        "clip_seconds": cell.clip_seconds,
        "seed": cell.seed,
        "split": cell.split,
        "data_version": cell.data_version,
        "collection": cell.collection,
        "feature_id": cell.feature_config.identity(),
        "genres": cell.genres,
        "n_tracks": {
            "train": _mean_count(folds, "train"),
            "valid": _mean_count(folds, "valid"),
            "test": len(track_ids),
        },
        "metrics": {
            "track": classification_metrics(track_true, track_probabilities.argmax(axis=1), cell.genres),
            "clip": classification_metrics(clip_true, clip_probabilities.argmax(axis=1), cell.genres),
            "track_vote": classification_metrics(track_true, _votes(scores), cell.genres),
        },
        "track_predictions": _track_predictions(track_ids, track_true, track_probabilities, cell.genres),
        "params": scores[0].params,
        "size_bytes": model_file(fold_dir(model_dir, 0)).stat().st_size,
        "train_seconds": round(sum(fold["train_seconds"] for fold in folds), 3),
        "epochs_run": round(float(np.mean([fold["epochs_run"] for fold in folds]))),
        "history": folds[0]["history"],
        "predict_clips_per_second": round(len(clip_true) / max(sum(fold.model_seconds for fold in scores), 1e-9), 1),
        "model_dir": str(model_dir.resolve()),
        "clip_frames": cell.clip_frames,
        "settings": asdict(cell.settings),
        "excluded": cell.excluded,
        "folds": [_fold_summary(fold, score) for fold, score in zip(folds, scores, strict=True)],
    }


def _votes(scores: list[FoldScores]) -> np.ndarray:
    return np.concatenate([vote_per_track(fold.clip_probabilities, fold.clips_per_track) for fold in scores])


def _mean_count(folds: list[dict[str, Any]], part: str) -> int:
    return round(float(np.mean([len(fold[part]) for fold in folds])))


def _track_predictions(
    track_ids: list[str], true: np.ndarray, probabilities: np.ndarray, genres: list[str]
) -> list[dict[str, Any]]:
    rows = [
        {
            "track_id": track_id,
            "true": genres[true[i]],
            "predicted": genres[int(probabilities[i].argmax())],
            "probabilities": [round(float(p), 6) for p in probabilities[i]],
        }
        for i, track_id in enumerate(track_ids)
    ]
    return sorted(rows, key=lambda row: row["track_id"])


def _fold_summary(fold: dict[str, Any], score: FoldScores) -> dict[str, Any]:
    return {
        "fold": fold["fold"],
        "n_tracks": {part: len(fold[part]) for part in ("train", "valid", "test")},
        "epochs_run": fold["epochs_run"],
        "train_seconds": fold["train_seconds"],
        "track_accuracy": float(np.mean(score.track_probabilities.argmax(axis=1) == score.labels)),
    }
