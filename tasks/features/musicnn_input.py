"""The input musicnn's MSD model was trained on: a compressed 96-band mel spectrogram of 16 kHz mono audio.

Mel power spectrogram (n_fft 512, hop 256, 96 Slaney bands, power 2, centred frames), laid out (frames, mels),
compressed as `log10(10000 * S + 1)` after a float16 round trip of S, as musicnn 0.1.0 did. The round trip
is kept because the network saw those values; the float32 cast after it is not optional: under NumPy 2
(NEP 50) `10000 * S` on a float16 array stays float16 and overflows to inf for S > 6.55 (0.5-3 % of GTZAN
bins), which drops a downstream classifier to chance. No TensorFlow here: this runs on Dask workers that never
load the network.
"""

from __future__ import annotations

import librosa
import numpy as np

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96


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
    power = librosa.feature.melspectrogram(
        y=audio,
        sr=SAMPLE_RATE,
        n_fft=N_FFT,
        hop_length=HOP,
        n_mels=N_MELS,
        power=2.0,
        center=True,
        htk=False,
        norm="slaney",
    )
    # The float16 round trip is part of the trained input; the cast back keeps 10000 * S from overflowing.
    power = power.T.astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000.0) * power + np.float32(1.0)).astype(np.float32)
