"""Registering the nightly deployment: idempotent, scheduled as documented, one run at a time, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from genreflow.deployments import nightly
from tests.support.prefect_server import PrefectServer, client_pointed_at
from tests.support.processes import free_port


def nightly_options(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--store", str(tmp_path / "store.zarr"), "--out", "relative/out", "--cache", "s3://bucket/cache",
        "--models", "baseline", "cnn", "--clip-seconds", "1", "5", "--timezone", "Europe/Paris", *extra,
    ]  # fmt: skip


def read_nightly(on_server: PrefectServer):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"genreflow/{nightly.DEPLOYMENT_NAME}")
        pool = client.read_work_pool(nightly.WORK_POOL)
    return deployment, pool


def test_help_explains_the_flow_options_and_the_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        nightly.main(["--help"])

    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in (
        "--data",
        "--store",
        "--out",
        "--cache",
        "--models",
        "--clip-seconds",
        "--seeds",
        "--cron",
        "--timezone",
    ):
        assert option in help_text


def test_registering_twice_changes_nothing(on_server: PrefectServer, tmp_path: Path) -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    assert nightly.main(nightly_options(tmp_path)) == 0
    first, _ = read_nightly(on_server)
    assert nightly.main(nightly_options(tmp_path)) == 0
    second, pool = read_nightly(on_server)

    assert second.id == first.id
    assert [schedule.schedule.cron for schedule in second.schedules] == ["0 2 * * *"]
    assert second.schedules[0].schedule.timezone == "Europe/Paris"
    assert second.parameters == first.parameters
    assert second.global_concurrency_limit.limit == 1
    assert second.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
    assert (pool.type, pool.concurrency_limit) == ("process", 1)


def test_parameters_are_the_flows_with_absolute_local_paths(on_server: PrefectServer, tmp_path: Path) -> None:
    assert nightly.main(nightly_options(tmp_path)) == 0
    deployment, _ = read_nightly(on_server)

    parameters = deployment.parameters
    assert parameters["store"] == str(tmp_path / "store.zarr")
    assert parameters["out"] == str(Path("relative/out").resolve())
    assert parameters["cache"] == "s3://bucket/cache"  # URLs are left as they are
    assert parameters["data"] == "synthetic"
    assert (parameters["models"], parameters["clip_seconds"]) == (["baseline", "cnn"], [1.0, 5.0])
    assert deployment.entrypoint == nightly.ENTRYPOINT


@pytest.mark.parametrize(
    ("bad_option", "named_in_error"),
    [(["--data", "/no/such/music"], "/no/such/music"), (["--timezone", "Mars/Olympus"], "Mars/Olympus")],
)
def test_bad_options_are_refused_before_anything_is_registered(
    on_server: PrefectServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad_option: list[str],
    named_in_error: str,
) -> None:
    assert nightly.main(nightly_options(tmp_path, *bad_option)) == 2
    assert named_in_error in capsys.readouterr().err


@pytest.mark.parametrize("api_url", [None, f"http://127.0.0.1:{free_port()}/api"], ids=["unset", "unreachable"])
def test_without_a_server_it_says_how_to_start_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, api_url: str | None
) -> None:
    with client_pointed_at(api_url):
        assert nightly.main(nightly_options(tmp_path)) == 2
    error = capsys.readouterr().err
    assert "make ui" in error and (api_url or "PREFECT_API_URL") in error
