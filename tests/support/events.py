"""Reading TensorBoard event files back, as TensorBoard would."""

from __future__ import annotations

from pathlib import Path


def event_steps(folder: Path) -> dict[str, list[int]]:
    """Every scalar's steps across all event files of `folder`."""
    import tensorflow as tf

    steps: dict[str, list[int]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps
