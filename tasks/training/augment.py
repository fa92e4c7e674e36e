"""What training does to each crop before a network sees it: SpecAugment's masks (Park et al., 2019), mixup
(Zhang et al., 2018), both, or nothing; and the genre targets a network trains towards.

`specaugment` blanks, in every training clip, two bands of up to an eighth of the mel bands each and two stretches
of up to a tenth of the clip's frames each, at random places. Blanked values are 0, which after per-band
normalisation is the band's mean over the training tracks: the mask hides information without inventing any.
Each epoch's masks come from a generator of (seed, fold, epoch), apart from the one that draws the crops, so a
cell stays deterministic and switching augmentation on leaves its crops as they were. Validation, evaluation and
prediction see clips unchanged.

`mixup` replaces each training clip by a blend of it and another clip of the same batch, and its target by the
same blend of the two genres: weight lambda ~ Beta(0.2, 0.2) per clip (Keras' `MixUp` default), so most clips stay
close to one of the two. Its weights and partners come from a generator of (seed, fold, epoch) of their own too.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Batch = tuple[np.ndarray, np.ndarray]

MASKS = 2  # of each kind, per clip
MAX_BAND_SHARE = 1 / 8
MAX_FRAME_SHARE = 1 / 10
MIXUP_ALPHA = 0.2
AUGMENT_STREAM = 1  # appended to (seed, fold, epoch): the masks' generator, apart from the crops'
MIXUP_STREAM = 2  # and the blends'


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
    """`batches` with `augment`'s masks ('specaugment', alone or with mixup) applied to every clip."""
    if not _includes(augment, "specaugment"):
        yield from batches
        return
    for clips, labels in batches:
        yield spec_augment(clips, rng), labels


def genre_targets(
    batches: Iterator[Batch], genres: int, augment: str = "none", rng: np.random.Generator | None = None
) -> Iterator[Batch]:
    """`batches` with their labels as genre probabilities (clips, float32 (n, genres)): one-hot, or with mixup in
    `augment` each clip blended with a partner from its batch, clips and targets alike."""
    mix = _includes(augment, "mixup")
    if mix and rng is None:
        raise ValueError("mixup needs its generator")
    for clips, labels in batches:
        targets = np.eye(genres, dtype=np.float32)[labels]
        yield mixup(clips, targets, rng) if mix else (clips, targets)


def mixup(clips: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> Batch:
    """Each clip and target blended with those of a random partner of the batch, by a weight of its own."""
    weights = rng.beta(MIXUP_ALPHA, MIXUP_ALPHA, size=len(clips)).astype(np.float32)
    partners = rng.permutation(len(clips))
    blend = weights[:, None]
    mixed_clips = blend[:, :, None] * clips + (1 - blend[:, :, None]) * clips[partners]
    return mixed_clips.astype(np.float32), blend * targets + (1 - blend) * targets[partners]


def _includes(augment: str, kind: str) -> bool:
    """Whether `augment` ('none', 'specaugment', 'mixup' or both joined by '+') asks for `kind`."""
    return kind in augment.split("+")
