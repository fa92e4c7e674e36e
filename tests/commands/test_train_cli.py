"""`genreflow train` and `genreflow predict` end to end: real store, real TensorFlow, real audio files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genreflow.cli import main
from genreflow.config import FeatureConfig
from tests.models.stores import synthetic_audio_store


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("cli")
    return synthetic_audio_store(base, tracks_per_genre=3, seconds=2.0, config=FeatureConfig())


@pytest.fixture(scope="module")
def trained_cnn(collection: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    assert main(["train", "--store", collection[1], "--model", "cnn", "--clip", "1", "--out", str(out), "--epochs", "1",
                 "--batch-size", "8"]) == 0  # fmt: skip
    return out / "cells" / "cnn-1s-seed0"


def test_train_uses_the_options_given_and_train_cells_defaults_for_the_rest(trained_cnn: Path) -> None:
    result = json.loads((trained_cnn / "result.json").read_text())
    assert (result["model"], result["clip_seconds"], result["settings"]["batch_size"]) == ("cnn", 1.0, 8)
    assert result["settings"]["epochs"] == 1
    assert result["settings"]["patience"] == 10  # not given: train_cell's default


def test_train_prints_the_accuracy_and_the_model_directory(
    collection: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--store", collection[1], "--model", "baseline", "--clip", "2", "--split", "kfold:3",
                 "--seed", "4", "--out", str(tmp_path)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "baseline 2s seed 4 (kfold:3): track accuracy" in printed
    assert f"model directory: {tmp_path.resolve() / 'cells' / 'baseline-2s-seed4'}" in printed


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "resnet"], "unknown model 'resnet'"),
        (["--model", "cnn", "--split", "half"], "unknown split 'half'"),
    ],
)
def test_train_refuses_bad_options_with_a_clear_error(
    options: list[str], message: str, collection: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--store", collection[1], "--clip", "1", "--out", str(tmp_path), *options]) == 1
    assert message in capsys.readouterr().err


def test_predict_prints_genre_and_probabilities_per_file_and_the_accuracy(
    trained_cnn: Path, collection: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "--model-dir", str(trained_cnn), str(collection[0])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 19
    assert lines[0].startswith(f"{collection[0] / 'ambient' / 'ambient.00000.wav'}: ")
    assert "(true: ambient)" in lines[0]
    assert lines[-1].startswith("track-level accuracy ") and lines[-1].endswith("over 18 labelled files")


def test_predict_json_reports_bad_files_and_exits_1(
    trained_cnn: Path, collection: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00")
    good = collection[0] / "swing" / "swing.00001.wav"
    assert main(["predict", "--model-dir", str(trained_cnn), str(good), str(tmp_path / "broken.wav"), "--json"]) == 1
    captured = capsys.readouterr()
    output = json.loads(captured.out)
    assert [row["path"] for row in output["predictions"]] == [str(good)]
    assert set(output["predictions"][0]) == {"path", "genre", "probabilities"}
    assert output["errors"][0]["path"] == str(tmp_path / "broken.wav")
    assert f"genreflow: error: {tmp_path / 'broken.wav'}: " in captured.err


def test_predict_names_a_folder_that_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--model-dir", str(tmp_path), str(tmp_path)]) == 1
    assert "is not a trained genreflow model" in capsys.readouterr().err
