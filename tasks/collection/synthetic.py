"""A seeded synthetic music collection, written as real WAV files so it goes through the same decode path.

Each genre is a *style*: ranges for tempo, percussive onset density, swing, drum brightness, how tonal or
noisy the track is, note rate, register, timbre and spectral tilt. Every track draws its own values from
its genre's ranges. The genres differ both in what a single frame shows (register, drum band, timbre, noise
colour) and in how frames follow each other (tempo, swing, note rate): the ranges do not overlap, so that
every model, frame-wise or temporal, can learn them from a few dozen tracks in a short training, and the
demo shows what a working grid looks like. Real music is far harder. Per-track loudness is random, so level
alone tells nothing.

Layout: `<root>/<genre>/<genre>.NNNNN.wav` (GTZAN's), plus a hidden manifest written last; a rerun with the same
parameters finds the manifest and writes nothing (so file mtimes, and hence the feature store's skip
decisions, stay put).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft
import soundfile as sf

from genreflow.files import write_bytes, written_whole

SYNTHETIC_SAMPLE_RATE = 22_050
MANIFEST_NAME = ".synthetic-manifest.json"  # hidden: a scan passes over it quietly
# Bump when the sound of the generator changes: an old collection is then refused, not silently mixed.
GENERATOR_VERSION = 3
Range = tuple[float, float]


@dataclass(frozen=True)
class GenreStyle:
    """The ranges one genre's tracks draw their musical properties from."""

    tempo_bpm: Range
    kick_per_beat: Range  # probability of a kick drum on each beat
    hits_per_slot: Range  # probability of a noise hit (snare, hat) on each sixteenth
    swing: Range  # delay of off-beat sixteenths, as a fraction of a sixteenth
    hit_centre_hz: Range  # where the noise hits' energy sits
    hit_decay_s: Range
    tonal_level: Range
    notes_per_beat: Range
    lowest_midi: Range
    harmonic_rolloff: Range  # harmonic k has amplitude k**-rolloff: low = bright, buzzy timbre
    note_decay_s: Range
    voices: Range  # notes sounding together (1 = melody, 3 = triads)
    noise_level: Range
    noise_tilt_db_per_octave: Range


GENRE_STYLES: dict[str, GenreStyle] = {
    # tempo, kick, hits, swing, hit centre, hit decay, tonal, notes/beat, lowest MIDI, rolloff, note decay,
    # voices, noise level, noise tilt
    "ambient": GenreStyle(
        (60, 72), (0, 0.1), (0, 0.05), (0, 0.1), (1500, 2500), (0.1, 0.3), (0.7, 0.9),
        (0.25, 0.4), (60, 64), (2.2, 2.6), (1.5, 3.0), (3, 3), (0.3, 0.5), (-8, -6),
    ),
    "beats": GenreStyle(
        (80, 92), (0.8, 1.0), (0.3, 0.5), (0.25, 0.35), (2500, 3500), (0.05, 0.1), (0.3, 0.5),
        (0.5, 0.8), (30, 34), (1.0, 1.4), (0.3, 0.6), (1, 1), (0.05, 0.15), (-5, -3),
    ),
    "chamber": GenreStyle(
        (96, 108), (0, 0.05), (0, 0.03), (0, 0.05), (1000, 1500), (0.05, 0.1), (0.9, 1.0),
        (2, 3), (66, 70), (1.2, 1.6), (0.4, 0.8), (2, 2), (0, 0.05), (-4, -2),
    ),
    "dance": GenreStyle(
        (124, 130), (1, 1), (0.6, 0.8), (0, 0.05), (7000, 9000), (0.03, 0.06), (0.4, 0.6),
        (1, 1.5), (40, 44), (0.6, 0.9), (0.1, 0.2), (1, 2), (0.1, 0.2), (-2, 0),
    ),
    "industrial": GenreStyle(
        (150, 170), (0.6, 0.9), (0.85, 1.0), (0, 0.02), (4000, 6000), (0.08, 0.15), (0.2, 0.4),
        (3, 4), (48, 52), (0.3, 0.5), (0.05, 0.15), (2, 3), (0.6, 0.8), (0, 2),
    ),
    "swing": GenreStyle(
        (170, 190), (0.2, 0.4), (0.5, 0.7), (0.45, 0.55), (9000, 10500), (0.2, 0.35), (0.6, 0.8),
        (1.5, 2), (54, 58), (1.6, 2.0), (0.3, 0.6), (1, 2), (0.05, 0.1), (-6, -4),
    ),
}  # fmt: skip
GENRES: tuple[str, ...] = tuple(sorted(GENRE_STYLES))
PENTATONIC = np.array([0, 2, 4, 7, 9])
CHORD_INTERVALS = np.array([0, 7, 4])  # root, fifth, third: the voices added in that order
RMS_DBFS_RANGE: Range = (-26.0, -14.0)
MAX_HARMONICS = 10
WAVETABLE_SIZE = 8192  # phase steps per cycle: the 10th harmonic's phase error stays below 0.008 rad


def write_synthetic_collection(
    root: str | os.PathLike[str], tracks_per_genre: int = 20, seed: int = 0, seconds: float = 30.0
) -> Path:
    """Write the collection under `root` unless its manifest says it is there already; returns `root`.

    A folder holding a collection made with other parameters is refused rather than mixed.
    """
    if tracks_per_genre < 1:
        raise ValueError(f"tracks_per_genre must be at least 1, got {tracks_per_genre}")
    root = Path(root)
    identity = _collection_identity(tracks_per_genre, seed, seconds)
    if _manifest_matches(root, identity):
        return root
    paths = [
        _write_wav(root / genre / f"{genre}.{index:05d}.wav", synthesize_track(genre, seed, index, seconds))
        for genre in GENRES
        for index in range(tracks_per_genre)
    ]
    manifest = {**identity, "files": [path.relative_to(root).as_posix() for path in paths]}
    write_bytes(root / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
    return root


def synthesize_track(genre: str, seed: int, index: int, seconds: float = 30.0) -> np.ndarray:
    """One track of `genre` as float32 mono at `SYNTHETIC_SAMPLE_RATE`; the same arguments give the same audio."""
    if genre not in GENRE_STYLES:
        raise ValueError(f"unknown synthetic genre {genre!r}; known: {', '.join(GENRES)}")
    rng = np.random.default_rng([seed, GENRES.index(genre), index])
    style = GENRE_STYLES[genre]
    n_samples = int(round(seconds * SYNTHETIC_SAMPLE_RATE))
    beat_s = 60.0 / _draw(rng, style.tempo_bpm)
    mix = (
        _percussion(rng, style, beat_s, n_samples)
        + _draw(rng, style.tonal_level) * _melody(rng, style, beat_s, n_samples)
        + _draw(rng, style.noise_level) * _coloured_noise(rng, _draw(rng, style.noise_tilt_db_per_octave), n_samples)
    )
    return _at_random_loudness(rng, mix)


# ---- layers ------------------------------------------------------------------------------------------
def _percussion(rng: np.random.Generator, style: GenreStyle, beat_s: float, n_samples: int) -> np.ndarray:
    """Kicks on beats and noise hits on (possibly swung) sixteenths, each an impulse train times a drum sound."""
    sixteenth = beat_s / 4
    slots = np.arange(int(n_samples / SYNTHETIC_SAMPLE_RATE / sixteenth))
    onsets_s = slots * sixteenth + (slots % 2) * _draw(rng, style.swing) * sixteenth
    on_beat = slots % 4 == 0
    kicks = on_beat & (rng.random(slots.size) < _draw(rng, style.kick_per_beat))
    hits = rng.random(slots.size) < _draw(rng, style.hits_per_slot)
    hit_sound = _noise_hit(rng, _draw(rng, style.hit_centre_hz), _draw(rng, style.hit_decay_s))
    return 0.8 * _place(onsets_s[kicks], _kick(), n_samples, rng) + 0.5 * _place(
        onsets_s[hits], hit_sound, n_samples, rng
    )


def _melody(rng: np.random.Generator, style: GenreStyle, beat_s: float, n_samples: int) -> np.ndarray:
    """A pentatonic random walk, optionally harmonised, with plucked envelopes and a chosen timbre."""
    note_s = beat_s / _draw(rng, style.notes_per_beat)
    samples_per_note = max(1, int(note_s * SYNTHETIC_SAMPLE_RATE))
    n_notes = -(-n_samples // samples_per_note)
    root_midi = _draw(rng, style.lowest_midi)
    steps = np.cumsum(rng.integers(-2, 3, n_notes))
    degree = np.abs((steps + 10) % 20 - 10)  # reflect the walk into two octaves of the scale
    midi = root_midi + 12 * (degree // 5) + PENTATONIC[degree % 5]
    in_note_s = (np.arange(n_samples, dtype=np.float32) % samples_per_note) / SYNTHETIC_SAMPLE_RATE
    envelope = np.exp(-in_note_s / _draw(rng, style.note_decay_s)) * (1 - np.exp(-in_note_s / 0.005))
    tables = _wavetables(_draw(rng, style.harmonic_rolloff))
    n_voices = int(round(_draw(rng, style.voices)))
    voices = sum(
        _harmonic_tone(midi + interval, samples_per_note, n_samples, tables) for interval in CHORD_INTERVALS[:n_voices]
    )
    return envelope * voices / n_voices


def _harmonic_tone(midi: np.ndarray, samples_per_note: int, n_samples: int, tables: np.ndarray) -> np.ndarray:
    """One note after another, each read from the single-cycle table holding only the harmonics below Nyquist."""
    frequency = 440.0 * 2.0 ** ((midi - 69) / 12)
    below_nyquist = np.clip((SYNTHETIC_SAMPLE_RATE / 2 // frequency).astype(int), 1, MAX_HARMONICS)
    cycles = np.cumsum(np.repeat(frequency / SYNTHETIC_SAMPLE_RATE, samples_per_note)[:n_samples])
    position = ((cycles % 1.0) * WAVETABLE_SIZE).astype(np.int32)
    return tables[np.repeat(below_nyquist - 1, samples_per_note)[:n_samples], position]


@lru_cache(maxsize=64)
def _wavetables(rolloff: float) -> np.ndarray:
    """Row K-1 is one cycle of harmonics 1..K with amplitude k**-rolloff (a band-limited waveform)."""
    harmonic = np.arange(1, MAX_HARMONICS + 1)[:, None]
    phase = 2 * np.pi * np.arange(WAVETABLE_SIZE) / WAVETABLE_SIZE
    return np.cumsum(harmonic**-rolloff * np.sin(harmonic * phase), axis=0).astype(np.float32)


def _coloured_noise(rng: np.random.Generator, tilt_db_per_octave: float, n_samples: int) -> np.ndarray:
    """Noise whose spectrum falls (or rises) by `tilt_db_per_octave`, relative to 1 kHz."""
    exponent = tilt_db_per_octave / (20 * np.log10(2))  # dB per octave as a power of frequency
    noise = _shaped_noise(rng, n_samples, lambda frequency: (frequency / 1000.0) ** exponent, lowest_hz=20.0)
    return noise / (np.std(noise) + 1e-12)


def _shaped_noise(
    rng: np.random.Generator, n_samples: int, gain: Callable[[np.ndarray], np.ndarray], lowest_hz: float
) -> np.ndarray:
    """White noise filtered in the frequency domain by `gain(frequency)` (frequencies below `lowest_hz` as it)."""
    spectrum = scipy.fft.rfft(rng.standard_normal(n_samples, dtype=np.float32))
    frequency = np.maximum(scipy.fft.rfftfreq(n_samples, 1 / SYNTHETIC_SAMPLE_RATE), lowest_hz).astype(np.float32)
    return scipy.fft.irfft(spectrum * gain(frequency), n_samples)


# ---- drum sounds ---------------------------------------------------------------------------------------
def _kick() -> np.ndarray:
    """A falling sine (150 Hz to 50 Hz) with a fast decay."""
    t = np.arange(int(0.25 * SYNTHETIC_SAMPLE_RATE)) / SYNTHETIC_SAMPLE_RATE
    frequency = 50 + 100 * np.exp(-t / 0.03)
    return np.sin(2 * np.pi * np.cumsum(frequency) / SYNTHETIC_SAMPLE_RATE) * np.exp(-t / 0.08)


def _noise_hit(rng: np.random.Generator, centre_hz: float, decay_s: float) -> np.ndarray:
    """A decaying noise burst with its energy about one octave around `centre_hz` (snare to hi-hat)."""
    n = int(5 * decay_s * SYNTHETIC_SAMPLE_RATE)
    burst = _shaped_noise(rng, n, lambda frequency: np.exp(-0.5 * np.log2(frequency / centre_hz) ** 2), lowest_hz=1.0)
    burst /= np.max(np.abs(burst)) + 1e-12
    return burst * np.exp(-np.arange(n) / (decay_s * SYNTHETIC_SAMPLE_RATE))


def _place(onsets_s: np.ndarray, sound: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Play `sound` at every onset, each with a slightly different accent."""
    track = np.zeros(n_samples, dtype=np.float32)
    starts = (onsets_s * SYNTHETIC_SAMPLE_RATE).astype(int)
    for start, accent in zip(starts, rng.uniform(0.6, 1.0, onsets_s.size), strict=True):
        stop = min(n_samples, start + sound.size)
        track[start:stop] += accent * sound[: stop - start]
    return track


# ---- helpers -------------------------------------------------------------------------------------------
def _draw(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(*bounds))


def _at_random_loudness(rng: np.random.Generator, mix: np.ndarray) -> np.ndarray:
    """Scale to a random RMS level, so loudness carries no genre information, and keep within [-1, 1]."""
    rms = np.sqrt(np.mean(mix**2)) + 1e-12
    target = 10 ** (_draw(rng, RMS_DBFS_RANGE) / 20)
    return np.clip(mix * (target / rms), -1.0, 1.0).astype(np.float32)


def _collection_identity(tracks_per_genre: int, seed: int, seconds: float) -> dict[str, object]:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "tracks_per_genre": tracks_per_genre,
        "seconds": seconds,
        "sample_rate": SYNTHETIC_SAMPLE_RATE,
        "genres": list(GENRES),
    }


def _manifest_matches(root: Path, identity: dict[str, object]) -> bool:
    """True when `root` already holds this collection; an error when it holds another one."""
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.exists():
        return False
    manifest = json.loads(manifest_path.read_text())
    existing = {key: manifest.get(key) for key in identity}
    if existing != identity:
        raise ValueError(
            f"{root} already holds a synthetic collection made with {existing}, not {identity}; "
            "write this one to another folder"
        )
    return True


def _write_wav(path: Path, audio: np.ndarray) -> Path:
    """Written whole (genreflow.files): an interrupted run never leaves half a WAV."""
    with written_whole(path) as partial:
        sf.write(partial, audio, SYNTHETIC_SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return path
