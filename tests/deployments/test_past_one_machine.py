"""The flow as it runs past one machine: a shared Prefect server, an existing Dask cluster (`dask_address`) of
two workers for extraction and training, and the feature store, the result cache and the trained models in an
S3 bucket (moto on 127.0.0.1), reused the next night; a model is then used for prediction straight from there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dask_cluster import running_dask_cluster
from tests.support.music import tiny_collection
from tests.support.object_store import s3_bucket_in_environment
from tests.support.prefect_server import PrefectServer

BUCKET = "genreflow-shared"
STORE, CACHE = f"s3://{BUCKET}/store.zarr", f"s3://{BUCKET}/cache"


@pytest.fixture(scope="module")
def cluster_with_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A bucket, and a `dask scheduler` + `dask worker` that reach it as workers on other machines would."""
    logs = tmp_path_factory.mktemp("cluster")
    with s3_bucket_in_environment(logs, BUCKET) as s3_env, running_dask_cluster(logs, 2, env=s3_env) as address:
        yield address


def run_flow(address: str, music: Path, out: Path) -> dict[str, Any]:
    from genreflow.flows.pipeline import genreflow_flow

    return genreflow_flow(
        data=str(music), store=STORE, cache=CACHE, out=str(out), dask_address=address,
        models=["baseline", "cnn"], clip_seconds=[1.0], epochs=1, crops_per_track=2,
    )  # fmt: skip


def test_store_and_results_in_a_bucket_are_reused_the_next_night(
    cluster_with_bucket: str, on_server: PrefectServer, tmp_path: Path
) -> None:
    import s3fs

    music = tiny_collection(tmp_path / "music")
    first = run_flow(cluster_with_bucket, music, tmp_path / "night-1")
    second = run_flow(cluster_with_bucket, music, tmp_path / "night-2")

    from genreflow.tasks.evaluation.predict import predict_paths

    assert [cell["status"] for cell in first["cells"]] == ["trained", "trained"]
    assert len({cell["worker"] for cell in first["cells"]}) == 2  # both workers trained a cell
    assert [cell["status"] for cell in second["cells"]] == ["reused", "reused"]
    bucket = s3fs.S3FileSystem(skip_instance_cache=True)
    assert bucket.exists(f"{STORE}/zarr.json")
    assert bucket.find(f"{CACHE}/results")  # the persisted task results the second night was served from
    model_dir = first["cells"][1]["result_path"].removesuffix("/result.json")
    assert model_dir.startswith(f"{CACHE}/models/") and bucket.exists(f"{model_dir}/cell.json")
    assert not list(tmp_path.glob("**/model.keras"))  # the models are in the bucket, not on this disk
    predicted = predict_paths(model_dir, [music])
    assert predicted["errors"] == [] and len(predicted["predictions"]) == len(list(music.glob("*/*.wav")))
