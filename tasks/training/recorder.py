"""What happens after each epoch of a network's fold: logged, checkpointed, drawn, reported; and how a fold
resumes from its checkpoint.

The order after an epoch is fixed: the checkpoint first, then the learning curves, then whoever listens (the
Prefect task's progress artifact). The curves therefore never hold an epoch the checkpoint lacks, and a fold
that resumes rewrites them from the checkpoint's history (`curves.FoldCurves.start`).

Resuming restores every model and optimizer variable before `fit`, early stopping's wait, best value and best
weights once `fit` has reset them (Keras' own `BackupAndRestore` leaves them reset: keras-team/keras#17012),
and starts `fit` at the next epoch: the fold ends with the weights an uninterrupted fold ends with.
"""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from genreflow.tasks.training.checkpoint import TrainingState
from genreflow.tasks.training.progress import EpochProgress, FoldTracking

STOPPING_FIELDS = ("wait", "best", "best_epoch", "stopped_epoch")


class EpochRecorder(keras.callbacks.Callback):
    """Logs, checkpoints, draws and reports each epoch of a fold (in that order), and puts a resumed fold's
    early stopping back where it was. Goes after the EarlyStopping callback, whose decision it records."""

    def __init__(
        self, tracking: FoldTracking, epochs: int, stopping: Any | None, resumed: TrainingState | None
    ) -> None:
        super().__init__()
        self.tracking, self.epochs, self.stopping, self.resumed = tracking, epochs, stopping, resumed
        self.history: dict[str, list[float]] = {
            name: list(values) for name, values in (resumed.history if resumed else {}).items()
        }
        self._started = time.perf_counter()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.resumed and self.stopping is not None:
            for name in STOPPING_FIELDS:
                setattr(self.stopping, name, self.resumed.stopping[name])
            self.stopping.best_weights = self.resumed.best

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = {name: float(value) for name, value in (logs or {}).items()}
        values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        values["seconds"] = round(time.perf_counter() - self._started, 3)
        for name, value in values.items():
            self.history.setdefault(name, []).append(value)
        tracking = self.tracking
        tracking.log.info(
            "epoch %d of %d: %s", epoch + 1, self.epochs, {name: round(v, 4) for name, v in values.items()}
        )
        if tracking.checkpoint is not None:
            tracking.checkpoint.save_state(self._state(epoch + 1))
        if tracking.curves is not None:
            tracking.curves.add_epoch(epoch, values)
        if tracking.on_epoch is not None:
            tracking.on_epoch(
                EpochProgress(tracking.cell, tracking.fold, tracking.folds, epoch + 1, self.epochs, values)
            )

    def _state(self, epochs_done: int) -> TrainingState:
        stopping = self.stopping
        return TrainingState(
            fold=self.tracking.fold,
            epochs_done=epochs_done,
            finished=bool(self.model.stop_training) or epochs_done >= self.epochs,
            history=self.history,
            stopping={name: _plain(getattr(stopping, name)) for name in STOPPING_FIELDS} if stopping else {},
            model=[np.asarray(variable) for variable in self.model.variables],
            optimizer=[np.asarray(variable) for variable in self.model.optimizer.variables],
            best=stopping.best_weights if stopping is not None else None,
        )


def resumable_state(model: Any, tracking: FoldTracking, epochs: int) -> TrainingState | None:
    """The checkpoint's state of this fold, its variables already put into `model`; None where there is none to
    trust (the fold then starts from `model` as it is)."""
    checkpoint = tracking.checkpoint
    state = checkpoint.load_state(tracking.fold, tracking.log) if checkpoint is not None else None
    if state is None:
        return None
    try:
        restore_variables(model, state)
    except ValueError as problem:
        tracking.log.warning("discarding the checkpoint %s: %s; this fold starts over", checkpoint.url, problem)
        return None
    tracking.log.info(
        "resumed %s at fold %d, epoch %d of %d", tracking.cell, tracking.fold, state.epochs_done + 1, epochs
    )
    return state


def restore_variables(model: Any, state: TrainingState) -> None:
    """Put a checkpoint's model and optimizer variables into `model` (compiled, its optimizer built), after
    checking that they match one for one: partial weights are never loaded."""
    pairs = {"model": (model.variables, state.model), "optimizer": (model.optimizer.variables, state.optimizer)}
    for kind, (variables, saved) in pairs.items():
        shapes = [tuple(variable.shape) for variable in variables]
        if shapes != [array.shape for array in saved]:
            raise ValueError(
                f"the checkpoint's {kind} variables do not match this model's ({len(saved)} against {len(shapes)})"
            )
    for variables, saved in pairs.values():
        for variable, array in zip(variables, saved, strict=True):
            variable.assign(array)


def _plain(value: Any) -> Any:
    """A JSON-ready copy of an early-stopping field (numpy scalars to Python numbers)."""
    return value.item() if isinstance(value, np.generic) else value
