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
