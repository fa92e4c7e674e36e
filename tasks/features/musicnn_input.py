"""The input musicnn's MSD model was trained on: a compressed 96-band mel spectrogram of 16 kHz mono audio.

Mel power spectrogram (n_fft 512, hop 256, 96 Slaney bands, power 2, centred frames), laid out (frames, mels),
compressed as `log10(10000 * S + 1)` after a float16 round trip of S, as musicnn 0.1.0 did: the settings of the
`musicnn` feature set without its embedding step, computed by the same code that extraction uses. No
TensorFlow here.
"""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np

from genreflow.core import FEATURE_SETS, MUSICNN
from genreflow.tasks.features.compute import compute_features

MUSICNN_INPUT = dataclasses.replace(FEATURE_SETS[MUSICNN], embedding=None, embedding_size=0, patch_frames=1)
SAMPLE_RATE = MUSICNN_INPUT.sample_rate
N_FFT = MUSICNN_INPUT.n_fft
HOP = MUSICNN_INPUT.hop_length
N_MELS = MUSICNN_INPUT.n_mels


def musicnn_spectrogram(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(frames, 96) float32 input for `genreflow.models.musicnn_net` from mono `audio`.

    Audio at another rate is resampled to 16 kHz with librosa's default resampler (soxr_hq, what
    `librosa.load(sr=16000)` uses), so that a track loaded either way gives the same values.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"musicnn takes mono audio, a 1-D array; got shape {audio.shape}")
    if sample_rate != SAMPLE_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    return compute_features(audio, MUSICNN_INPUT)
