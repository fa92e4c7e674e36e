"""Where a track's clips start, and cutting them out of its frames: what training, evaluation and prediction share.

A clip a little longer than its track (a 30 s clip of a 29.93 s GTZAN track lacks up to 4 frames) is padded at
the end with the track's own frames mirrored (`numpy.pad(mode="reflect")`), which keeps the track's spectrum
instead of inserting silence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def clip_count_of(n_frames: int, clip_frames: int) -> int:
    """How many whole clips a track holds; at least one."""
    return max(1, n_frames // clip_frames)


def evaluation_starts(n_frames: int, clip_frames: int) -> tuple[int, ...]:
    """Starts of every non-overlapping clip of a track; one (to be padded) if the track is shorter."""
    return tuple(range(0, clip_count_of(n_frames, clip_frames) * clip_frames, clip_frames))


def cut_clips(frames: np.ndarray, starts: Sequence[int], clip_frames: int) -> np.ndarray:
    """Clips (len(starts), clip_frames, mels) from `frames`, mirror-padded at the end where it is too short."""
    missing = max(starts) + clip_frames - frames.shape[0]
    if missing > 0:
        frames = np.pad(frames, ((0, missing), (0, 0)), mode="reflect")
    return np.stack([frames[start : start + clip_frames] for start in starts])
