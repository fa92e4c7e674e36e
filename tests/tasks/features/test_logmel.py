"""The fast log-mel equals librosa's, pinned by a stored regression fixture and checked on real music.

Tolerance: 0.01 dB (max abs) against librosa; measured here 0.0004 dB worst over all 70 gtzan-mini tracks
(float32 FFT rounding in a different order). Without the 80 dB floor, values more than 100 dB below the
peak are beyond what float32 FFTs resolve alike, so both sides are floored there before comparing. Regenerate
the fixture, after a deliberate change only, with
`python tests/tasks/features/test_logmel.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreflow.core import FeatureConfig
from genreflow.tasks.features.logmel import log_mel, n_frames
from tests.support.paths import FIXTURES

FIXTURE = FIXTURES / "logmel" / "chirp_chord_clicks.npz"
TOLERANCE_DB = 0.01
FLOAT32_RANGE_DB = 100.0
REAL_TRACKS = ("blues/blues.00000.wav", "classical/classical.00001.wav", "metal/metal.00002.wav")


def reference_signal(sample_rate: int = 22_050, seconds: float = 1.5) -> np.ndarray:
    """Closed-form audio (no random generator): a chirp, a chord, clicks and a silent gap for the dB floor."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + (8000 - 100) / (2 * seconds) * t**2))
    chord = sum(0.1 / k * np.sin(2 * np.pi * 220 * k * t) for k in (1, 2, 3, 5))
    clicks = np.where(np.arange(t.size) % (sample_rate // 4) < 32, 0.8, 0.0)
    signal = chirp + chord + clicks
    signal[int(0.6 * sample_rate) : int(0.8 * sample_rate)] = 0.0
    return signal.astype(np.float32)


def librosa_log_mel(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    import librosa

    power = librosa.feature.melspectrogram(
        y=audio,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        power=2.0,
        center=True,
        pad_mode="constant",
    )
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=config.top_db).T


def assert_matches(ours: np.ndarray, expected: np.ndarray) -> None:
    floor = expected.max() - FLOAT32_RANGE_DB
    np.testing.assert_allclose(np.maximum(ours, floor), np.maximum(expected, floor), atol=TOLERANCE_DB, rtol=0)


def test_matches_the_stored_regression_fixture():
    stored = np.load(FIXTURE)
    config = FeatureConfig.from_dict(json.loads(str(stored["config"])))
    assert_matches(log_mel(reference_signal(), config), stored["log_mel"])


@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig(),
        FeatureConfig(n_mels=64, fmin=50.0, fmax=8000.0, top_db=None),
        FeatureConfig(sample_rate=16_000, n_fft=1024, hop_length=256, n_mels=40),
    ],
    ids=["default", "band-limited-no-floor", "16k-small-fft"],
)
@pytest.mark.parametrize("n_samples", [1, 511, 512, 2048, 33_333])
@pytest.mark.filterwarnings("ignore:n_fft=.*is too large")
def test_matches_librosa_for_any_length_and_setting(config: FeatureConfig, n_samples: int):
    audio = np.resize(reference_signal(config.sample_rate), n_samples)
    expected = librosa_log_mel(audio, config)
    ours = log_mel(audio, config)
    assert ours.shape == expected.shape == (n_frames(n_samples, config), config.n_mels)
    assert_matches(ours, expected)


def test_a_track_longer_than_one_block_is_stitched_seamlessly():
    config = FeatureConfig()
    audio = np.tile(reference_signal(), 25)  # 37.5 s, 1,616 frames: many FFT blocks, padded ones at both ends
    assert_matches(log_mel(audio, config), librosa_log_mel(audio, config))


@pytest.mark.filterwarnings("ignore:Empty filters detected")
def test_mel_bands_without_fft_bins_match_librosa():
    """A 256-point FFT leaves 20 of 128 mel bands with no bin (librosa warns); they must still come out as
    librosa's: zero power, the amin floor in dB."""
    import librosa

    config = FeatureConfig(n_fft=256, hop_length=64, n_mels=128, top_db=None)
    filters = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels)
    empty = ~filters.any(axis=1)
    assert empty.sum() == 20
    audio = reference_signal(config.sample_rate)
    ours = log_mel(audio, config)
    assert_matches(ours, librosa_log_mel(audio, config))
    np.testing.assert_allclose(ours[:, empty], -100.0, atol=1e-3)  # 10 log10(amin)


def test_matches_librosa_on_real_music(gtzan_mini: Path):
    config = FeatureConfig()
    for track in REAL_TRACKS:
        audio, rate = sf.read(gtzan_mini / track, dtype="float32")
        assert rate == config.sample_rate
        assert_matches(log_mel(audio, config), librosa_log_mel(audio, config))


@pytest.mark.parametrize("audio", [np.zeros(0, np.float32), np.zeros((100, 2), np.float32)], ids=["empty", "stereo"])
def test_refuses_audio_that_is_not_non_empty_mono(audio: np.ndarray):
    with pytest.raises(ValueError, match="non-empty mono"):
        log_mel(audio, FeatureConfig())


def regenerate_fixture() -> None:
    """Write the fixture from librosa itself, so it pins librosa's numbers rather than ours."""
    config = FeatureConfig()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    expected = librosa_log_mel(reference_signal(), config).astype(np.float32)
    np.savez_compressed(FIXTURE, log_mel=expected, config=np.array(json.dumps(config.to_dict())))


if __name__ == "__main__":
    regenerate_fixture()
    sys.exit(0)
