"""End to end: register the nightly deployment on a real Prefect server, trigger two runs with tiny parameters,
let a process worker run them, and check through the API (and the UI, in headless Chromium) what happened."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest

from genreflow.deployments import nightly
from tests.support.music import TRACK_COUNT, tiny_collection
from tests.support.paths import REPO_ROOT
from tests.support.prefect_server import PrefectServer, client_pointed_at
from tests.support.processes import venv_script

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import DeploymentResponse

TINY_GRID = ["--models", "baseline", "--clip-seconds", "1", "--epochs", "1", "--workers", "1"]
REPORT_ARTIFACT = "genreflow-report"
# Where to keep the UI screenshot (the README's docs/ui-run.png is made by setting this); else a temp folder.
SCREENSHOT_TARGET = os.environ.get("GENREFLOW_UI_SCREENSHOT")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@dataclass
class NightlyRuns:
    """What the module's single scenario produced, for the tests below to check."""

    server: PrefectServer
    out: Path
    deployment: DeploymentResponse
    first_id: UUID
    second_id: UUID
    waiting_after_first_worker: str
    first_summary: dict[str, Any]


def run_logged(command: list[str], server: PrefectServer, log: Path, timeout: float) -> str:
    """Run a command against the server and return its output; on failure, the error shows that output."""
    env = {**os.environ, **server.client_env(), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    log.write_text(output)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
    return output


def run_worker_once(server: PrefectServer, log: Path) -> None:
    """`make worker`, polling once: takes the runs it may (the pool allows one) and waits for them to finish."""
    command = [
        venv_script("prefect"),
        "worker",
        "start",
        "--pool",
        nightly.WORK_POOL,
        "--type",
        "process",
        "--run-once",
    ]
    run_logged(command, server, log, timeout=300)


def state_of(flow_run_id: UUID) -> FlowRun:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def manual_run(server: PrefectServer, name: str, log: Path) -> UUID:
    """Trigger a run the way the README says (`prefect deployment run ... -p`); returns its id."""
    command = [venv_script("prefect"), "deployment", "run", name, "-p", "epochs=1"]
    output = run_logged(command, server, log, timeout=120)
    return UUID(re.search(r"UUID: ([0-9a-f-]{36})", output).group(1))


@pytest.fixture(scope="module")
def nightly_runs(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> NightlyRuns:
    """Deploy with `python -m genreflow.deployments.nightly`, trigger two runs (API, then CLI), run a worker twice."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    work = tmp_path_factory.mktemp("nightly")
    music = tiny_collection(work / "music")
    locations = ["--data", str(music), "--store", str(work / "store.zarr"), "--out", str(work / "out"),
                 "--cache", str(work / "cache")]  # fmt: skip
    deploy = [sys.executable, "-m", "genreflow.deployments.nightly", *TINY_GRID, *locations]
    run_logged(deploy, prefect_server, work / "deploy.log", timeout=180)

    name = f"genreflow/{nightly.DEPLOYMENT_NAME}"
    with client_pointed_at(prefect_server.api_url):
        first_id = run_deployment(name, timeout=0).id
        second_id = manual_run(prefect_server, name, work / "trigger.log")
        run_worker_once(prefect_server, work / "worker-1.log")
        waiting = state_of(second_id).state.type.value
        first_summary = json.loads((work / "out" / "latest" / "summary.json").read_text())
        run_worker_once(prefect_server, work / "worker-2.log")
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(name)
    return NightlyRuns(prefect_server, work / "out", deployment, first_id, second_id, waiting, first_summary)


@pytest.fixture
def runs(nightly_runs: NightlyRuns, on_server: PrefectServer) -> NightlyRuns:
    """The scenario's results, with this process's client pointed at its server."""
    return nightly_runs


def test_the_schedule_is_the_documented_cron(runs: NightlyRuns) -> None:
    schedules = [(entry.schedule.cron, entry.schedule.timezone) for entry in runs.deployment.schedules]
    assert schedules == [(nightly.NIGHTLY_CRON, nightly.DEFAULT_TIMEZONE)]


def test_the_second_run_waits_for_the_first(runs: NightlyRuns) -> None:
    first, second = state_of(runs.first_id), state_of(runs.second_id)

    assert runs.waiting_after_first_worker == "SCHEDULED"
    assert first.state.is_completed() and second.state.is_completed()
    assert second.start_time >= first.end_time


def test_a_run_completes_with_its_task_runs_and_report_artifact(runs: NightlyRuns) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    only_first = FlowRunFilter(id=FlowRunFilterId(any_=[runs.first_id]))
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=only_first)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[REPORT_ARTIFACT])), flow_run_filter=only_first
        )

    names = {task_run.name for task_run in task_runs}
    assert {"train-baseline-1s-seed0", "evaluate-baseline-1s-seed0"} <= names
    assert all(task_run.state.is_completed() for task_run in task_runs)
    assert artifacts and "baseline" in str(artifacts[0].data)


def test_an_unchanged_second_night_reuses_every_track_and_cell(runs: NightlyRuns) -> None:
    second_summary = json.loads((runs.out / "latest" / "summary.json").read_text())
    second_run = json.loads((runs.out / "latest" / "run.json").read_text())

    assert runs.first_summary["flow_run_id"] == str(runs.first_id)
    assert [cell["status"] for cell in runs.first_summary["cells"]] == ["trained"]
    assert second_summary["flow_run_id"] == str(runs.second_id)
    assert Path(runs.first_summary["run_dir"]).parent == Path(second_summary["run_dir"]).parent == runs.out.resolve()
    assert runs.first_summary["run_dir"] != second_summary["run_dir"]  # each night keeps its own report
    assert [cell["status"] for cell in second_summary["cells"]] == ["reused"]
    assert second_run["extraction"] == {"extracted": 0, "skipped": TRACK_COUNT, "quarantined": 0}


def test_the_ui_shows_the_run_and_its_task_runs(runs: NightlyRuns, tmp_path: Path) -> None:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("headless Chromium needs Debian's chromium and chromium-driver")
    screenshot = Path(SCREENSHOT_TARGET) if SCREENSHOT_TARGET else tmp_path / "ui-run.png"
    run_name = state_of(runs.first_id).name

    with headless_chromium() as browser:
        browser.get(f"{runs.server.ui_url}/runs/flow-run/{runs.first_id}")
        wait_for_text(browser, run_name)
        wait_for_text(browser, "Completed")
        open_tab(browser, "Task Runs")
        wait_for_text(browser, "train-baseline-1s-seed0")
        browser.save_screenshot(str(screenshot))

    assert screenshot.stat().st_size > 10_000


def headless_chromium():
    """Debian's Chromium through its own chromedriver: no browser download, no network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1050",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for_text(browser, text: str, seconds: float = 60) -> None:
    """Wait until `text` is visible in the page body (the title also holds the run's name, but is never shown)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, seconds).until(lambda driver: text in driver.find_element(By.TAG_NAME, "body").text)


def open_tab(browser, label: str) -> None:
    from selenium.webdriver.common.by import By

    tabs = browser.find_elements(By.CSS_SELECTOR, "li.p-tab, button[role=tab]")
    next(tab for tab in tabs if tab.text.strip().startswith(label)).click()
