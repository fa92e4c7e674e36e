"""Every registered model builds, gives a probability per genre, takes its shortest clip, and comes back from
disk unchanged; a model directory is loaded as data, never as code."""

from __future__ import annotations

import pickle
from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from genreflow.models.baseline import band_summary
from genreflow.models.persistence import load_model, model_file, save_model
from genreflow.models.registry import MODELS, build_model, model_names, spec

N_MELS = 128
GENRES = 4


def clips(n: int, frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, frames, N_MELS)).astype(np.float32)


def test_the_registry_names_the_models_of_the_issues() -> None:
    assert model_names() == ("baseline", "cnn", "rnn", "crnn", "musicnn")
    assert {name: MODELS[name].module for name in model_names()} == {
        name: f"genreflow.models.{name}" for name in model_names()
    }
    assert [MODELS[name].display_name for name in model_names()] == ["baseline", "CNN", "RNN", "CRNN", "musicnn (MSD)"]
    assert [MODELS[name].features for name in model_names()] == ["log-mel"] * 4 + ["musicnn"]


@pytest.mark.parametrize(
    ("own", "message"),
    [
        ({"schedule": "linear"}, "odd: schedule must be one of constant, cosine, got 'linear'"),
        ({"augment": "cutmix"}, "odd: augment must be one of none, specaugment, mixup, specaugment\\+mixup"),
        ({"batch_size": 0}, "odd: batch_size must be at least 1, got 0"),
    ],
)
def test_a_registry_entry_with_settings_that_cannot_train_is_refused_naming_it(own: dict, message: str) -> None:
    from genreflow.models.spec import ModelSpec

    with pytest.raises(ValueError, match=message):
        ModelSpec("odd", "genreflow.models.cnn:build", "odd", min_frames=1, **own)


@pytest.mark.parametrize("name", ["cnn", "rnn", "crnn"])
def test_each_network_takes_its_shortest_clip_and_no_shorter(name: str) -> None:
    shortest = spec(name).min_frames
    assert np.asarray(build_model(name, (shortest, N_MELS), GENRES).predict_on_batch(clips(2, shortest))).shape == (
        2,
        GENRES,
    )
    if shortest > 1:
        with pytest.raises(ValueError):
            build_model(name, (shortest - 1, N_MELS), GENRES).predict_on_batch(clips(2, shortest - 1))


def test_an_unknown_model_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet'.*baseline, cnn, rnn, crnn"):
        build_model("resnet", (43, N_MELS), GENRES)


@pytest.mark.parametrize("name", ["cnn", "rnn", "crnn"])
def test_each_network_outputs_one_probability_per_genre(name: str) -> None:
    model = build_model(name, (43, N_MELS), GENRES)
    probabilities = np.asarray(model.predict_on_batch(clips(3, 43)))
    assert probabilities.shape == (3, GENRES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_the_cnn_does_not_grow_with_the_clip_length() -> None:
    one_second = build_model("cnn", (43, N_MELS), 10).count_params()
    thirty_seconds = build_model("cnn", (1292, N_MELS), 10).count_params()
    assert one_second == thirty_seconds < 100_000


def test_the_crnn_has_the_size_nasrullah_and_zhao_give() -> None:
    assert build_model("crnn", (1292, N_MELS), 10).count_params() == 393_678


def test_the_baseline_learns_band_levels_and_reports_every_genre() -> None:
    labels = np.repeat(np.arange(3), 20)
    training = clips(60, 20) + labels[:, None, None] * 2.0  # genre k is 2k dB louder in every band
    model = build_model("baseline", (20, N_MELS), GENRES)
    model.fit_batches([(training[:32], labels[:32]), (training[32:], labels[32:])])
    probabilities = model.predict_on_batch(clips(9, 20, seed=2) + np.repeat(np.arange(3), 3)[:, None, None] * 2.0)
    assert probabilities.shape == (9, GENRES)  # genre 3 was never seen: probability 0, still a column
    assert np.all(probabilities[:, 3] == 0)
    assert list(probabilities.argmax(axis=1)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert model.count_params() == 3 * 2 * N_MELS + 3 + 2 * 2 * N_MELS


@pytest.mark.parametrize("name", ["baseline", "cnn"])
def test_a_saved_model_predicts_the_same_after_reload(name: str, tmp_path: Path) -> None:
    model = build_model(name, (43, N_MELS), GENRES)
    if name == "baseline":
        model.fit_batches([(clips(8, 43), np.arange(8) % GENRES)])
    saved = save_model(model, tmp_path)
    assert model_file(tmp_path) == saved
    reloaded = load_model(tmp_path)
    before = np.asarray(model.predict_on_batch(clips(5, 43, seed=3)))
    np.testing.assert_allclose(np.asarray(reloaded.predict_on_batch(clips(5, 43, seed=3))), before, rtol=1e-6)


def test_loading_a_folder_without_a_model_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_model(tmp_path)


def test_the_baseline_predicts_what_scikit_learn_fitted_without_keeping_it(tmp_path: Path) -> None:
    labels = np.arange(24) % 3
    training = clips(24, 20) + labels[:, None, None]
    model = build_model("baseline", (20, N_MELS), GENRES)
    model.fit_batches([(training, labels)])
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(band_summary(training), labels)
    save_model(model, tmp_path)

    probabilities = load_model(tmp_path).predict_on_batch(clips(5, 20, seed=4))

    np.testing.assert_allclose(
        probabilities[:, :3], reference.predict_proba(band_summary(clips(5, 20, seed=4))), atol=1e-6
    )
    assert (tmp_path / "baseline.npz").is_file() and not list(tmp_path.glob("*.joblib"))


class WritesAFile:
    """A pickle payload: loading it calls `Path.touch` on the marker, as a crafted model file would run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return Path.touch, (str(self.marker),)


@pytest.mark.parametrize("file_name", ["model.joblib", "baseline.npz"])
def test_a_planted_pickle_is_refused_and_never_runs(file_name: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / file_name).write_bytes(pickle.dumps(WritesAFile(marker)))

    with pytest.raises(ValueError, match="pickle|not a genreflow baseline"):
        load_model(model_dir)

    assert not marker.exists()


def test_a_npz_holding_objects_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    arrays = {name: np.zeros(2) for name in ("mean", "scale", "intercept", "classes", "n_genres")}
    np.savez(tmp_path / "baseline.npz", coef=np.array([WritesAFile(marker)], dtype=object), **arrays)

    with pytest.raises(ValueError, match="not a genreflow baseline"):
        load_model(tmp_path)

    assert not marker.exists()


def test_a_keras_file_with_code_in_it_is_refused(tmp_path: Path) -> None:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "model.keras")

    with pytest.raises(ValueError, match="safe_mode"):
        load_model(tmp_path)
