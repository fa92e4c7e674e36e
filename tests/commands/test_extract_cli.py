"""`genreflow extract`, `genreflow store info | verify | compact`, run as a user would, on a real cluster and store."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from genreflow.cli import main
from genreflow.core import FeatureConfig
from genreflow.storage.maintenance import describe_feature_set
from genreflow.storage.schema import BATCHES_GROUP, FEATURES_GROUP, SCHEMA_VERSION, TrackRecord
from genreflow.storage.store import FeatureSet
from genreflow.tasks.cluster import dask_client
from genreflow.tasks.collection.synthetic import GENRES, write_synthetic_collection


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with dask_client(None, 1) as client:
        yield client.scheduler.address


@pytest.fixture(scope="module")
def short_tracks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 3 s synthetic track per genre and a text file posing as audio."""
    folder = write_synthetic_collection(tmp_path_factory.mktemp("short"), tracks_per_genre=1, seed=0, seconds=3.0)
    (folder / GENRES[0] / "notes.wav").write_text("not audio")
    return folder


def extract(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["extract", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_extract_reports_quarantine_and_a_rerun_skips(capsys, scheduler: str, short_tracks: Path, tmp_path: Path):
    common = ["--data", str(short_tracks), "--store", str(tmp_path / "store.zarr"), "--dask-address", scheduler]

    code, first, _ = extract(capsys, *common)
    rerun_code, second, _ = extract(capsys, *common)

    assert code == rerun_code == 0
    n = len(GENRES)
    assert "ignored .synthetic-manifest.json: hidden" in first
    assert f"{n + 1} to extract ({n + 1} new), 0 complete already" in first
    assert f"extracted {n}, skipped 0, quarantined 1, audio 0.01 h" in first
    assert f"quarantined {GENRES[0]}/notes.wav: not an audio file" in first
    assert "1 to extract (1 quarantined before: trying again)" in second
    assert f"extracted 0, skipped {n}, quarantined 1" in second


def test_store_info_prints_text_and_json(capsys, scheduler: str, short_tracks: Path, tmp_path: Path):
    store = str(tmp_path / "store.zarr")
    extract(capsys, "--data", str(short_tracks), "--store", store, "--dask-address", scheduler)

    assert main(["store", "info", store]) == 0
    text = capsys.readouterr().out
    assert main(["store", "info", store, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)

    assert f"  tracks       {len(GENRES)} (" in text and "  quarantined  1" in text and "  incomplete   0 (" in text
    assert f"collection     {short_tracks.resolve()} (recorded " in text
    assert "chunks         not read here: `genreflow store verify`" in text  # info never claims the chunks are sound
    [features] = info["feature_sets"]
    assert features["tracks"] == len(GENRES) and features["feature_config"]["n_mels"] == 128
    assert features["quarantined"][0]["source"] == str(short_tracks / GENRES[0] / "notes.wav")
    assert features["quarantined"][0]["reason"].startswith("not an audio file")
    [collection] = info["collections"]
    assert collection["root"] == str(short_tracks.resolve()) and collection["tracks"] == len(GENRES) + 1
    assert collection["feature_sets"] == {
        features["feature_id"]: {"ready": len(GENRES), "quarantined": 1, "missing": 0}
    }
    assert info["schema_version"] == SCHEMA_VERSION and info["bytes_on_disk"] > 0


def test_store_verify_names_damaged_tracks_by_collection_and_extract_repairs_them(
    capsys, scheduler: str, short_tracks: Path, tmp_path: Path
):
    store = str(tmp_path / "store.zarr")
    extract(capsys, "--data", str(short_tracks), "--store", store, "--dask-address", scheduler)
    assert main(["store", "verify", store]) == 0
    assert "no damage found" in capsys.readouterr().out
    chunk = next((tmp_path / "store.zarr").rglob("c.0.0.0"))
    altered = bytearray(chunk.read_bytes())
    altered[100] ^= 1
    chunk.write_bytes(bytes(altered))

    assert main(["store", "verify", store]) == 1
    text = capsys.readouterr().out
    assert main(["store", "verify", store, "--json"]) == 1
    [row] = json.loads(capsys.readouterr().out)["damaged"]
    _, out, _ = extract(capsys, "--data", str(short_tracks), "--store", store, "--dask-address", scheduler)

    assert row["kind"] == "track" and row["tracks"][0].startswith(str(short_tracks.resolve()))
    assert "c.0.0.0 fails its checksum (truncated or altered)" in row["reason"]
    assert text.startswith(f"track {row['tracks'][0]} (key ") and "fails its checksum" in text
    assert "2 to extract (1 damaged in the store (batch " in out and "1 quarantined before: trying again)" in out
    assert main(["store", "verify", store]) == 0


def test_store_compact_says_what_it_removes_and_what_it_leaves(capsys, tmp_path: Path):
    location = str(tmp_path / "store.zarr")
    store = FeatureSet.create_or_open(location, FeatureConfig(n_mels=8))
    for _ in range(2):  # extracted twice (a damaged copy redone, say): the first batch is dead
        store.write_tracks([(TrackRecord("a", 5, 0.1, "/music/rock/a.wav"), np.zeros((5, 8), np.float32))])

    assert main(["store", "compact", location]) == 0
    young = capsys.readouterr().out
    assert main(["store", "compact", location, "--min-age", "0", "--dry-run", "--json"]) == 0
    dry_run = json.loads(capsys.readouterr().out)
    assert main(["store", "compact", location, "--min-age", "0"]) == 0
    compacted = capsys.readouterr().out

    assert "removed 0 batch array(s)" in young and "left 1 that died less than 24 h ago" in young
    assert [entry["reason"] for entry in dry_run["removed"]] == ["superseded"] and dry_run["dry_run"] is True
    assert compacted.startswith("removed 1 batch array(s) (1 superseded, 0 incomplete, 0 damaged)")
    assert describe_feature_set(FeatureSet.open(location, FeatureConfig(n_mels=8)))["superseded_copies"] == 0


def test_synthetic_data_is_written_beside_the_store_on_a_local_cluster(capsys, tmp_path: Path):
    code, out, _ = extract(capsys, "--store", str(tmp_path / "store.zarr"), "--tracks-per-genre", "1", "--workers", "1")

    assert code == 0
    assert len(list((tmp_path / "synthetic-seed0-n1").glob("*/*.wav"))) == len(GENRES)
    assert f"extracted {len(GENRES)}, skipped 0, quarantined 0, audio 0.05 h" in out


def test_synthetic_dir_puts_the_collection_elsewhere(capsys, scheduler: str, tmp_path: Path):
    code, _, _ = extract(
        capsys,
        "--store",
        str(tmp_path / "store.zarr"),
        "--synthetic-dir",
        str(tmp_path / "audio"),
        "--tracks-per-genre",
        "1",
        "--synthetic-seed",
        "3",
        "--dask-address",
        scheduler,
    )

    assert code == 0
    assert (tmp_path / "audio" / "synthetic-seed3-n1" / ".synthetic-manifest.json").exists()


def test_a_store_that_cannot_be_written_is_an_error_naming_the_tracks(capsys, scheduler: str, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(write_synthetic_collection(tmp_path / "one", 1, seed=0, seconds=3.0) / GENRES[1], data / GENRES[1])
    store = tmp_path / "store.zarr"
    extract(capsys, "--data", str(data), "--store", str(store), "--dask-address", scheduler)
    batches = store / FEATURES_GROUP / FeatureConfig().identity() / BATCHES_GROUP
    shutil.rmtree(batches)
    batches.write_text("a file where the store needs a folder")

    code, out, err = extract(capsys, "--data", str(data), "--store", str(store), "--dask-address", scheduler)

    assert code == 1
    assert "extracted 0, skipped 0, quarantined 0" in out
    assert f"{GENRES[1]}/{GENRES[1]}.00000.wav: StoreWriteError: writing to the store {store} failed" in err
    assert "not quarantined" in err


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["extract", "--data", "/no/such/folder"], "/no/such/folder does not exist"),
        (["store", "info", "/no/such/store.zarr"], "no genreflow store at /no/such/store.zarr"),
        (["store", "compact", "/no/such/store.zarr"], "no genreflow store at /no/such/store.zarr"),
        (["store", "verify", "/no/such/store.zarr"], "no genreflow store at /no/such/store.zarr"),
        (["store", "compact", "/no/such/store.zarr", "--min-age", "-1"], "--min-age must be 0 or more hours, got -1"),
    ],
)
def test_bad_arguments_fail_with_a_clear_message(capsys, command: list[str], message: str):
    assert main(command) == 1
    assert message in capsys.readouterr().err


def test_a_folder_without_audio_fails_with_a_clear_message(capsys, tmp_path: Path):
    (tmp_path / "rock").mkdir()
    code, _, err = extract(capsys, "--data", str(tmp_path), "--store", str(tmp_path / "store.zarr"))
    assert code == 1 and "no audio files in" in err
