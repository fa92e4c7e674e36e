"""One registry from model name to its builder, display name and shortest clip; how models are saved and loaded.

A builder takes the clip shape (frames, mel bands) and the number of genres and returns either a Keras
model or a `BandStatisticsClassifier`; both answer `predict_on_batch(clips)` and `count_params()`, so the
training and evaluation code never asks which model it holds except to fit and to save it. Adding a model
is adding an entry to `MODELS` (the tests add one that way); its order is the order reports list models in.
Builders are named, not imported: reading the registry (the command line's checks, `--help`) costs no
TensorFlow import, and a `ModelSpec` travels to another process as a few strings.

A model directory is data, never code: Keras files load in safe mode (no Lambda layers, no custom objects)
and the baseline is arrays in an `.npz` read without pickle. A `model.joblib` (a pickle, which runs code
when loaded) is refused before it is opened.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from genreflow.core import FEATURE_SETS, LOG_MEL, MUSICNN, FeatureConfig
from genreflow.models import import_tensorflow
from genreflow.models.baseline import BandStatisticsClassifier
from genreflow.models.musicnn import EmbeddingHead

KERAS_FILE = "model.keras"
PICKLE_FILES = ("model.joblib", "model.pkl", "model.pickle")


class Classifier(Protocol):
    """What evaluation and prediction need of any trained model."""

    def predict_on_batch(self, clips: np.ndarray) -> Any: ...

    def count_params(self) -> int: ...


Builder = Callable[[tuple[int, int], int], Any]


@dataclass(frozen=True)
class ModelSpec:
    """A model as the rest of genreflow knows it."""

    name: str
    builder: str  # "<module>:<function>"
    display_name: str
    min_frames: int  # the shortest clip it takes: its time pooling must leave at least one step
    features: str = LOG_MEL  # the feature set it trains on (genreflow.core.FEATURE_SETS)
    neural: bool = True  # a Keras network trained in epochs, or arrays fitted once by scikit-learn

    def __post_init__(self) -> None:
        if self.min_frames < 1 or ":" not in self.builder:
            raise ValueError(f"model {self.name}: min_frames must be >= 1 and builder '<module>:<function>'")

    @property
    def feature_config(self) -> FeatureConfig:
        """How the audio it takes is turned into features."""
        return FEATURE_SETS[self.features]

    @property
    def module(self) -> str:
        """The module that defines it: what a cell's cache key hashes as the model's own code."""
        return self.builder.partition(":")[0]

    def build(self, input_shape: tuple[int, int], n_genres: int) -> Any:
        """The untrained model for clips of `input_shape` (frames, mel bands)."""
        import_tensorflow()  # before the builder's module imports Keras
        function: Builder = getattr(importlib.import_module(self.module), self.builder.partition(":")[2])
        return function(input_shape, n_genres)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("baseline", "genreflow.models.baseline:build", "baseline", min_frames=1, neural=False),
        ModelSpec("cnn", "genreflow.models.cnn:build", "CNN", min_frames=8),  # three time pools of 2
        ModelSpec("rnn", "genreflow.models.rnn:build", "RNN", min_frames=1),
        ModelSpec("crnn", "genreflow.models.crnn:build", "CRNN", min_frames=16),  # four time pools of 2
        ModelSpec(
            "musicnn", "genreflow.models.musicnn:build", "musicnn (MSD)", min_frames=1, features=MUSICNN, neural=False
        ),
    )
}


def model_names() -> tuple[str, ...]:
    """Every registered model, in the registry's order."""
    return tuple(MODELS)


def spec(model: str | ModelSpec) -> ModelSpec:
    """The registry entry of a model named by `model` (or `model` itself); an unknown name is refused with the
    known ones. Work sent to another process carries the entry itself, so a model registered only where a run
    started (a test's, a user's) is built there too."""
    if isinstance(model, ModelSpec):
        return model
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    return MODELS[model]


def register(model: ModelSpec) -> None:
    """Add (or replace) a model: how a user, or a test, adds one."""
    MODELS[model.name] = model


def build_model(model: str | ModelSpec, input_shape: tuple[int, int], n_genres: int) -> Any:
    """The untrained model `model`."""
    return spec(model).build(input_shape, n_genres)


def check_clip(model: str | ModelSpec, clip_seconds: float, feature_config: FeatureConfig) -> int:
    """The clip's length in frames, once it is one `model` can take; a clear error otherwise."""
    if not (isinstance(clip_seconds, int | float) and math.isfinite(clip_seconds) and clip_seconds > 0):
        raise ValueError(f"a clip length must be a positive, finite number of seconds, got {clip_seconds}")
    frames, shortest = feature_config.frames_for(clip_seconds), spec(model).min_frames
    model = spec(model).name
    if frames < shortest:
        seconds = feature_config.seconds_for(shortest)
        raise ValueError(
            f"a {clip_seconds:g} s clip is {frames} frame(s); {model} needs at least {shortest} ({seconds:.2f} s)"
        )
    return frames


# Models kept as plain arrays (fitted once, no epochs), by the file they are saved in.
ARRAY_MODELS: dict[str, type[BandStatisticsClassifier]] = {
    kind.FILE_NAME: kind for kind in (BandStatisticsClassifier, EmbeddingHead)
}


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
    import_tensorflow()
    import keras  # deferred: the registry itself is read without TensorFlow

    return keras.models.load_model(path, safe_mode=True)
