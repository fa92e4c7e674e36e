"""One registry from model name to builder, and how a built model is saved and loaded.

A builder takes the clip shape (frames, mel bands) and the number of genres and returns either a Keras
model or a `BandStatisticsClassifier`; both answer `predict_on_batch(clips)` and `count_params()`, so the
training and evaluation code never asks which model it holds except to fit and to save it. Adding a model
is adding an entry to `MODELS` (the tests add one that way).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from models import baseline, cnn, crnn, rnn
from models.baseline import BandStatisticsClassifier

KERAS_FILE = "model.keras"
BASELINE_FILE = "model.joblib"


class Classifier(Protocol):
    """What evaluation and prediction need of any trained model."""

    def predict_on_batch(self, clips: np.ndarray) -> Any: ...

    def count_params(self) -> int: ...


Builder = Callable[[tuple[int, int], int], Any]
MODELS: dict[str, Builder] = {
    "baseline": baseline.build,
    "cnn": cnn.build,
    "rnn": rnn.build,
    "crnn": crnn.build,
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def build_model(name: str, input_shape: tuple[int, int], n_genres: int) -> Any:
    """The untrained model `name`; an unknown name is refused with the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name](input_shape, n_genres)


def is_keras(model: Any) -> bool:
    """Whether `model` trains with Keras (everything but the baseline)."""
    return not isinstance(model, BandStatisticsClassifier)


def save_model(model: Any, directory: Path) -> Path:
    """Save into `directory` under the file name of its kind; returns the file."""
    path = directory / (KERAS_FILE if is_keras(model) else BASELINE_FILE)
    model.save(path)
    return path


def model_file(directory: Path) -> Path:
    """The saved model inside `directory`, whichever kind it is."""
    for name in (KERAS_FILE, BASELINE_FILE):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory} holds no trained model ({KERAS_FILE} or {BASELINE_FILE})")


def load_model(directory: Path) -> Classifier:
    """The model saved in `directory` by `save_model`."""
    path = model_file(directory)
    if path.name == BASELINE_FILE:
        return BandStatisticsClassifier.load(path)
    return keras.models.load_model(path)
