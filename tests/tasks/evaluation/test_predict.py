"""Prediction from audio files: the extraction code's features, the trained folds' softmax, per-file errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreflow.core import FeatureConfig
from genreflow.models.directory import CellInfo
from genreflow.storage.store import FeatureSet
from genreflow.tasks.evaluation.evaluate import evaluate_cell, load_member
from genreflow.tasks.evaluation.predict import Ensemble, file_features, predict_paths
from genreflow.tasks.training.train import TrainingData, fold_dir, train_cell
from tests.support.stores import synthetic_audio_store

CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingData]:
    """Synthetic WAVs in the GTZAN layout (6 genres x 3 tracks of 2 s) and their extracted store."""
    return synthetic_audio_store(tmp_path_factory.mktemp("predict"), tracks_per_genre=3, seconds=2.0, config=CONFIG)


@pytest.fixture(scope="module")
def baseline_dir(collection: tuple[Path, TrainingData], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_cell(collection[1], "baseline", 1.0, 0, "stratified", tmp_path_factory.mktemp("model") / "cell")


def test_a_files_features_are_exactly_what_extraction_stored(collection: tuple[Path, TrainingData]) -> None:
    root, data = collection
    track = data.tracks[4]
    stored = FeatureSet.open(data.store, CONFIG).read(track.key)
    key, features = file_features(str(root / track.track_id), CONFIG, 1.0)
    assert key == track.key
    np.testing.assert_array_equal(features, stored)


def test_a_gtzan_layout_folder_is_predicted_with_labels_and_accuracy(
    collection: tuple[Path, TrainingData], baseline_dir: Path
) -> None:
    output = predict_paths(baseline_dir, [collection[0]])
    rows = output["predictions"]
    assert len(rows) == 18 and output["errors"] == []
    assert {row["true"] for row in rows} == set(output["predictions"][0]["probabilities"])
    assert all(sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-3) for row in rows)
    assert output["labelled"] == 18
    assert output["accuracy"] == pytest.approx(np.mean([row["genre"] == row["true"] for row in rows]))


def test_prediction_says_what_the_model_learned_from_and_marks_its_own_training_files(
    collection: tuple[Path, TrainingData], baseline_dir: Path, tmp_path: Path
) -> None:
    root, data = collection
    fold = json.loads((fold_dir(baseline_dir, 0) / "fold.json").read_text())
    trained, tested = fold["train"][0], fold["test"][0]
    copy = tmp_path / "renamed.wav"
    shutil.copy(root / trained, copy)  # a training file under another name is still a training file

    output = predict_paths(baseline_dir, [root / trained, root / tested, copy])

    assert output["trained_on"] == {"collection": data.collection, "data_version": data.data_version}
    assert [row["learned_from"] for row in output["predictions"]] == [True, False, True]
    assert output["learned_from"] == 2


def test_prediction_agrees_with_the_evaluation_of_the_same_tracks(
    collection: tuple[Path, TrainingData], baseline_dir: Path
) -> None:
    root, data = collection
    result = evaluate_cell(baseline_dir, data.store)
    paths = [root / row["track_id"] for row in result["track_predictions"]]
    predicted = predict_paths(baseline_dir, paths)["predictions"]
    for row, prediction in zip(result["track_predictions"], predicted, strict=True):
        assert prediction["genre"] == row["predicted"]
        np.testing.assert_allclose(list(prediction["probabilities"].values()), row["probabilities"], atol=1e-4)


def test_a_kfold_model_predicts_with_the_mean_of_its_folds(
    collection: tuple[Path, TrainingData], tmp_path: Path
) -> None:
    root, data = collection
    model_dir = train_cell(data, "baseline", 1.0, 0, "kfold:3", tmp_path / "cell")
    _, features = file_features(str(root / "dance" / "dance.00000.wav"), CONFIG, 1.0)
    per_fold = []
    for index in range(3):
        model, normaliser = load_member(fold_dir(model_dir, index), CellInfo.load(model_dir))
        clips = normaliser.apply(features)[: 2 * 43].reshape(2, 43, 128)  # a 2 s track holds two 1 s clips
        per_fold.append(model.predict_on_batch(clips).mean(axis=0))
    (probabilities,) = Ensemble.load(model_dir).probabilities([features])
    np.testing.assert_allclose(probabilities, np.mean(per_fold, axis=0), rtol=1e-6)


def test_bad_files_get_their_own_error_and_the_others_are_still_predicted(
    collection: tuple[Path, TrainingData], baseline_dir: Path, tmp_path: Path
) -> None:
    good = [shutil.copy(path, tmp_path / path.name) for path in sorted((collection[0] / "beats").iterdir())[:2]]
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("not audio at all")
    sf.write(tmp_path / "short.wav", np.random.default_rng(0).normal(0, 0.1, 11025).astype(np.float32), 22050)
    output = predict_paths(baseline_dir, [tmp_path, tmp_path / "missing.wav"])
    assert sorted(row["path"] for row in output["predictions"]) == sorted(map(str, good))
    assert "accuracy" not in output  # loose files carry no label
    errors = {Path(entry["path"]).name: entry["error"] for entry in output["errors"]}
    assert set(errors) == {"empty.wav", "notes.wav", "short.wav", "missing.wav"}
    assert "empty" in errors["empty.wav"]
    assert "not an audio file" in errors["notes.wav"]
    assert "too short" in errors["short.wav"]
    assert errors["missing.wav"] == "no such file or folder"


def test_a_folder_without_audio_is_an_error_entry(baseline_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing to hear")
    output = predict_paths(baseline_dir, [tmp_path])
    assert output["predictions"] == [] and "no audio files" in output["errors"][0]["error"]


def test_the_clips_of_many_files_share_full_batches(collection: tuple[Path, TrainingData], baseline_dir: Path) -> None:
    # A file's two clips padded to a batch of their own would make the model's work grow with the files, not
    # the clips: 300 files of 2 clips are 19 batches of 32, not 300.
    root, _ = collection
    _, features = file_features(str(root / "dance" / "dance.00000.wav"), CONFIG, 1.0)
    ensemble = Ensemble.load(baseline_dir)
    (model, _), calls = ensemble.members[0], []
    original = model.predict_on_batch
    model.predict_on_batch = lambda clips: calls.append(len(clips)) or original(clips)
    probabilities = ensemble.probabilities([features] * 300)
    assert calls == [32] * 19
    np.testing.assert_allclose(probabilities, np.repeat(probabilities[:1], 300, axis=0), rtol=1e-6)
