"""A local S3-compatible server (moto in server mode) on 127.0.0.1, reached through s3fs like a real bucket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import background_process, free_port, http_ok, venv_script

# moto accepts any credentials; these only have to be present so botocore signs requests.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "genreflow-test",
    "AWS_SECRET_ACCESS_KEY": "genreflow-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def running_s3_server(log_dir: Path) -> Iterator[dict[str, str]]:
    """Start moto; yield the environment (endpoint + credentials) that points s3fs, here or in workers, at it."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [venv_script("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with background_process(command, log_dir / "moto.log", lambda: http_ok(f"{endpoint}/moto-api/")):
        yield {"AWS_ENDPOINT_URL": endpoint, **FAKE_CREDENTIALS}


@contextmanager
def s3_bucket_in_environment(log_dir: Path, bucket: str) -> Iterator[dict[str, str]]:
    """moto running, this process's environment pointing s3fs at it and an empty `bucket` there; yields the
    environment, for processes (Dask workers) that must reach the same bucket."""
    import pytest
    import s3fs

    with running_s3_server(log_dir) as env, pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        # fsspec reuses S3FileSystem instances made with the same arguments: one made for an earlier
        # server would keep calling that server's (now closed) endpoint.
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            s3fs.S3FileSystem().mkdir(bucket)
            yield env
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
