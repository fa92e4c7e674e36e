"""`genreflow extract`, run as a user would, on a real cluster and store."""

from __future__ import annotations

import shutil
from pathlib import Path

from genreflow.core import FeatureConfig
from genreflow.storage.schema import BATCHES_GROUP, FEATURES_GROUP
from genreflow.tasks.collection.synthetic import GENRES, write_synthetic_collection


def test_extract_reports_quarantine_and_a_rerun_skips(extract, scheduler: str, short_tracks: Path, tmp_path: Path):
    common = ["--data", str(short_tracks), "--store", str(tmp_path / "store.zarr"), "--dask-address", scheduler]

    code, first, _ = extract(*common)
    rerun_code, second, _ = extract(*common)

    assert code == rerun_code == 0
    n = len(GENRES)
    assert "ignored .synthetic-manifest.json: hidden" in first
    assert f"{n + 1} to extract ({n + 1} new), 0 complete already" in first
    assert f"extracted {n}, skipped 0, quarantined 1, audio 0.01 h" in first
    assert f"quarantined {GENRES[0]}/notes.wav: not an audio file" in first
    assert "1 to extract (1 quarantined before: trying again)" in second
    assert f"extracted 0, skipped {n}, quarantined 1" in second


def test_synthetic_data_is_written_beside_the_store_on_a_local_cluster(extract, tmp_path: Path):
    code, out, _ = extract("--store", str(tmp_path / "store.zarr"), "--tracks-per-genre", "1", "--workers", "1")

    assert code == 0
    assert len(list((tmp_path / "synthetic-seed0-n1").glob("*/*.wav"))) == len(GENRES)
    assert f"extracted {len(GENRES)}, skipped 0, quarantined 0, audio 0.05 h" in out


def test_synthetic_dir_puts_the_collection_elsewhere(extract, scheduler: str, tmp_path: Path):
    code, _, _ = extract(
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


def test_a_store_that_cannot_be_written_is_an_error_naming_the_tracks(extract, scheduler: str, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(write_synthetic_collection(tmp_path / "one", 1, seed=0, seconds=3.0) / GENRES[1], data / GENRES[1])
    store = tmp_path / "store.zarr"
    extract("--data", str(data), "--store", str(store), "--dask-address", scheduler)
    batches = store / FEATURES_GROUP / FeatureConfig().identity() / BATCHES_GROUP
    shutil.rmtree(batches)
    batches.write_text("a file where the store needs a folder")

    code, out, err = extract("--data", str(data), "--store", str(store), "--dask-address", scheduler)

    assert code == 1
    assert "extracted 0, skipped 0, quarantined 0" in out
    assert f"{GENRES[1]}/{GENRES[1]}.00000.wav: StoreWriteError: writing to the store {store} failed" in err
    assert "not quarantined" in err


def test_a_missing_folder_fails_with_a_clear_message(extract):
    code, _, err = extract("--data", "/no/such/folder")
    assert code == 1 and "/no/such/folder does not exist" in err


def test_a_folder_without_audio_fails_with_a_clear_message(extract, tmp_path: Path):
    (tmp_path / "rock").mkdir()
    code, _, err = extract("--data", str(tmp_path), "--store", str(tmp_path / "store.zarr"))
    assert code == 1 and "no audio files in" in err


def test_a_store_path_that_is_a_file_is_named_not_reported_as_file_exists(extract, tmp_path: Path):
    plain = tmp_path / "store.zarr"
    plain.write_text("not a store")
    code, _, err = extract("--data", "synthetic", "--store", str(plain), "--tracks-per-genre", "1")
    assert code == 1 and f"{plain} is a file, not a store" in err and "Errno" not in err
    assert plain.read_text() == "not a store"
