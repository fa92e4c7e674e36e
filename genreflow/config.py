"""The one feature-configuration object and the project's named defaults.

Everything that changes what a spectrogram looks like lives in `FeatureConfig`; its `identity()` hash is
written into the store and into every trained model, so features made with different settings can never
be mixed up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

DEFAULT_CLIP_SECONDS: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0)
DEFAULT_MODELS: tuple[str, ...] = ("baseline", "cnn", "rnn", "crnn")

# Our own loggers (per-epoch training progress, extraction details) whose records Prefect should show in a
# run's logs, beside its own: the value of PREFECT_LOGGING_EXTRA_LOGGERS for every process that runs the flow.
PREFECT_EXTRA_LOGGERS = "tasks,storage"
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".au", ".flac", ".ogg", ".mp3")


def cell_name(model: str, clip_seconds: float, seed: int) -> str:
    """One grid cell's name, for its folder and its Prefect task runs (docs/CONTRACTS.md): `cnn-5s-seed0`."""
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
