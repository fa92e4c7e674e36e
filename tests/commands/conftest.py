"""What the tests of several commands share: a Dask scheduler, `genreflow extract`, short tracks, a store, a model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from genreflow.cli import main
from genreflow.core import FeatureConfig
from genreflow.tasks.cluster import dask_client
from genreflow.tasks.collection.synthetic import GENRES, write_synthetic_collection
from tests.support.stores import synthetic_audio_store


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with dask_client(None, 1) as client:
        yield client.scheduler.address


@pytest.fixture
def extract(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`genreflow extract ARGS` as a user runs it: its exit status, what it printed and what it printed as errors."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["extract", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def short_tracks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 3 s synthetic track per genre and a text file posing as audio."""
    folder = write_synthetic_collection(tmp_path_factory.mktemp("short"), tracks_per_genre=1, seed=0, seconds=3.0)
    (folder / GENRES[0] / "notes.wav").write_text("not audio")
    return folder


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """3 synthetic 2 s tracks per genre and the store they are extracted into."""
    base = tmp_path_factory.mktemp("cli")
    root, data = synthetic_audio_store(base, tracks_per_genre=3, seconds=2.0, config=FeatureConfig())
    return root, data.store


@pytest.fixture(scope="session")
def trained_cnn(collection: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CNN trained for one epoch by `genreflow train`; session-wide so that it trains once for train and predict."""
    model_dir = tmp_path_factory.mktemp("out") / "cnn-1s"
    assert main(["train", "--store", collection[1], "--model", "cnn", "--clip", "1", "--out", str(model_dir),
                 "--epochs", "1", "--batch-size", "8"]) == 0  # fmt: skip
    return model_dir
