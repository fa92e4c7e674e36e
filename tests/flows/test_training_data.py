"""The training-data task at the size of a real collection: Prefect hands it the collection record without
visiting each of its tracks (it did, twice, which made the task grow faster than the tracks: bench/scale.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from genreflow.storage.schema import CollectionRecord, CollectionTrack
from tests.support.stores import write_tiny_store

TRACKS = 300


def test_the_record_reaches_the_task_without_prefect_visiting_each_track(prefect_api: str, tmp_path: Path) -> None:
    from prefect import flow
    from prefect.utilities.collections import visit_collection

    from genreflow.flows.pipeline import training_data_of

    data = write_tiny_store(tmp_path / "store.zarr")
    tracks = tuple(CollectionTrack(f"g{i % 3}/t{i:03d}.wav", f"g{i % 3}", f"absent-{i}") for i in range(TRACKS))
    record = CollectionRecord("music", tracks, "2026-12-07T00:00:00+00:00")
    visits: list[int] = []

    def count(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is visit_collection.__code__:
            visits.append(1)

    @flow
    def prepare() -> dict[str, Any]:
        sys.setprofile(count)  # this thread: Prefect runs a synchronous task in the flow's own
        try:
            return training_data_of(data.store, data.feature_config, record)
        finally:
            sys.setprofile(None)

    prepared = prepare()
    assert len(prepared["description"]["missing"]) == TRACKS  # the task saw every track of the record
    assert len(visits) < TRACKS, f"Prefect visited the parameters {len(visits)} times for {TRACKS} tracks"
