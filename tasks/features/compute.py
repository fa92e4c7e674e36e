"""The features a `FeatureConfig` describes, from decoded mono audio: what extraction stores and what `predict`
computes for a new file, so that the two can never differ.

A log-mel in dB (`log_mel`), musicnn's log10-compressed mel (`log10_compressed`), or, for a config with an
`embedding`, that network's embedding of every whole patch of the latter. Only the embedding loads TensorFlow,
and only in the process that computes one: log-mel extraction never imports it.
"""

from __future__ import annotations

import contextlib
from functools import cache
from typing import Any

import numpy as np

from genreflow.core import FeatureConfig
from genreflow.tasks.features.logmel import log_mel, mel_power, n_frames


def compute_features(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(frames, config.width) float32 features of `audio` (mono, at `config.sample_rate`)."""
    if config.compression == "db":
        spectrogram = log_mel(audio, config)
    else:
        spectrogram = log10_compressed(mel_power(audio, config))
    if config.embedding is None:
        return spectrogram
    return embedding_network(config.embedding).embed(spectrogram)


def log10_compressed(power: np.ndarray) -> np.ndarray:
    """musicnn's compression `log10(10000 S + 1)` of mel power S after the float16 round trip the network was
    trained with. The cast back to float32 comes first: under NumPy 2 `10000 * S` on float16 stays float16 and
    overflows to inf for S > 6.55."""
    power = power.astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000.0) * power + np.float32(1.0))


def too_short_for(audio: np.ndarray, config: FeatureConfig) -> str | None:
    """Why `audio` gives no features under `config` (shorter than one patch), or None."""
    if n_frames(audio.size, config) >= config.patch_frames:
        return None
    return f"shorter than one {config.seconds_for(1):.2f} s patch of {config.embedding}"


class _Network:
    """A pretrained network loaded once per process, with one TensorFlow thread per process (extraction runs a
    process per core)."""

    def __init__(self, model: Any, embed: Any) -> None:
        self.model, self._embed = model, embed

    def embed(self, spectrogram: np.ndarray) -> np.ndarray:
        return self._embed(self.model, spectrogram)


@cache
def embedding_network(name: str) -> _Network:
    """The network named by a feature config's `embedding`; its weights come from an installed package."""
    if name != "musicnn-msd":
        raise ValueError(f"unknown embedding network {name!r}")
    from genreflow.models import import_tensorflow

    tensorflow = import_tensorflow()
    if not tensorflow.config.threading.get_intra_op_parallelism_threads():
        with contextlib.suppress(RuntimeError):  # TensorFlow already running here: its pools stay as they are
            tensorflow.config.threading.set_intra_op_parallelism_threads(1)
            tensorflow.config.threading.set_inter_op_parallelism_threads(1)
    from genreflow.models.musicnn_net import embed, load_musicnn

    return _Network(load_musicnn(), embed)
