"""Where a track's clips start, and cutting them out of its frames: what training, evaluation and prediction share.

A clip may be up to `SHORT_TOLERANCE_S` (0.1 s) longer than its track, since real GTZAN tracks last 29.93 to
30.0 s and must still serve 30 s clips (a 30 s clip of a 29.93 s track lacks up to 4 frames). Such a clip is
padded at the end with the track's own frames mirrored (`numpy.pad(mode="reflect")`), which keeps the track's
spectrum instead of inserting silence. A track shorter still gives no clip of that length (`too_short`):
training leaves it out, prediction refuses it as it decodes (`genreflow.tasks.features.audio`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from genreflow.core import FeatureConfig

SHORT_TOLERANCE_S = 0.1


def too_short(n_frames: int, clip_frames: int, feature_config: FeatureConfig) -> str | None:
    """Why a track of `n_frames` gives no clip of `clip_frames` (more than `SHORT_TOLERANCE_S` short), or None."""
    if n_frames >= clip_frames - feature_config.frames_for(SHORT_TOLERANCE_S):
        return None
    seconds = feature_config.seconds_for(clip_frames)
    return f"shorter than the clip ({n_frames} frames < {clip_frames}, {seconds:.2f} s)"


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
