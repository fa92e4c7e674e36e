"""`genreflow store info | verify | compact`, run as a user would, on a store `genreflow extract` wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genreflow.cli import main
from genreflow.core import FeatureConfig
from genreflow.storage.maintenance import describe_feature_set
from genreflow.storage.schema import SCHEMA_VERSION, TrackRecord
from genreflow.storage.store import FeatureSet
from genreflow.tasks.collection.synthetic import GENRES


def test_store_info_prints_text_and_json(capsys, extract, scheduler: str, short_tracks: Path, tmp_path: Path):
    store = str(tmp_path / "store.zarr")
    extract("--data", str(short_tracks), "--store", store, "--dask-address", scheduler)

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
    capsys, extract, scheduler: str, short_tracks: Path, tmp_path: Path
):
    store = str(tmp_path / "store.zarr")
    extract("--data", str(short_tracks), "--store", store, "--dask-address", scheduler)
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
    _, out, _ = extract("--data", str(short_tracks), "--store", store, "--dask-address", scheduler)

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


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["store", "info", "/no/such/store.zarr"], "no genreflow store at /no/such/store.zarr"),
        (["store", "compact", "/no/such/store.zarr"], "no genreflow store at /no/such/store.zarr"),
        (["store", "verify", "/no/such/store.zarr"], "no genreflow store at /no/such/store.zarr"),
        (["store", "compact", "/no/such/store.zarr", "--min-age", "-1"], "--min-age must be 0 or more hours, got -1"),
    ],
)
def test_bad_arguments_fail_with_a_clear_message(capsys, command: list[str], message: str):
    assert main(command) == 1
    assert message in capsys.readouterr().err
