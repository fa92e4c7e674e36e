"""How a trained model is saved into a fold's folder and loaded back, whatever its kind.

A Keras network is a `model.keras` loaded in safe mode (no Lambda layers, no custom objects); the models fitted
once by scikit-learn (the baseline, musicnn's head) are arrays in an `.npz` read without pickle. A
`model.joblib` (a pickle, which runs code when loaded) is refused before it is opened. Both kinds answer
`predict_on_batch(clips)` and `count_params()`, so training and evaluation never ask which model they hold
except to fit and to save it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from genreflow.models import import_tensorflow
from genreflow.models.baseline import BandStatisticsClassifier
from genreflow.models.musicnn import EmbeddingHead

KERAS_FILE = "model.keras"
PICKLE_FILES = ("model.joblib", "model.pkl", "model.pickle")
# Models kept as plain arrays (fitted once, no epochs), by the file they are saved in.
ARRAY_MODELS: dict[str, type[BandStatisticsClassifier]] = {
    kind.FILE_NAME: kind for kind in (BandStatisticsClassifier, EmbeddingHead)
}


class ModelDirectoryError(ValueError):
    """A model directory whose files are missing, damaged or disagree with each other."""


def damaged(path: Path, problem: str) -> ModelDirectoryError:
    """The error for one file of a model directory: which file, what is wrong, and what to do."""
    return ModelDirectoryError(f"{path}: {problem}; the model directory is damaged: train the model again")


class Classifier(Protocol):
    """What evaluation and prediction need of any trained model."""

    def predict_on_batch(self, clips: np.ndarray) -> Any: ...

    def count_params(self) -> int: ...


def is_keras(model: Any) -> bool:
    """Whether `model` trains with Keras (everything but the array models: the baseline, musicnn's head)."""
    return not isinstance(model, BandStatisticsClassifier)


def save_model(model: Any, directory: Path) -> Path:
    """Save into `directory` under the file name of its kind; returns the file."""
    path = directory / (KERAS_FILE if is_keras(model) else model.FILE_NAME)
    model.save(path)
    return path


def model_file(directory: Path) -> Path:
    """The saved model inside `directory`, whichever kind it is; a pickle is refused unopened."""
    for name in (KERAS_FILE, *ARRAY_MODELS):
        if (directory / name).is_file():
            return directory / name
    pickles = [name for name in PICKLE_FILES if (directory / name).exists()]
    if pickles:
        raise ValueError(
            f"{directory / pickles[0]} is a pickle, which can run code when loaded: genreflow does not open it. "
            "Model directories hold data only; train the model again with this genreflow."
        )
    raise FileNotFoundError(f"{directory} holds no trained model ({' or '.join([KERAS_FILE, *ARRAY_MODELS])})")


def load_model(directory: Path) -> Classifier:
    """The model saved in `directory` by `save_model`, loaded as data (see the module's docstring)."""
    path = model_file(directory)
    if path.name in ARRAY_MODELS:
        return ARRAY_MODELS[path.name].load(path)
    if not zipfile.is_zipfile(path):
        raise damaged(path, f"not a complete .keras file (a zip archive; {path.stat().st_size} bytes, cut short?)")
    import_tensorflow()
    import keras  # deferred: reading a model directory's JSON needs no TensorFlow

    return keras.models.load_model(path, safe_mode=True)
