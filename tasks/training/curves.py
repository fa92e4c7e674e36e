"""A fold's learning curves as TensorBoard event files, in a log folder per cell (a path or any fsspec URL).

    <cell log folder>/fold-<k>/            the fold's HParams (the cell's model, clip, seed and settings)
                      fold-<k>/train/      epoch_loss, epoch_accuracy, epoch_learning_rate, epoch_seconds
                      fold-<k>/validation/ epoch_loss, epoch_accuracy

The layout is the one Keras' TensorBoard callback writes, so `tensorboard --logdir` overlays every cell's runs.
TensorFlow writes event files to local disk only (`s3://` would need tensorflow-io, which has no release for
this TensorFlow), so they are written to a scratch folder and copied to the log folder after every epoch.

The curves are written from the history the checkpoint holds: a fold that resumes starts its event files
afresh from that history, so they hold each epoch exactly once, whatever epoch the fold was stopped at.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec

from genreflow.models import import_tensorflow

# The history's names -> (writer, TensorBoard tag), as Keras' callback names them.
TAGS = {
    "loss": ("train", "epoch_loss"),
    "accuracy": ("train", "epoch_accuracy"),
    "learning_rate": ("train", "epoch_learning_rate"),
    "seconds": ("train", "epoch_seconds"),
    "val_loss": ("validation", "epoch_loss"),
    "val_accuracy": ("validation", "epoch_accuracy"),
}
HParamValue = bool | int | float | str


class FoldCurves:
    """The event files of one fold, written locally and copied to `url` after each epoch."""

    def __init__(self, url: str, hparams: Mapping[str, HParamValue]) -> None:
        self.url = url.rstrip("/")
        self._fs, self._remote = fsspec.core.url_to_fs(self.url)
        self._scratch = tempfile.TemporaryDirectory(prefix="genreflow-curves-")
        self._local = Path(self._scratch.name)
        tf = import_tensorflow()
        self._writers = {
            name: tf.summary.create_file_writer(str(self._local / name)) for name in ("train", "validation")
        }
        self._hparams = dict(hparams)

    def start(self, history: Mapping[str, list[float]]) -> None:
        """Begin the fold's curves anew with the epochs of `history` (those a resumed fold already trained)."""
        from tensorboard.plugins.hparams import api as hparams_api

        if self._fs.exists(self._remote):
            self._fs.rm(self._remote, recursive=True)
        tf = import_tensorflow()
        with tf.summary.create_file_writer(str(self._local)).as_default():
            hparams_api.hparams(self._hparams)
        for epoch in range(len(history.get("loss", []))):
            self._write(epoch, {name: values[epoch] for name, values in history.items() if epoch < len(values)})
        self._publish()

    def add_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        """Record epoch `epoch` (counted from 0) and copy the event files to the log folder."""
        self._write(epoch, values)
        self._publish()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._scratch.cleanup()

    def _write(self, epoch: int, values: Mapping[str, float]) -> None:
        tf = import_tensorflow()
        for name, value in values.items():
            if name in TAGS:
                writer, tag = TAGS[name]
                with self._writers[writer].as_default():
                    tf.summary.scalar(tag, value, step=epoch)
        for writer in self._writers.values():
            writer.flush()

    def _publish(self) -> None:
        for path in self._local.rglob("*"):
            if path.is_file():
                target = f"{self._remote}/{path.relative_to(self._local).as_posix()}"
                self._fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                self._fs.put_file(str(path), target)


def hparams_of(cell: Any) -> dict[str, HParamValue]:
    """A cell's parameters as TensorBoard HParams: what the HParams view compares cells by."""
    settings = {name: value for name, value in vars(cell.settings).items() if value is not None}
    return {"model": cell.model, "clip_seconds": cell.clip_seconds, "seed": cell.seed, "split": cell.split, **settings}
