"""What genreflow knows of a model (`ModelSpec`): its builder, the features it takes and the shortest clip it
can take. The registry (`genreflow.models.registry`) is a table of these; this module is the code that reads
one, and so belongs to every cell's code version, while the table itself is hashed entry by entry
(flows/cache_keys.py).

Builders are named, not imported: reading a spec (the command line's checks, `--help`) costs no TensorFlow
import, and a `ModelSpec` travels to another process as a few strings.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from genreflow.core import DEFAULT_BATCH_SIZE, FEATURE_SETS, LOG_MEL, NETWORK_OWN, FeatureConfig, TrainingSettings
from genreflow.models import import_tensorflow

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
    # Its own training settings (genreflow.core.NETWORK_OWN), where a run leaves them to the model: clips per
    # step, the learning rate's schedule, whether training stops early on the validation loss, and what training
    # does to each crop.
    batch_size: int = DEFAULT_BATCH_SIZE
    schedule: str = "constant"
    early_stopping: bool = True
    augment: str = "none"

    def __post_init__(self) -> None:
        if self.min_frames < 1 or ":" not in self.builder:
            raise ValueError(f"model {self.name}: min_frames must be >= 1 and builder '<module>:<function>'")
        self.checked_settings(TrainingSettings())  # its own settings, as a run that leaves them open trains

    def own_settings(self, settings: TrainingSettings) -> TrainingSettings:
        """`settings` with what the run left to the model (None) set to this model's own."""
        left_open = [name for name in NETWORK_OWN if getattr(settings, name) is None]
        return replace(settings, **{name: getattr(self, name) for name in left_open})

    def checked_settings(self, settings: TrainingSettings) -> TrainingSettings:
        """`own_settings(settings)` once `TrainingSettings.check` accepts them; a refusal names this model."""
        own = self.own_settings(settings)
        try:
            own.check()
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None
        return own

    @property
    def feature_config(self) -> FeatureConfig:
        """How the audio it takes is turned into features."""
        return FEATURE_SETS[self.features]

    @property
    def module(self) -> str:
        """The module that defines it: the root of its own code in a cell's code version."""
        return self.builder.partition(":")[0]

    def build(self, input_shape: tuple[int, int], n_genres: int) -> Any:
        """The untrained model for clips of `input_shape` (frames, mel bands)."""
        import_tensorflow()  # before the builder's module imports Keras
        function: Builder = getattr(importlib.import_module(self.module), self.builder.partition(":")[2])
        return function(input_shape, n_genres)

    def clip_frames(self, clip_seconds: float, feature_config: FeatureConfig | None = None) -> int:
        """The clip's length in frames of `feature_config` (its own by default), once it is one this model can
        take; a ValueError that says why otherwise."""
        if not (isinstance(clip_seconds, int | float) and math.isfinite(clip_seconds) and clip_seconds > 0):
            raise ValueError(f"a clip length must be a positive, finite number of seconds, got {clip_seconds}")
        config = feature_config or self.feature_config
        frames = config.frames_for(clip_seconds)
        if frames < self.min_frames:
            seconds = config.seconds_for(self.min_frames)
            raise ValueError(
                f"a {clip_seconds:g} s clip is {frames} frame(s); {self.name} needs at least {self.min_frames} "
                f"({seconds:.2f} s)"
            )
        return frames

    def clip_problem(self, clip_seconds: float) -> str | None:
        """Why this model cannot take clips of `clip_seconds` on its own feature set, or None: what the checks
        before a run and the grid's skipped cells report."""
        try:
            self.clip_frames(clip_seconds)
        except ValueError as error:
            return str(error)
        return None
