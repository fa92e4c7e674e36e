"""Decoding real files written by the test: every format GTZAN-like collections hold, and every bad case."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreflow.tasks.collection.sources import read_source
from genreflow.tasks.features.audio import AudioError, decode_audio
from genreflow.tasks.features.clips import SHORT_TOLERANCE_S


def load_audio(path: str, rate: int, min_seconds: float = 0.0) -> np.ndarray:
    """What extraction does with a file: read its bytes once, then decode and check them."""
    return decode_audio(read_source(path), path, rate, min_seconds)


RATE = 22_050


def tone(seconds: float, rate: int, frequency: float = 440.0, channels: int = 1) -> np.ndarray:
    """A sine at half scale; each channel at a different level so a downmix is visible."""
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * frequency * t)
    return np.stack([mono * (1.0 - 0.5 * c) for c in range(channels)], axis=1).astype(np.float32)


def dominant_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(audio.size, 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("name", "rate", "channels", "subtype", "quantum"),
    [
        ("pcm16.wav", RATE, 1, "PCM_16", 2**-15),
        ("pcm8.wav", RATE, 1, "PCM_U8", 2**-7),
        ("pcm24.wav", RATE, 1, "PCM_24", 2**-23),
        ("float.wav", RATE, 1, "FLOAT", 1e-7),
        ("gtzan.au", RATE, 1, "PCM_16", 2**-15),
        ("lossless.flac", RATE, 1, "PCM_16", 2**-15),
        ("stereo.wav", RATE, 2, "PCM_16", 2**-15),
    ],
)
def test_decodes_every_width_and_container_at_the_native_rate(tmp_path, name, rate, channels, subtype, quantum):
    written = tone(2.0, rate, channels=channels)
    sf.write(tmp_path / name, written, rate, subtype=subtype)
    audio = load_audio(str(tmp_path / name), RATE)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size == written.shape[0]
    np.testing.assert_allclose(audio, written.mean(axis=1), atol=2 * quantum)


@pytest.mark.parametrize("name", ["pcm16.wav", "gtzan.au", "lossless.flac", "stereo.wav"])
def test_16_bit_samples_are_exactly_libsndfiles_own_float_conversion(tmp_path, name):
    """16-bit files take a faster path (int16 scaled by numpy); it must not change a single sample."""
    noise = np.random.default_rng(7).uniform(-1.0, 1.0, (RATE, 2 if name.startswith("stereo") else 1))
    sf.write(tmp_path / name, noise, RATE, subtype="PCM_16")
    expected = sf.read(tmp_path / name, dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    np.testing.assert_array_equal(load_audio(str(tmp_path / name), RATE), expected)


@pytest.mark.parametrize("rate", [44_100, 48_000])
def test_stereo_at_other_rates_is_downmixed_and_resampled_like_librosa(tmp_path, rate):
    import librosa

    path = tmp_path / f"stereo{rate}.wav"
    sf.write(path, tone(3.0, rate, frequency=1000.0, channels=2), rate, subtype="PCM_24")
    audio = load_audio(str(path), RATE)
    assert audio.size == pytest.approx(3.0 * RATE, abs=1)
    assert dominant_frequency(audio, RATE) == pytest.approx(1000.0, abs=1.0)
    np.testing.assert_allclose(audio, librosa.load(path, sr=RATE)[0], atol=1e-5)


def test_mp3_decodes_through_libsndfile(tmp_path):
    path = tmp_path / "lossy.mp3"
    sf.write(path, tone(2.0, RATE, frequency=660.0), RATE, format="MP3", subtype="MPEG_LAYER_III")
    audio = load_audio(str(path), RATE)
    assert audio.size == pytest.approx(2.0 * RATE, rel=0.05)
    assert dominant_frequency(audio, RATE) == pytest.approx(660.0, abs=2.0)


def test_a_track_just_under_the_clip_length_is_kept_within_the_tolerance(tmp_path):
    path = tmp_path / "gtzan-length.wav"
    sf.write(path, tone(30.0 - SHORT_TOLERANCE_S / 2, RATE), RATE)
    assert load_audio(str(path), RATE, min_seconds=30.0).size > 0


# ---- bad input: each raises AudioError naming the file and the problem --------------------------------------
def write_wav_cut_short(path: Path) -> None:
    sf.write(path, tone(2.0, RATE), RATE, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + RATE])  # header + half a second of the two


def write_au_cut_short(path: Path) -> None:
    sf.write(path, tone(2.0, RATE), RATE, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:-RATE])


def write_flac_with_garbage(path: Path) -> None:
    sf.write(path, tone(2.0, RATE), RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[300:4000] = np.random.default_rng(0).integers(0, 256, 3700, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


BAD_FILES = {
    "empty.wav": (lambda path: path.write_bytes(b""), "empty file"),
    "text.wav": (
        lambda path: path.write_text("these are not the samples you are looking for\n" * 20),
        "not an audio file",
    ),
    "cut.wav": (write_wav_cut_short, "truncated"),
    "cut.au": (write_au_cut_short, "truncated"),
    "garbage.flac": (write_flac_with_garbage, "corrupt"),
    "silence.wav": (lambda path: sf.write(path, np.zeros(5 * RATE, np.float32), RATE), "silent"),
    "hiss.wav": (lambda path: sf.write(path, tone(5.0, RATE) * 1e-4, RATE), "silent"),
    "short.wav": (lambda path: sf.write(path, tone(10.0, RATE), RATE), "too short: 10.00 s"),
    "nan.wav": (lambda path: sf.write(path, np.full(RATE, np.nan, np.float32), RATE, subtype="FLOAT"), "NaN"),
    "header-only.wav": (lambda path: sf.write(path, np.zeros((0, 1), np.float32), RATE), "0 frames"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_a_clear_error_naming_the_file(tmp_path, name):
    write, problem = BAD_FILES[name]
    path = tmp_path / name
    write(path)
    with pytest.raises(AudioError, match=problem) as caught:
        load_audio(str(path), RATE, min_seconds=30.0)
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_the_error_survives_pickling_between_processes():
    error = pickle.loads(pickle.dumps(AudioError("/music/a.wav", "silent")))
    assert (error.path, error.reason, str(error)) == ("/music/a.wav", "silent", "/music/a.wav: silent")
