"""`genreflow predict` end to end: a model trained by `genreflow train`, real TensorFlow, real audio files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from genreflow.cli import main


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
    assert set(output["predictions"][0]) == {"path", "key", "genre", "probabilities", "learned_from"}
    assert output["errors"][0]["path"] == str(tmp_path / "broken.wav")
    assert f"genreflow: error: {tmp_path / 'broken.wav'}: " in captured.err


def test_predict_names_a_folder_that_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--model-dir", str(tmp_path), str(tmp_path)]) == 1
    assert "is not a trained genreflow model" in capsys.readouterr().err


def _cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_a_genre(path: Path) -> None:
    cell = json.loads(path.read_text())
    path.write_text(json.dumps({**cell, "genres": cell["genres"][:-1]}))


@pytest.mark.parametrize(
    ("damaged_file", "damage", "message"),
    [
        ("fold-0/model.keras", _cut_in_half, "not a complete .keras file"),
        ("cell.json", _drop_a_genre, "genres, but cell.json lists"),
        ("fold-0/normalisation.json", Path.unlink, "unreadable (FileNotFoundError"),
        ("cell.json", lambda path: path.write_text("{"), "JSONDecodeError"),
    ],
)
def test_a_damaged_model_directory_is_named_with_the_file_and_what_to_do(
    trained_cnn: Path, collection: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    damaged_file: str, damage: Callable[[Path], object], message: str,
) -> None:  # fmt: skip
    copy = tmp_path / "model"
    shutil.copytree(trained_cnn, copy)
    damage(copy / damaged_file)
    assert main(["predict", "--model-dir", str(copy), str(collection[0] / "swing" / "swing.00001.wav")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("genreflow: error: ") and message in error and error.endswith("train the model again")
    named = "fold-0/model.keras" if message == "genres, but cell.json lists" else damaged_file
    assert str(copy / named) in error and "\n" not in error
