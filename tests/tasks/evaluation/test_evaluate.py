"""Evaluation: the contract's result JSON, every test track scored once, metrics as scikit-learn computes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from genreflow.core import FeatureConfig, TrainingSettings
from genreflow.storage.schema import StoreError
from genreflow.storage.store import FeatureSet
from genreflow.tasks.evaluation.evaluate import classification_metrics, evaluate_cell, mean_per_track
from genreflow.tasks.evaluation.scoring import vote_per_track
from genreflow.tasks.training.train import TrainingData, train_cell
from tests.support.stores import write_tiny_store

CONTRACT_KEYS = {
    "model", "clip_seconds", "seed", "split", "data_version", "feature_id", "genres", "n_tracks", "metrics",
    "track_predictions", "params", "size_bytes", "train_seconds", "epochs_run", "history",
    "predict_clips_per_second", "model_dir",
}  # fmt: skip
METRIC_KEYS = {"accuracy", "macro_f1", "per_genre", "confusion"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    return write_tiny_store(tmp_path_factory.mktemp("evaluate") / "store.zarr", genres=3, tracks_per_genre=4)


@pytest.fixture(scope="module")
def tiny_store(tiny_data: TrainingData) -> str:
    return tiny_data.store


def test_metrics_agree_with_scikit_learn_on_fixed_inputs() -> None:
    genres = ["blues", "jazz", "rock", "pop"]
    true = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    predicted = [0, 1, 0, 1, 2, 2, 2, 0, 3, 1]
    metrics = classification_metrics(true, predicted, genres)
    labels = [0, 1, 2, 3]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(true, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(true, predicted, average="macro", labels=labels))
    for index, genre in enumerate(genres):
        scores = metrics["per_genre"][genre]
        assert scores["precision"] == pytest.approx(precision_score(true, predicted, labels=[index], average="macro"))
        assert scores["recall"] == pytest.approx(recall_score(true, predicted, labels=[index], average="macro"))
    assert metrics["confusion"] == confusion_matrix(true, predicted, labels=labels).tolist()
    assert metrics["confusion"][0] == [2, 1, 0, 0]  # rows are the true genre, columns the predicted one
    json.dumps(metrics)  # plain Python numbers only


def test_a_genre_never_predicted_counts_zero_not_an_error() -> None:
    metrics = classification_metrics([0, 1, 2], [0, 0, 0], ["a", "b", "c"])
    assert metrics["per_genre"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert metrics["macro_f1"] == pytest.approx(f1_score([0, 1, 2], [0, 0, 0], average="macro", zero_division=0))


def test_a_tracks_probabilities_are_the_mean_of_its_clips() -> None:
    clips = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8], [0.6, 0.4], [1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(mean_per_track(clips, np.array([2, 3, 1])), [[0.5, 0.5], [0.6, 0.4], [0.5, 0.5]])


def test_a_tracks_vote_is_its_clips_majority_and_a_tie_goes_to_the_higher_mean() -> None:
    clips = np.array([[0.51, 0.49], [0.51, 0.49], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]])
    assert vote_per_track(clips, np.array([3, 2])).tolist() == [0, 0]  # track 1: a tie, the mean says genre 0
    assert mean_per_track(clips, np.array([3, 2])).argmax(axis=1).tolist() == [1, 0]  # where the two differ


def test_the_result_follows_the_contract_and_is_written_beside_the_model(
    tiny_data: TrainingData, tmp_path: Path
) -> None:
    tiny_store = tiny_data.store
    model_dir = train_cell(tiny_data, "cnn", 0.5, 3, "stratified", tmp_path / "cell", TrainingSettings(epochs=1))
    result = evaluate_cell(model_dir, tiny_store)
    assert set(result) >= CONTRACT_KEYS
    assert json.loads((model_dir / "result.json").read_text()) == result
    assert (result["model"], result["clip_seconds"], result["seed"], result["split"]) == ("cnn", 0.5, 3, "stratified")
    assert (result["data_version"], result["collection"]) == (tiny_data.data_version, tiny_data.collection)
    assert result["n_tracks"] == {"train": 6, "valid": 3, "test": 3}
    rows = result["track_predictions"]
    store = FeatureSet.open(tiny_store, tiny_data.feature_config)
    key_of = {track.track_id: track.key for track in tiny_data.tracks}
    clips = sum(store.track(key_of[row["track_id"]]).n_frames // result["clip_frames"] for row in rows)
    for level, scored in (("track", 3), ("clip", clips), ("track_vote", 3)):
        assert set(result["metrics"][level]) == METRIC_KEYS
        assert np.sum(result["metrics"][level]["confusion"]) == scored
    assert sorted({row["true"] for row in rows}) == result["genres"] == ["g0", "g1", "g2"]
    assert all(np.isclose(sum(row["probabilities"]), 1.0) for row in rows)
    assert result["epochs_run"] == 1 and len(result["history"]["val_loss"]) == 1
    assert result["params"] > 0 and result["size_bytes"] == (model_dir / "fold-0" / "model.keras").stat().st_size
    assert result["predict_clips_per_second"] > 0 and result["model_dir"] == str(model_dir.resolve())


def test_kfold_results_cover_every_track_exactly_once(tiny_data: TrainingData, tmp_path: Path) -> None:
    model_dir = train_cell(tiny_data, "baseline", 0.5, 0, "kfold:3", tmp_path / "cell")
    result = evaluate_cell(model_dir, tiny_data.store)
    tracks = [row["track_id"] for row in result["track_predictions"]]
    assert tracks == [track.track_id for track in tiny_data.tracks]
    assert result["n_tracks"]["test"] == 12 and len(result["folds"]) == 3
    assert result["history"] == {"loss": [], "val_loss": [], "accuracy": [], "val_accuracy": []}
    assert result["metrics"]["track"]["accuracy"] == pytest.approx(
        np.mean([row["true"] == row["predicted"] for row in result["track_predictions"]])
    )


def test_a_reloaded_model_scores_the_same_twice(tiny_data: TrainingData, tiny_store: str, tmp_path: Path) -> None:
    model_dir = train_cell(tiny_data, "baseline", 0.5, 0, "stratified", tmp_path / "cell")
    first, second = evaluate_cell(model_dir, tiny_store), evaluate_cell(model_dir, tiny_store)
    assert first["track_predictions"] == second["track_predictions"]


def test_a_store_without_the_models_features_or_tracks_is_refused(tiny_data: TrainingData, tmp_path: Path) -> None:
    model_dir = train_cell(tiny_data, "baseline", 0.5, 0, "stratified", tmp_path / "cell")
    other = tmp_path / "other.zarr"
    write_tiny_store(other, config=FeatureConfig(n_mels=64))
    with pytest.raises(StoreError, match="holds no features made with"):
        evaluate_cell(model_dir, str(other))
    write_tiny_store(other, seed=5)  # the same names, other content: not the model's test tracks
    with pytest.raises(StoreError, match="lacks 3 of the tracks asked for"):
        evaluate_cell(model_dir, str(other))


def test_a_folder_that_holds_no_trained_model_is_named(tmp_path: Path, tiny_store: str) -> None:
    with pytest.raises(FileNotFoundError, match="is not a trained genreflow model"):
        evaluate_cell(tmp_path, tiny_store)
