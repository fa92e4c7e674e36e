"""Extraction on an existing Dask cluster (`--dask-address`): `dask scheduler` and `dask worker` processes
started the way a user starts them, writing into a local store and, as they would across machines, into S3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from genreflow.core import FeatureConfig
from genreflow.storage.store import FeatureSet
from tests.support.dask_cluster import running_dask_cluster, workers_at
from tests.support.music import tiny_collection
from tests.support.object_store import s3_bucket_in_environment

if TYPE_CHECKING:
    from genreflow.tasks.collection.scan import SourceTrack

N_WORKERS = 2
CONFIG = FeatureConfig(n_mels=32)
BUCKET = "features"


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with s3_bucket_in_environment(tmp_path_factory.mktemp("moto"), BUCKET) as env:
        yield env


@pytest.fixture(scope="module")
def scheduler_address(tmp_path_factory: pytest.TempPathFactory, s3_env: dict[str, str]) -> Iterator[str]:
    """A scheduler and two workers in their own processes; the workers know the S3 endpoint as remote ones would."""
    with running_dask_cluster(tmp_path_factory.mktemp("dask"), n_workers=N_WORKERS, env=s3_env) as address:
        yield address


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> list[SourceTrack]:
    from genreflow.tasks.collection.scan import scan_collection

    return scan_collection(tiny_collection(tmp_path_factory.mktemp("music"))).tracks


def extract_on(address: str, tracks: list[SourceTrack], store: str) -> set[str]:
    """Extract through the scheduler at `address`; return the workers that ran the work."""
    from distributed import get_task_stream

    from genreflow.tasks.cluster import dask_client
    from genreflow.tasks.features.extract import extract_batch

    with dask_client(address, None) as client, get_task_stream(client) as stream:
        assert client.scheduler.address == address
        outcomes = extract_batch(tracks, store, CONFIG, client)
        cluster_workers = set(client.scheduler_info()["workers"])
    assert [outcome.status for outcome in outcomes] == ["extracted"] * len(tracks)
    ran_on = {entry["worker"] for entry in stream.data}
    assert ran_on and ran_on <= cluster_workers
    return ran_on


def test_extraction_runs_on_the_given_schedulers_workers(
    scheduler_address: str, tracks: list[SourceTrack], tmp_path: Path
) -> None:
    store = str(tmp_path / "store.zarr")

    extract_on(scheduler_address, tracks, store)

    assert {record.key for record in FeatureSet.open(store, CONFIG).tracks()} == {t.key for t in tracks}
    assert workers_at(scheduler_address) == N_WORKERS  # the cluster is the user's: it is left running


def test_workers_write_straight_into_an_s3_store(
    scheduler_address: str, tracks: list[SourceTrack], s3_env: dict[str, str]
) -> None:
    store = f"s3://{BUCKET}/store.zarr"

    extract_on(scheduler_address, tracks, store)

    records = FeatureSet.open(store, CONFIG).tracks()
    assert len(records) == len(tracks)
    assert all(record.n_frames > 0 for record in records)
