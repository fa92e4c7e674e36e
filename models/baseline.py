"""The non-neural reference: per-band mean and standard deviation of a clip's log-mel, logistic regression.

It sees each clip as 2 x n_mels numbers (no order in time), which is what "timbre on average" means; any
network that does not beat it has not learned anything that needs a network. Standardised features and a
multinomial logistic regression (L2, C=1) from scikit-learn.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

MAX_ITERATIONS = 2000


class BandStatisticsClassifier:
    """Clips (n, frames, mels) in, genre probabilities (n, n_genres) out; the same calls as a Keras model."""

    def __init__(self, n_genres: int) -> None:
        self.n_genres = n_genres
        self.pipeline: Pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITERATIONS))

    def fit_batches(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """Fit on a stream of (clips, labels) batches, keeping only their summaries in memory."""
        summaries, labels = [], []
        for clips, batch_labels in batches:
            summaries.append(band_summary(clips))
            labels.append(batch_labels)
        self.pipeline.fit(np.concatenate(summaries), np.concatenate(labels))

    def predict_on_batch(self, clips: np.ndarray) -> np.ndarray:
        """Probabilities for every genre, zero for a genre that training never saw."""
        probabilities = np.zeros((clips.shape[0], self.n_genres), dtype=np.float32)
        probabilities[:, self.pipeline.classes_] = self.pipeline.predict_proba(band_summary(clips))
        return probabilities

    def count_params(self) -> int:
        """Learned numbers: the regression's weights and intercepts plus the scaler's means and scales."""
        regression = self.pipeline[-1]
        scaler = self.pipeline[0]
        return int(regression.coef_.size + regression.intercept_.size + scaler.mean_.size + scaler.scale_.size)

    def save(self, path: Path) -> None:
        joblib.dump(self, path)

    @classmethod
    def load(cls, path: Path) -> BandStatisticsClassifier:
        model = joblib.load(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path} does not hold a {cls.__name__}")
        return model


def band_summary(clips: np.ndarray) -> np.ndarray:
    """Per clip, the mean and then the standard deviation of every mel band over time: (n, 2 * mels)."""
    return np.concatenate([clips.mean(axis=1), clips.std(axis=1)], axis=1)


def build(input_shape: tuple[int, int], n_genres: int) -> BandStatisticsClassifier:
    """The baseline; the clip shape does not change it (it summarises over time)."""
    return BandStatisticsClassifier(n_genres)
