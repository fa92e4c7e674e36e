"""The core every part agrees on: how audio becomes features (`FeatureConfig`) and the defaults of a run.

Imports nothing of the project, so that anything may import it and changing the rest never changes it.
`FeatureConfig.identity()` is written into the store and into every trained model, so features made with
different settings can never be mixed up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

DEFAULT_CLIP_SECONDS: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0)  # the paper's
DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_PATIENCE = 10  # epochs without a lower validation loss before training stops
DEFAULT_MEMORY_CAP_MB = 256.0  # what streaming clips out of the store may hold in memory
# genreflow's own loggers (per-epoch training progress, extraction details) that Prefect should show in a run's
# logs: the value of PREFECT_LOGGING_EXTRA_LOGGERS for every process that runs the flow.
PREFECT_EXTRA_LOGGERS = "genreflow"


def cell_name(model: str, clip_seconds: float, seed: int) -> str:
    """One grid cell's name, for its task runs and its default model folder: `cnn-5s-seed0`."""
    return f"{model}-{clip_seconds:g}s-seed{seed}"


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes a log-mel spectrogram (librosa's conventions: power mel, `power_to_db`)."""

    sample_rate: int = 22_050
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = 512
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = 80.0
    dtype: str = "float16"

    def frames_for(self, seconds: float) -> int:
        """Number of spectrogram frames that cover `seconds` of audio (centred frames, as librosa)."""
        return int(round(seconds * self.sample_rate / self.hop_length))

    def seconds_for(self, frames: int) -> float:
        """How long `frames` frames of audio last."""
        return frames * self.hop_length / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown feature settings: {sorted(unknown)}")
        return cls(**values)

    def identity(self) -> str:
        """A short stable hash of the settings: equal configs share it, any change alters it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
