"""The overhang rule (tasks/features/clips.py): a clip may reach 0.1 s past its track's end, and no further
(the padding itself: tests/tasks/training/test_dataset.py)."""

from __future__ import annotations

from genreflow.core import FeatureConfig
from genreflow.tasks.features.clips import SHORT_TOLERANCE_S, too_short

CONFIG = FeatureConfig()  # 22,050 Hz, hop 512: a frame is 23.2 ms, the tolerance 4 frames


def test_a_track_up_to_the_tolerance_short_gives_a_clip_and_one_frame_less_does_not() -> None:
    clip = CONFIG.frames_for(30.0)
    slack = CONFIG.frames_for(SHORT_TOLERANCE_S)
    assert slack == 4
    assert too_short(clip - slack, clip, CONFIG) is None
    assert (
        too_short(clip - slack - 1, clip, CONFIG)
        == f"shorter than the clip ({clip - slack - 1} frames < {clip}, 30.00 s)"
    )
