"""Running a trained classifier over clips, and a track's verdict from its clips: what evaluation (on the
store) and prediction (on audio files) share."""

from __future__ import annotations

import numpy as np

from genreflow.models.persistence import Classifier


def predict_clips(model: Classifier, clips: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax of `clips`, fed in batches of exactly `batch_size` (the last one padded with copies of the first
    clip and trimmed again), so that a Keras model compiles its predict function once, not per batch shape."""
    padding = -len(clips) % batch_size
    padded = np.concatenate([clips, np.repeat(clips[:1], padding, axis=0)]) if padding else clips
    starts = range(0, len(padded), batch_size)
    outputs = [model.predict_on_batch(padded[start : start + batch_size]) for start in starts]
    return np.concatenate([np.asarray(output, dtype=np.float64) for output in outputs])[: len(clips)]


def mean_per_track(clip_probabilities: np.ndarray, clips_per_track: np.ndarray) -> np.ndarray:
    """(tracks, genres): the mean softmax of each track's consecutive clips."""
    offsets = np.concatenate([[0], np.cumsum(clips_per_track)[:-1]])
    return np.add.reduceat(clip_probabilities, offsets, axis=0) / clips_per_track[:, None]


def vote_per_track(clip_probabilities: np.ndarray, clips_per_track: np.ndarray) -> np.ndarray:
    """(tracks,): the genre most of each track's consecutive clips predict, a tie going to the tied genre with
    the higher mean softmax (the other way to decide a track, reported beside the mean's)."""
    votes = np.zeros((len(clips_per_track), clip_probabilities.shape[1]))
    owners = np.repeat(np.arange(len(clips_per_track)), clips_per_track)
    np.add.at(votes, (owners, clip_probabilities.argmax(axis=1)), 1.0)
    tie_break = mean_per_track(clip_probabilities, clips_per_track) / (clips_per_track.max() + 1)
    return (votes + tie_break * (votes == votes.max(axis=1, keepdims=True))).argmax(axis=1)
