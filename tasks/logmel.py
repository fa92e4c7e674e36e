"""Log-mel spectrograms, numerically librosa's, about twice as fast.

`log_mel(audio, config)` equals `librosa.power_to_db(librosa.feature.melspectrogram(y=audio, sr, n_fft,
hop_length, n_mels, fmin, fmax, power=2, center=True, pad_mode="constant"), ref=1.0, amin=1e-10,
top_db=config.top_db).T` to within float32 rounding. It is faster because it frames the padded signal as
a strided view, runs a float32 real FFT over blocks of frames at once, and applies the mel filter bank
(about 2 non-zeros per FFT bin) as a sparse matrix instead of a dense 128 x 1025 product. The filter bank
is laid out over the spectrum's interleaved (real, imaginary) floats, so squaring them in place and one
sparse product give the mel power without forming |X|^2.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse

from genreflow.config import FeatureConfig

AMIN = 1e-10  # librosa's floor under the power before the log
DB_PER_NATURAL_LOG = float(10.0 / np.log(10.0))  # 10 log10(x) = this * ln(x); numpy's float32 ln is SIMD, log10 not
# 64 frames of 2,048 float32 samples is 512 KiB per block, so a block and its spectrum stay in cache.
# Measured here (one core, a 30 s track): 15.4 ms at 64 frames, 16.6 ms at 128, 18.9 ms at 256.
BLOCK_FRAMES = 64


def log_mel(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The log-mel spectrogram in dB, shaped (frames, n_mels): the store's layout, time first."""
    return power_to_db(mel_power(audio, config), config.top_db)


def n_frames(n_samples: int, config: FeatureConfig) -> int:
    """How many centred frames librosa makes from `n_samples` samples."""
    return 1 + n_samples // config.hop_length


def mel_power(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Mel-band power (frames, n_mels), float32, from mono audio."""
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"log-mel needs non-empty mono audio, got shape {audio.shape}")
    half = config.n_fft // 2
    padded = np.pad(np.asarray(audio, dtype=np.float32), (half, half))
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft)[:: config.hop_length]
    window = _window(config.n_fft)
    filters = _mel_filters_by_float(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    power = np.empty((frames.shape[0], config.n_mels), dtype=np.float32)
    for start in range(0, frames.shape[0], BLOCK_FRAMES):
        spectrum = scipy.fft.rfft(frames[start : start + BLOCK_FRAMES] * window, axis=-1, overwrite_x=True)
        squares = spectrum.view(np.float32)  # real and imaginary parts, interleaved
        np.square(squares, out=squares)
        power[start : start + BLOCK_FRAMES] = (filters @ squares.T).T
    return power


def power_to_db(power: np.ndarray, top_db: float | None) -> np.ndarray:
    """librosa's `power_to_db` with ref=1.0 and amin=1e-10: dB, floored `top_db` below the loudest value."""
    decibels = DB_PER_NATURAL_LOG * np.log(np.maximum(power, np.float32(AMIN)))
    if top_db is not None:
        np.maximum(decibels, decibels.max() - top_db, out=decibels)
    return decibels.astype(np.float32, copy=False)


@lru_cache(maxsize=4)
def _window(n_fft: int) -> np.ndarray:
    """The periodic Hann window librosa's STFT uses."""
    return scipy.signal.get_window("hann", n_fft, fftbins=True).astype(np.float32)


@lru_cache(maxsize=4)
def _mel_filters_by_float(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> scipy.sparse.csr_matrix:
    """librosa's Slaney mel filter bank, (mel bands, 2 x FFT bins), each bin's weight on its real and its
    imaginary float, stored sparse."""
    import librosa  # deferred: only the filter bank needs it, and it is slow to import

    filters = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return scipy.sparse.csr_matrix(np.repeat(filters.astype(np.float32), 2, axis=1))
