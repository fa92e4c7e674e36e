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
DEFAULT_BATCH_SIZE = 32  # a model's clips per step unless its registry entry says otherwise
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_PATIENCE = 10  # epochs without a lower validation loss before training stops
DEFAULT_MEMORY_CAP_MB = 256.0  # what streaming clips out of the store may hold in memory
PRECISIONS = ("auto", "float32", "bfloat16")  # how a model may train (models/precision.py resolves "auto")
# A network's training budget: this many random crops of every training track per epoch, at every clip length
# (overlapping where a track holds fewer clips), so that an epoch is as many optimiser steps at 30 s as at 1 s.
# Six is what a 5 s epoch took when an epoch was "every clip of every track" (docs/benchmarks.md).
DEFAULT_CROPS_PER_TRACK = 6
AUGMENTATIONS = ("none", "specaugment", "mixup", "specaugment+mixup")  # per crop (tasks/training/augment.py)
# Weight averaging: each step moves the average 1% of the way to the weights, so it spans about the last 100 steps
# (Keras' own default).
WEIGHT_AVERAGE_MOMENTUM = 0.99
# The training settings a network's registry entry chooses where a run leaves them None (models/spec.py).
NETWORK_OWN = ("batch_size", "schedule", "early_stopping", "augment")
SCHEDULES = ("constant", "cosine")  # the learning rate over a training: as given, or one epoch's warm-up then cosine
# The split names tasks/training/splits.py's parse_split accepts; the run form checks a split against it.
SPLIT_PATTERN = r"^(stratified|paper|fault-filtered|kfold:([2-9]|[1-9][0-9]+))$"
# genreflow's own loggers (per-epoch training progress, extraction details) that Prefect should show in a run's
# logs: the value of PREFECT_LOGGING_EXTRA_LOGGERS for every process that runs the flow.
PREFECT_EXTRA_LOGGERS = "genreflow"


@dataclass(frozen=True)
class TrainingSettings:
    """How a cell trains, carried whole from a run's parameters to the trainer and into cell.json. Each epoch
    takes `crops_per_track` random crops of every training track (None: as many as the track holds clips).
    `precision` is what was asked ("auto" too) until a cell resolves it for its model and device; the settings
    left None (`NETWORK_OWN`) are each network's own, from its registry entry, until a cell resolves them."""

    epochs: int = DEFAULT_EPOCHS
    batch_size: int | None = None  # None: the model's own (its registry entry), resolved per cell
    learning_rate: float = DEFAULT_LEARNING_RATE
    patience: int = DEFAULT_PATIENCE
    crops_per_track: int | None = DEFAULT_CROPS_PER_TRACK
    memory_cap_mb: float = DEFAULT_MEMORY_CAP_MB
    precision: str = "auto"
    augment: str | None = None  # None: the network's own
    schedule: str | None = None  # None: the network's own
    # Stop after `patience` epochs without a lower validation loss and keep the best (None: the network's own).
    early_stopping: bool | None = None
    # Hold each fold's validation tracks out of a network's training (to choose its epoch, and draw its validation
    # curve); without early stopping nothing is chosen, and False trains on them too, as the array models do.
    hold_out_validation: bool = True
    label_smoothing: float = 0.0  # the share of each target spread evenly over the genres
    weight_decay: float = 0.0  # decoupled (AdamW) when above 0, per step, scaled by the learning rate
    # End on the moving average of the weights over the last steps (WEIGHT_AVERAGE_MOMENTUM per step) instead of
    # the last weights: without early stopping, as the validation loss chooses among raw weights.
    average_weights: bool = False

    def check(self) -> None:
        """Refuse settings that cannot train, naming the setting."""
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.learning_rate > 0 and self.memory_cap_mb > 0):
            raise ValueError(f"learning_rate and memory_cap_mb must be positive, got {self}")
        if not (0 <= self.label_smoothing < 1 and self.weight_decay >= 0):
            raise ValueError(
                f"label_smoothing must be in [0, 1) and weight_decay at least 0, got {self.label_smoothing} and "
                f"{self.weight_decay}"
            )
        if self.early_stopping:  # None (the network's own) is checked once resolved for a network
            if not self.hold_out_validation:
                raise ValueError(
                    "early stopping needs the validation tracks held out: switch it off to train on them too"
                )
            if self.average_weights:
                raise ValueError(
                    "averaging the weights needs early stopping off: early stopping keeps one epoch's weights"
                )
        if self.crops_per_track is not None and self.crops_per_track < 1:
            raise ValueError(f"crops_per_track must be at least 1 (or None), got {self.crops_per_track}")
        for name, allowed in (("precision", PRECISIONS), ("augment", AUGMENTATIONS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed and not (name in NETWORK_OWN and getattr(self, name) is None):
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


def cell_name(model: str, clip_seconds: float, seed: int) -> str:
    """One grid cell's name, for its task runs and its default model folder: `cnn-5s-seed0`."""
    return f"{model}-{clip_seconds:g}s-seed{seed}"


COMPRESSIONS = ("db", "log10")  # power_to_db (with top_db); musicnn's log10(10000 S + 1)


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes the features stored for it: a mel power spectrogram (librosa's conventions) compressed
    in dB, or as musicnn compresses it; optionally each patch of `patch_frames` frames then replaced by a
    pretrained network's embedding of it (`embedding`, `embedding_size` values per stored frame)."""

    sample_rate: int = 22_050
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = 512
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = 80.0
    dtype: str = "float16"
    compression: str = "db"
    embedding: str | None = None
    embedding_size: int = 0
    patch_frames: int = 1

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS or (self.embedding is None) != (self.embedding_size == 0):
            raise ValueError(f"inconsistent feature settings: {self.to_dict()}")

    @property
    def width(self) -> int:
        """Values per stored frame: mel bands, or the embedding's size."""
        return self.embedding_size if self.embedding else self.n_mels

    @property
    def frame_seconds(self) -> float:
        """The time one stored frame advances: a hop, or a whole patch."""
        return self.patch_frames * self.hop_length / self.sample_rate

    def frames_for(self, seconds: float) -> int:
        """Stored frames that cover `seconds` of audio: centred spectrogram frames (rounded, as librosa), or the
        whole patches that fit in it."""
        if self.patch_frames > 1:
            return int(seconds / self.frame_seconds + 1e-9)
        return int(round(seconds / self.frame_seconds))

    def seconds_for(self, frames: int) -> float:
        """How long `frames` stored frames of audio last."""
        return frames * self.frame_seconds

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown feature settings: {sorted(unknown)}")
        return cls(**values)

    def defining_settings(self) -> dict[str, Any]:
        """The settings that make this configuration what it is: all of them but those added later that sit at
        their defaults (a log-mel has no embedding, so it lists none of the embedding's settings)."""
        defaults = {field.name: field.default for field in dataclasses.fields(self) if field.name in LATER_FIELDS}
        return {name: value for name, value in self.to_dict().items() if defaults.get(name, object()) != value}

    def identity(self) -> str:
        """A short stable hash of the defining settings: equal configs share it, any change alters it, and a
        store's feature sets made before a setting was added keep their names."""
        canonical = json.dumps(self.defining_settings(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


LATER_FIELDS = ("compression", "embedding", "embedding_size", "patch_frames")
LOG_MEL = "log-mel"
MUSICNN = "musicnn"
# The feature sets a model may ask for (`ModelSpec.features`). musicnn's: its MSD network's 200-d embedding of
# every 3 s patch (187 frames) of its own front end (16 kHz, 96 Slaney bands, n_fft 512, hop 256, log10).
FEATURE_SETS: dict[str, FeatureConfig] = {
    LOG_MEL: FeatureConfig(),
    MUSICNN: FeatureConfig(
        sample_rate=16_000, n_mels=96, n_fft=512, hop_length=256, top_db=None, dtype="float32",
        compression="log10", embedding="musicnn-msd", embedding_size=200, patch_frames=187,
    ),
}  # fmt: skip
