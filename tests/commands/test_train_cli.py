"""`genreflow train` end to end: real store, real TensorFlow, real audio files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genreflow.cli import main
from tests.support.stores import write_tiny_store


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


def test_a_full_disk_is_one_line_naming_the_folder_and_leaves_nothing_of_the_model(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tiny_store(tmp_path / "store.zarr", genres=3, tracks_per_genre=3)
    out = small_disk / "cnn"
    assert (
        main(["train", "--store", data.store, "--model", "cnn", "--clip", "0.5", "--epochs", "1", "--out", str(out)])
        == 1
    )
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"genreflow: error: {out}: cannot write the model (No space left on device)")
    assert error.endswith("free space or choose another --out") and "\n" not in error
    assert not [path for path in small_disk.rglob("*") if path.is_file()]
