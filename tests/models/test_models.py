"""Every registered model builds, gives a probability per genre, and comes back from disk unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.registry import MODEL_NAMES, MODELS, build_model, load_model, model_file, save_model

N_MELS = 128
GENRES = 4


def clips(n: int, frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, frames, N_MELS)).astype(np.float32)


def test_the_registry_names_the_four_models_of_the_issue() -> None:
    assert MODEL_NAMES == ("baseline", "cnn", "rnn", "crnn")
    assert {name: MODELS[name].__module__ for name in MODEL_NAMES} == {name: f"models.{name}" for name in MODEL_NAMES}


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
