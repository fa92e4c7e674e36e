"""Where a training cell keeps its checkpoint and learning curves, and how it tells of each epoch.

Nothing here imports TensorFlow: the flow names these before any worker trains (`recorder` does the work).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from genreflow.tasks.training.checkpoint import Checkpoint
from genreflow.tasks.training.curves import FoldCurves

logger = logging.getLogger("genreflow.tasks.training")
Log = logging.Logger | logging.LoggerAdapter


@dataclass(frozen=True)
class EpochProgress:
    """Where a training cell is: epoch `epoch` of `epochs` (from 1) of fold `fold` of `folds` (from 0)."""

    cell: str
    fold: int
    folds: int
    epoch: int
    epochs: int
    values: dict[str, float]

    @property
    def fraction(self) -> float:
        """How much of the cell is done, 0-1, counting each fold's full budget of epochs."""
        return (self.fold + self.epoch / self.epochs) / self.folds

    def describe(self) -> str:
        accuracy = self.values.get("val_accuracy")
        shown = f", validation accuracy {accuracy:.3f}" if accuracy is not None else ""
        return f"{self.cell}: fold {self.fold} of {self.folds}, epoch {self.epoch} of {self.epochs}{shown}"


@dataclass(frozen=True)
class FoldTracking:
    """A fold's checkpoint, learning curves and listener (each optional), and where it is in its cell."""

    cell: str
    fold: int
    folds: int
    checkpoint: Checkpoint | None = None
    curves: FoldCurves | None = None
    on_epoch: Callable[[EpochProgress], None] | None = None
    log: Log = logger


@dataclass(frozen=True)
class Tracking:
    """A cell's checkpoint, the folder of its learning curves (a path or URL) and who hears of each epoch: each
    optional, so that a training nobody watches (`genreflow train`) keeps none."""

    checkpoint: Checkpoint | None = None
    curves_url: str | None = None
    on_epoch: Callable[[EpochProgress], None] | None = None
    log: Log = logger  # where its epochs and any resumption are told: a flow's task gives its run logger
