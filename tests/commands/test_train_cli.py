"""`genreflow train` and `genreflow predict` end to end: real store, real TensorFlow, real audio files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genreflow.cli import main
from genreflow.core import FeatureConfig
from tests.support.stores import synthetic_audio_store, write_tiny_store


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("cli")
    root, data = synthetic_audio_store(base, tracks_per_genre=3, seconds=2.0, config=FeatureConfig())
    return root, data.store


@pytest.fixture(scope="module")
def trained_cnn(collection: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("out") / "cnn-1s"
    assert main(["train", "--store", collection[1], "--model", "cnn", "--clip", "1", "--out", str(model_dir),
                 "--epochs", "1", "--batch-size", "8"]) == 0  # fmt: skip
    return model_dir


def test_train_uses_the_options_given_and_train_cells_defaults_for_the_rest(trained_cnn: Path) -> None:
    result = json.loads((trained_cnn / "result.json").read_text())
    assert (result["model"], result["clip_seconds"], result["settings"]["batch_size"]) == ("cnn", 1.0, 8)
    assert result["settings"]["epochs"] == 1
    assert result["settings"]["patience"] == 10  # not given: train_cell's default


def test_train_prints_the_accuracy_and_the_model_directory(
    collection: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--store", collection[1], "--model", "baseline", "--clip", "2", "--split", "kfold:3",
                 "--seed", "4", "--data", str(collection[0]), "--out", str(tmp_path / "model")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "baseline 2s seed 4 (kfold:3): track accuracy" in printed
    assert f"model directory: {(tmp_path / 'model').resolve()}" in printed


def test_train_asks_which_collection_when_the_store_holds_several(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.zarr"
    write_tiny_store(store, root="/music/one")
    write_tiny_store(store, seed=1, root="/music/two")
    arguments = ["train", "--store", str(store), "--model", "baseline", "--clip", "0.5", "--out", str(tmp_path / "m")]

    assert main(arguments) == 1
    assert "holds 2 collections (/music/one, /music/two): name one with --data" in capsys.readouterr().err
    assert main([*arguments, "--data", "/music/three"]) == 1
    assert "has no collection /music/three" in capsys.readouterr().err
    assert main([*arguments, "--data", "/music/two"]) == 0
    assert '"collection": "/music/two"' in (tmp_path / "m" / "cell.json").read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "resnet"], "unknown model 'resnet'"),
        (["--model", "cnn", "--split", "half"], "unknown split 'half'"),
        (["--model", "cnn", "--clip", "0.01"], "a 0.01 s clip is 0 frame(s); cnn needs at least 8"),
        (["--model", "cnn", "--clip", "inf"], "a clip length must be a positive, finite number of seconds, got inf"),
        (["--model", "cnn", "--clip", "100"], "is shorter than a 100 s clip (the longest lasts 2.0 s)"),
    ],
)
def test_train_refuses_bad_options_with_a_clear_error(
    options: list[str], message: str, collection: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["train", "--store", collection[1], "--clip", "1", "--out", str(tmp_path), *options]) == 1
    )  # the last --clip counts
    assert message in capsys.readouterr().err


def test_predict_prints_genre_and_probabilities_per_file_and_the_accuracy(
    trained_cnn: Path, collection: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "--model-dir", str(trained_cnn), str(collection[0])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 21
    assert lines[0].startswith(f"{collection[0] / 'ambient' / 'ambient.00000.wav'}")
    assert "(true: ambient)" in lines[0]
    tested = json.loads((trained_cnn / "fold-0" / "fold.json").read_text())["test"]
    unmarked = sorted(line.split(":")[0] for line in lines[:18] if " *: " not in line)
    assert unmarked == sorted(str(collection[0] / track_id) for track_id in tested)  # a training track has its *
    assert lines[18].startswith("track-level accuracy ") and lines[18].endswith("over 18 labelled files")
    assert lines[19].startswith(f"model trained on {collection[0].resolve()} (data version ")
    assert lines[20].startswith(
        f"note: {18 - len(tested)} of these files were among the model's training tracks (marked *)"
    )


def test_predict_json_reports_bad_files_and_exits_1(
    trained_cnn: Path, collection: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00")
    good = collection[0] / "swing" / "swing.00001.wav"
    assert main(["predict", "--model-dir", str(trained_cnn), str(good), str(tmp_path / "broken.wav"), "--json"]) == 1
    captured = capsys.readouterr()
    output = json.loads(captured.out)
    assert [row["path"] for row in output["predictions"]] == [str(good)]
    assert set(output["predictions"][0]) == {"path", "genre", "probabilities", "learned_from"}
    assert output["errors"][0]["path"] == str(tmp_path / "broken.wav")
    assert f"genreflow: error: {tmp_path / 'broken.wav'}: " in captured.err


def test_predict_names_a_folder_that_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--model-dir", str(tmp_path), str(tmp_path)]) == 1
    assert "is not a trained genreflow model" in capsys.readouterr().err
