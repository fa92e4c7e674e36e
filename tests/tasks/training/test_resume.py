"""A cell stopped mid-training continues from its checkpoint and ends with the model an uninterrupted cell ends
with (weights equal, not close); damaged or foreign checkpoints are discarded; the learning curves hold each
epoch once. Real TensorFlow on tiny models, real Zarr, a real moto S3 server."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

from genreflow.core import TrainingSettings
from genreflow.tasks.training.checkpoint import STATE_FILE, Checkpoint, CheckpointError, TrainingState, decode_state
from genreflow.tasks.training.progress import EpochProgress, Tracking
from genreflow.tasks.training.train import TrainingData, fold_dir, train_cell
from tests.support.events import event_steps
from tests.support.object_store import s3_bucket_in_environment
from tests.support.stores import write_tiny_store

CLIP_SECONDS = 0.5
SETTINGS = TrainingSettings(epochs=4, patience=2, batch_size=4)
KEY = "train-test"


class Interrupted(Exception):
    """Stands in for a worker's death: raised from the epoch listener, after the checkpoint was written."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    return write_tiny_store(tmp_path_factory.mktemp("resume") / "store.zarr", genres=3, tracks_per_genre=4)


@pytest.fixture(scope="module")
def uninterrupted(data: TrainingData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_cell(data, "cnn", CLIP_SECONDS, 0, "kfold:2", tmp_path_factory.mktemp("whole") / "cell", SETTINGS)


def stop_after(fold: int, epoch: int) -> callable:
    def listener(progress: EpochProgress) -> None:
        if (progress.fold, progress.epoch) == (fold, epoch):
            raise Interrupted

    return listener


def interrupted_then_resumed(data: TrainingData, root: str, out: Path, fold: int, epoch: int) -> Path:
    """Train the kfold:2 CNN cell, stopped after `epoch` of `fold`, then again with the same checkpoint."""
    tracking = Tracking(Checkpoint(f"{root}/checkpoint", KEY), f"{root}/curves")
    stopped = Tracking(tracking.checkpoint, tracking.curves_url, stop_after(fold, epoch))
    with pytest.raises(Interrupted):
        train_cell(data, "cnn", CLIP_SECONDS, 0, "kfold:2", out, SETTINGS, tracking=stopped)
    assert not (out / "cell.json").exists() and not list(out.glob("fold-*"))  # nothing that looks trained
    return train_cell(data, "cnn", CLIP_SECONDS, 0, "kfold:2", out, SETTINGS, tracking=tracking)


def weights(model_dir: Path, fold: int) -> list[np.ndarray]:
    return keras.saving.load_model(fold_dir(model_dir, fold) / "model.keras").get_weights()


def assert_same_model(resumed: Path, uninterrupted: Path) -> None:
    for fold in range(2):
        for mine, theirs in zip(weights(resumed, fold), weights(uninterrupted, fold), strict=True):
            np.testing.assert_array_equal(mine, theirs)
        histories = [
            json.loads((fold_dir(d, fold) / "fold.json").read_text())["history"] for d in (resumed, uninterrupted)
        ]
        for name in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"):
            assert histories[0][name] == histories[1][name], name


def test_a_cell_stopped_in_its_second_fold_resumes_there_and_ends_with_the_uninterrupted_model(
    data: TrainingData, uninterrupted: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="genreflow"):
        resumed = interrupted_then_resumed(data, str(tmp_path), tmp_path / "cell", fold=1, epoch=2)
    messages = [record.getMessage() for record in caplog.records]
    assert "resumed cnn-0.5s-seed0 at fold 1, epoch 3 of 4" in messages
    assert any(message.startswith("cnn-0.5s-seed0 fold 0: trained before a restart, kept") for message in messages)
    assert_same_model(resumed, uninterrupted)
    trained_epochs = json.loads((fold_dir(resumed, 1) / "fold.json").read_text())["epochs_run"]
    for fold, epochs in (
        (0, json.loads((fold_dir(resumed, 0) / "fold.json").read_text())["epochs_run"]),
        (1, trained_epochs),
    ):
        for writer in ("train", "validation"):
            for tag, steps in event_steps(tmp_path / "curves" / f"fold-{fold}" / writer).items():
                assert steps == list(range(epochs)), (fold, writer, tag)
    assert set(event_steps(tmp_path / "curves" / "fold-1" / "train")) == {
        "epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_seconds",
    }  # fmt: skip


@pytest.mark.parametrize("damage", ["truncated", "one byte flipped"])
def test_a_damaged_checkpoint_is_discarded_with_a_warning_and_the_fold_starts_over(
    data: TrainingData, uninterrupted: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    checkpoint = Checkpoint(str(tmp_path / "checkpoint"), KEY)
    with pytest.raises(Interrupted):
        train_cell(data, "cnn", CLIP_SECONDS, 0, "kfold:2", tmp_path / "cell", SETTINGS,
                   tracking=Tracking(checkpoint, on_epoch=stop_after(0, 2)))  # fmt: skip
    state = tmp_path / "checkpoint" / STATE_FILE
    content = bytearray(state.read_bytes())
    if damage == "truncated":
        del content[len(content) // 2 :]
    else:
        content[len(content) // 2] ^= 0x01
    state.write_bytes(bytes(content))
    with caplog.at_level(logging.INFO, logger="genreflow"):
        resumed = train_cell(data, "cnn", CLIP_SECONDS, 0, "kfold:2", tmp_path / "cell", SETTINGS,
                             tracking=Tracking(checkpoint))  # fmt: skip
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "checkpoint" in r.getMessage()
    ]
    assert len(warnings) == 1 and str(state) in warnings[0] and "starts over" in warnings[0]
    assert not any("resumed" in record.getMessage() for record in caplog.records)
    assert_same_model(resumed, uninterrupted)


def test_a_checkpoint_of_another_training_is_never_resumed(data: TrainingData, tmp_path: Path) -> None:
    checkpoint = Checkpoint(str(tmp_path / "checkpoint"), KEY)
    with pytest.raises(Interrupted):
        train_cell(data, "cnn", CLIP_SECONDS, 0, "kfold:2", tmp_path / "cell", SETTINGS,
                   tracking=Tracking(checkpoint, on_epoch=stop_after(0, 1)))  # fmt: skip
    saved = (tmp_path / "checkpoint" / STATE_FILE).read_bytes()
    assert decode_state(saved, KEY).epochs_done == 1
    with pytest.raises(CheckpointError, match="another training"):
        decode_state(saved, "train-other")
    assert Checkpoint(str(tmp_path / "checkpoint"), "train-other").load_state(0) is None


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_bucket_in_environment(tmp_path_factory.mktemp("moto"), "genreflow-resume"):
        yield "s3://genreflow-resume"


def test_checkpoint_and_curves_on_s3_resume_like_local_ones(
    data: TrainingData, uninterrupted: Path, bucket: str, tmp_path: Path
) -> None:
    import s3fs

    resumed = interrupted_then_resumed(data, f"{bucket}/cache", tmp_path / "cell", fold=0, epoch=3)
    assert_same_model(resumed, uninterrupted)
    stored = s3fs.S3FileSystem().find(f"{bucket}/cache")
    assert any(path.endswith(f"checkpoint/{STATE_FILE}") for path in stored)
    assert any("/curves/fold-1/validation/events.out.tfevents" in path for path in stored)
    assert not any(".partial-" in path for path in stored)


def test_a_checkpoint_that_does_not_fit_on_the_disk_leaves_the_previous_one_whole(small_disk: Path) -> None:
    checkpoint = Checkpoint(str(small_disk / "checkpoint"), KEY)
    history = {"loss": [1.0]}
    checkpoint.save_state(TrainingState(0, 1, False, history, model=[np.zeros(1000, np.float32)]))
    too_big = np.random.default_rng(0).normal(size=100_000)  # 800 KB on a 400 KiB filesystem
    with pytest.raises(OSError):
        checkpoint.save_state(TrainingState(0, 2, False, history, model=[too_big]))
    assert checkpoint.load_state(0).epochs_done == 1
    assert [path.name for path in (small_disk / "checkpoint").iterdir()] == [STATE_FILE]
