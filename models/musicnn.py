"""The pretrained reference: musicnn's MSD network (frozen) and a logistic-regression head on its embeddings.

It trains on the `musicnn` feature set, where every 3 s patch of a track is already the network's 200-d
embedding (computed once per track at extraction, `genreflow.tasks.features.compute`). A clip is the whole
patches it holds (a 5 s clip one patch, 30 s ten); the head averages their embeddings, standardises them and
applies a multinomial logistic regression (L2, C=1), as Pons & Serra's embedding + linear classifier setups
did. Clips shorter than one patch (1 s) are refused: the network never saw less than 3 s. What it learns is
plain arrays (`musicnn-head.npz`, read without pickle), like the baseline's.
"""

from __future__ import annotations

import numpy as np

from genreflow.models.baseline import BandStatisticsClassifier

FILE_NAME = "musicnn-head.npz"


class EmbeddingHead(BandStatisticsClassifier):
    """Clips of embeddings (n, patches, 200) in, genre probabilities out; the baseline's calls and format."""

    FILE_NAME = FILE_NAME
    KIND = "musicnn head"

    def summarise(self, clips: np.ndarray) -> np.ndarray:
        """The mean embedding of each clip's patches."""
        return clips.mean(axis=1)


def build(input_shape: tuple[int, int], n_genres: int) -> EmbeddingHead:
    """The head; the clip's number of patches does not change it."""
    return EmbeddingHead(n_genres)
