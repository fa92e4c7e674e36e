"""Turning one audio file into mono float32 samples at the feature rate, or a clear reason why not.

Decoding uses soundfile (libsndfile: WAV in every PCM width and float, AU, FLAC, OGG, MP3, ...); a file
libsndfile rejects gets a second chance with librosa's audioread fallback. Stereo is averaged to mono and
the rate converted with librosa's default resampler (soxr, high quality), exactly as `librosa.load` does.

`AudioError`: the content is unusable, and extraction quarantines it by its content key (a file that cannot
be read at all is a `genreflow.tasks.collection.sources.SourceError` instead): empty (0 bytes); not audio, or
corrupt (the decoder fails, or the samples are not finite); truncated (libsndfile reports a data chunk longer
than the file, or decodes < 99 % of the frames the header declares); silent (RMS below `SILENCE_RMS_DBFS`,
-60 dBFS, over the whole file; the quietest real GTZAN track is about -31 dBFS); too short for what the
caller needs (`min_seconds`, less the `SHORT_TOLERANCE_S` of `genreflow.tasks.features.clips`).
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import soundfile as sf

from genreflow.tasks.collection.sources import FileProblem
from genreflow.tasks.features.clips import SHORT_TOLERANCE_S

SILENCE_RMS_DBFS = -60.0
PCM16_SCALE = np.float32(2**-15)  # libsndfile's normalisation of 16-bit samples to [-1, 1)
# A decoder may legitimately deliver slightly fewer frames than an estimated header says (MP3).
MIN_DECODED_FRACTION = 0.99
# libsndfile's log says "data : 132300 (should be 66128)" for WAV and "Data Size : ..." for AU.
_SHORT_DATA_CHUNK = re.compile(r"^\s*data(?: size)?\s*:\s*(\d+)\s*\(should be (\d+)\)", re.IGNORECASE | re.MULTILINE)


class AudioError(FileProblem, ValueError):
    """An audio file that cannot be turned into features."""


def decode_audio(data: bytes, path: str, sample_rate: int, min_seconds: float = 0.0) -> np.ndarray:
    """Decode `data` (the content of `path`), downmix, resample and check it."""
    if not data:
        raise AudioError(path, "empty file (0 bytes)")
    samples, source_rate = _decode(data, path)
    if samples.shape[0] == 0:
        raise AudioError(path, "no audio: the file holds 0 frames")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    _check_finite_and_not_silent(mono, path)
    audio = _resample(mono, source_rate, sample_rate)
    _check_long_enough(audio, sample_rate, min_seconds, path)
    return audio


def _decode(data: bytes, path: str) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and the file's rate, from soundfile or else audioread."""
    try:
        return _decode_with_soundfile(data, path)
    except sf.LibsndfileError as error:
        soundfile_problem = error.error_string.strip().rstrip(".")
    try:
        return _decode_with_audioread(path)
    except Exception as error:  # audioread raises many unrelated types; all mean "cannot decode"
        fallback_problem = f"{type(error).__name__} {error}".strip()
    kind = "not an audio file" if "not recognised" in soundfile_problem.lower() else "corrupt"
    raise AudioError(path, f"{kind} (soundfile: {soundfile_problem}; audioread: {fallback_problem})")


def _decode_with_soundfile(data: bytes, path: str) -> tuple[np.ndarray, int]:
    with sf.SoundFile(io.BytesIO(data)) as sound:
        _check_data_chunk_complete(sound.extra_info, path)
        samples = _read_float32(sound)
        declared_frames, rate = sound.frames, sound.samplerate
    if declared_frames > 0 and samples.shape[0] < MIN_DECODED_FRACTION * declared_frames:
        raise AudioError(
            path, f"truncated: the header declares {declared_frames} frames but only {samples.shape[0]} decode"
        )
    return samples, rate


def _read_float32(sound: sf.SoundFile) -> np.ndarray:
    """(frames, channels) float32 in [-1, 1), exactly as libsndfile's own float conversion gives them.

    16-bit PCM (GTZAN, most WAV) is read as int16 and scaled here: libsndfile converts to float one sample
    at a time, numpy does the same exact scaling by 2**-15 six times faster.
    """
    if sound.subtype == "PCM_16":
        return np.multiply(sound.read(dtype="int16", always_2d=True), PCM16_SCALE, dtype=np.float32)
    return sound.read(dtype="float32", always_2d=True)


def _decode_with_audioread(path: str) -> tuple[np.ndarray, int]:
    import librosa  # deferred: slow to import, and only this rare fallback needs it here

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns that audioread is deprecated; it is our last resort
        samples, rate = librosa.load(path, sr=None, mono=False)
    return np.atleast_2d(samples).T.astype(np.float32, copy=False), int(rate)


def _check_data_chunk_complete(decoder_log: str, path: str) -> None:
    """libsndfile reads a cut-off WAV/AU silently; its log still shows the header's promise."""
    match = _SHORT_DATA_CHUNK.search(decoder_log)
    if match and int(match.group(1)) > int(match.group(2)):
        declared, present = int(match.group(1)), int(match.group(2))
        raise AudioError(path, f"truncated: the header declares {declared} bytes of audio but the file holds {present}")


def _resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return audio
    import librosa  # deferred: only files at another rate need it

    return librosa.resample(audio, orig_sr=source_rate, target_sr=target_rate).astype(np.float32, copy=False)


def _check_long_enough(audio: np.ndarray, sample_rate: int, min_seconds: float, path: str) -> None:
    seconds = audio.size / sample_rate
    if seconds < min_seconds - SHORT_TOLERANCE_S:
        raise AudioError(path, f"too short: {seconds:.2f} s, at least {min_seconds:g} s are needed")


def _check_finite_and_not_silent(audio: np.ndarray, path: str) -> None:
    """One dot product answers both: a NaN or infinity anywhere makes the energy non-finite."""
    energy = float(np.dot(audio, audio))
    if not np.isfinite(energy):
        raise AudioError(path, "corrupt: the decoded samples contain NaN or infinity")
    level = 10 * np.log10(energy / audio.size) if energy > 0 else float("-inf")
    if level < SILENCE_RMS_DBFS:
        raise AudioError(path, f"silent: RMS level {level:.1f} dBFS is below {SILENCE_RMS_DBFS:g} dBFS")
