"""Extraction on an existing Dask cluster (`--dask-address`): `dask scheduler` and `dask worker` processes
started the way a user starts them, writing into a local store and, as they would across machines, into S3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from genreflow.config import FeatureConfig
from storage.store import FeatureStore
from tests.support.dask_cluster import running_dask_cluster, workers_at
from tests.support.object_store import running_s3_server

N_WORKERS = 2
CONFIG = FeatureConfig(n_mels=32)


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto server, with this process's environment pointing s3fs at it for the module's tests."""
    import s3fs

    with running_s3_server(tmp_path_factory.mktemp("moto")) as env, pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir("features")
        yield env


@pytest.fixture(scope="module")
def scheduler_address(tmp_path_factory: pytest.TempPathFactory, s3_env: dict[str, str]) -> Iterator[str]:
    """A scheduler and two workers in their own processes; the workers know the S3 endpoint as remote ones would."""
    with running_dask_cluster(tmp_path_factory.mktemp("dask"), n_workers=N_WORKERS, env=s3_env) as address:
        yield address


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> list:
    from tasks.collection import scan_collection
    from tasks.synthetic import write_synthetic_collection

    root = write_synthetic_collection(tmp_path_factory.mktemp("music"), tracks_per_genre=1, seed=0)
    return scan_collection(root).tracks


def extract_on(address: str, tracks: list, store: str) -> set[str]:
    """Extract through the scheduler at `address`; return the workers that ran the work."""
    from distributed import get_task_stream

    from tasks.extract import dask_client, extract_batch

    with dask_client(address, None) as client, get_task_stream(client) as stream:
        assert client.scheduler.address == address
        outcomes = extract_batch(tracks, store, CONFIG, 1.0, client)
        cluster_workers = set(client.scheduler_info()["workers"])
    assert [outcome.status for outcome in outcomes] == ["extracted"] * len(tracks)
    ran_on = {entry["worker"] for entry in stream.data}
    assert ran_on and ran_on <= cluster_workers
    return ran_on


def test_extraction_runs_on_the_given_schedulers_workers(scheduler_address: str, tracks: list, tmp_path: Path) -> None:
    store = str(tmp_path / "store.zarr")

    extract_on(scheduler_address, tracks, store)

    assert [record.track_id for record in FeatureStore.open(store).tracks()] == sorted(t.track_id for t in tracks)
    assert workers_at(scheduler_address) == N_WORKERS  # the cluster is the user's: it is left running


def test_workers_write_straight_into_an_s3_store(scheduler_address: str, tracks: list, s3_env: dict[str, str]) -> None:
    store = "s3://features/store.zarr"

    extract_on(scheduler_address, tracks, store)

    records = FeatureStore.open(store).tracks()
    assert len(records) == len(tracks)
    assert all(record.n_frames > 0 for record in records)
