"""`genreflow predict` end to end: a model trained by `genreflow train`, real TensorFlow, real audio files."""

from __future__ import annotations

import csv
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


def table_rows(table: Path) -> list[dict[str, str]]:
    with table.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_predict_into_a_table_on_dask_keeps_finished_rows_and_redoes_only_the_rest(
    collection: tuple[Path, str], trained_cnn: Path, scheduler: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from genreflow.tasks.evaluation.predict import predict_paths

    root, table, broken = collection[0], tmp_path / "predictions.csv", tmp_path / "broken.wav"
    broken.write_text("not audio")
    command = ["predict", "--model-dir", str(trained_cnn), str(root), str(broken), "--out", str(table),
               "--dask-address", scheduler]  # fmt: skip
    assert main(command) == 1  # the broken file
    expected = {row["path"]: row for row in predict_paths(trained_cnn, [root])["predictions"]}
    rows = table_rows(table)
    assert sorted(row["path"] for row in rows) == sorted([*expected, str(broken)])
    for row in rows:
        if row["path"] == str(broken):
            assert row["error"] and not row["genre_1"]
            continue
        best = max(expected[row["path"]]["probabilities"].items(), key=lambda item: item[1])
        assert (row["genre_1"], float(row["probability_1"])) == (expected[row["path"]]["genre"], best[1])
        assert row["true_genre"] == expected[row["path"]]["true"] and row["error"] == ""
    capsys.readouterr()

    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join(lines[:5]) + lines[5][:12])  # stopped after 4 rows, the fifth cut short
    assert main(command) == 1
    assert capsys.readouterr().err.strip().endswith(f"{len(rows) - 4} files added (1 could not be predicted, see "
                                                    "its error column), 4 already there")  # fmt: skip
    again = table_rows(table)
    assert sorted(row["path"] for row in again) == sorted(row["path"] for row in rows)
    assert {row["path"]: row for row in again} == {row["path"]: row for row in rows}

    table.write_text(table.read_text().replace(rows[0]["data_version"], "another-version"))
    assert main(command) == 1
    assert "holds predictions of another model" in capsys.readouterr().err
