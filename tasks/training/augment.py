"""What training does to each crop before a network sees it: SpecAugment's masks (Park et al., 2019), or nothing.

`specaugment` blanks, in every training clip, two bands of up to an eighth of the mel bands each and two stretches
of up to a tenth of the clip's frames each, at random places. Blanked values are 0, which after per-band
normalisation is the band's mean over the training tracks: the mask hides information without inventing any.
Each epoch's masks come from a generator of (seed, fold, epoch), apart from the one that draws the crops, so a
cell stays deterministic and switching augmentation on leaves its crops as they were. Validation, evaluation and
prediction see clips unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Batch = tuple[np.ndarray, np.ndarray]

MASKS = 2  # of each kind, per clip
MAX_BAND_SHARE = 1 / 8
MAX_FRAME_SHARE = 1 / 10
AUGMENT_STREAM = 1  # appended to (seed, fold, epoch): the masks' generator, apart from the crops'


def spec_augment(clips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`clips` (n, frames, bands) with each clip's bands and frame stretches masked, in place."""
    _, frames, bands = clips.shape
    for clip in clips:
        for _ in range(MASKS):
            _blank(clip, rng, axis=1, length=bands, widest=max(1, int(bands * MAX_BAND_SHARE)))
            _blank(clip, rng, axis=0, length=frames, widest=max(1, int(frames * MAX_FRAME_SHARE)))
    return clips


def _blank(clip: np.ndarray, rng: np.random.Generator, axis: int, length: int, widest: int) -> None:
    """Zero a random run of at most `widest` (at least none) of `clip`'s rows (axis 0) or columns (axis 1)."""
    width = int(rng.integers(0, widest + 1))
    start = int(rng.integers(0, length - width + 1))
    if axis == 0:
        clip[start : start + width, :] = 0.0
    else:
        clip[:, start : start + width] = 0.0


def augmented(batches: Iterator[Batch], augment: str, rng: np.random.Generator) -> Iterator[Batch]:
    """`batches` with `augment` ('none' or 'specaugment') applied to every clip."""
    if augment == "none":
        yield from batches
        return
    for clips, labels in batches:
        yield spec_augment(clips, rng), labels
