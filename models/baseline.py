"""The non-neural reference: per-band mean and standard deviation of a clip's log-mel, logistic regression.

It sees each clip as 2 x n_mels numbers (no order in time), which is what "timbre on average" means; any
network that does not beat it has not learned anything that needs a network. Standardised features and a
multinomial logistic regression (L2, C=1) from scikit-learn, fitted once; what it learned is kept as plain
arrays (`baseline.npz`, read without pickle) and applied with numpy, so a model directory never runs code.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from genreflow.files import write_bytes

MAX_ITERATIONS = 2000
FILE_NAME = "baseline.npz"
ARRAYS = ("mean", "scale", "coef", "intercept", "classes", "n_genres")


@dataclass
class BandStatisticsClassifier:
    """Clips (n, frames, mels) in, genre probabilities (n, n_genres) out; the same calls as a Keras model.

    Before `fit_batches` it holds no weights; afterwards `mean`/`scale` standardise a clip's summary and
    `coef`/`intercept` (one row per class in `classes`, or one row for two classes) score it.
    """

    FILE_NAME: ClassVar[str] = FILE_NAME
    KIND: ClassVar[str] = "baseline"

    n_genres: int
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    classes: np.ndarray | None = None

    def fit_batches(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """Fit on a stream of (clips, labels) batches, keeping only their summaries in memory."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        summaries, labels = [], []
        for clips, batch_labels in batches:
            summaries.append(self.summarise(clips))
            labels.append(batch_labels)
        features, targets = np.concatenate(summaries), np.concatenate(labels)
        scaler = StandardScaler().fit(features)
        regression = LogisticRegression(max_iter=MAX_ITERATIONS).fit(scaler.transform(features), targets)
        self.mean, self.scale = scaler.mean_, scaler.scale_
        self.coef, self.intercept, self.classes = regression.coef_, regression.intercept_, regression.classes_

    def predict_on_batch(self, clips: np.ndarray) -> np.ndarray:
        """Probabilities for every genre, zero for a genre that training never saw."""
        scores = ((self.summarise(clips) - self.mean) / self.scale) @ self.coef.T + self.intercept
        probabilities = np.zeros((clips.shape[0], self.n_genres), dtype=np.float32)
        probabilities[:, self.classes] = _class_probabilities(scores)
        return probabilities

    def summarise(self, clips: np.ndarray) -> np.ndarray:
        """What the regression sees of each clip: its bands' means and standard deviations over time."""
        return band_summary(clips)

    def count_params(self) -> int:
        """Learned numbers: the regression's weights and intercepts plus the scaler's means and scales."""
        return int(self.coef.size + self.intercept.size + self.mean.size + self.scale.size)

    def save(self, path: Path) -> None:
        """Plain arrays, written whole (genreflow.files): a reader never sees half a file."""
        arrays = {name: np.asarray(getattr(self, name)) for name in ARRAYS}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read the arrays without pickle and check that they fit together; refuse anything else."""
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in ARRAYS}
        except (ValueError, KeyError, OSError) as error:
            raise ValueError(f"{path} is not a genreflow {cls.KIND} ({error})") from error
        model = cls(int(arrays.pop("n_genres")), **arrays)
        model.check(path)
        return model

    def check(self, path: Path) -> None:
        """Shapes and kinds that `predict_on_batch` relies on."""
        features = self.mean.shape[0] if self.mean.ndim == 1 else -1
        rows = self.coef.shape[0] if self.coef.ndim == 2 else -1
        consistent = (
            features > 0
            and self.scale.shape == self.mean.shape
            and self.coef.shape[1:] == (features,)
            and rows in (1, len(self.classes))
            and self.intercept.shape == (rows,)
            and np.issubdtype(self.classes.dtype, np.integer)
            and len(self.classes) >= 2
            and all(0 <= value < self.n_genres for value in self.classes)
            and all(
                np.issubdtype(array.dtype, np.floating) for array in (self.mean, self.scale, self.coef, self.intercept)
            )
        )
        if not consistent:
            raise ValueError(f"{path} is not a genreflow {self.KIND}: its arrays do not fit together")


def _class_probabilities(scores: np.ndarray) -> np.ndarray:
    """scikit-learn's predict_proba from decision scores: softmax over the classes, or for two classes
    the logistic of the one score."""
    if scores.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def band_summary(clips: np.ndarray) -> np.ndarray:
    """Per clip, the mean and then the standard deviation of every mel band over time: (n, 2 * mels)."""
    return np.concatenate([clips.mean(axis=1), clips.std(axis=1)], axis=1)


def build(input_shape: tuple[int, int], n_genres: int) -> BandStatisticsClassifier:
    """The baseline; the clip shape does not change it (it summarises over time)."""
    return BandStatisticsClassifier(n_genres)
