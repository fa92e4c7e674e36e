"""The report's artifacts, published from a real flow run to a real (temporary) Prefect API and read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.runtime import flow_run

from genreflow.flows.artifacts import REPORT_KEY, REPORT_LINK_KEY, RESULTS_KEY, publish_report_artifacts
from genreflow.tasks.report.build import build_report
from genreflow.tasks.report.statistics import ReportInputError
from tests.support.paths import FIXTURES

FIXTURE = FIXTURES / "report"


@flow(name="publish-report-test")
def publish_in_a_flow(run_dir: str) -> str:
    publish_report_artifacts(run_dir)
    return str(flow_run.get_id())


def read_artifacts(flow_run_id: str) -> dict[str, object]:
    keys = [REPORT_KEY, RESULTS_KEY, REPORT_LINK_KEY]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    return {artifact.key: artifact for artifact in artifacts if str(artifact.flow_run_id) == flow_run_id}


def test_report_artifacts_appear_on_the_flow_run(prefect_api: str, tmp_path: Path) -> None:
    for name in ("results.json", "run.json", "summary.json"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    _, html_path = build_report(tmp_path)

    artifacts = read_artifacts(publish_in_a_flow(str(tmp_path)))

    assert set(artifacts) == {REPORT_KEY, RESULTS_KEY, REPORT_LINK_KEY}
    markdown = artifacts[REPORT_KEY].data
    assert "Paper CNN" in markdown and "](plots/" not in markdown and "Figure (in report.html" in markdown
    rows = json.loads(artifacts[RESULTS_KEY].data)
    assert {(row["model"], row["clip_seconds"]) for row in rows} >= {
        ("cnn", 30.0),
        ("rnn", 1.0),
        ("baseline", 5.0),
        ("crnn", 30.0),
    }
    assert artifacts[REPORT_LINK_KEY].data == f"[{html_path.resolve()}]({html_path.resolve().as_uri()})"


def test_publishing_before_the_report_is_built_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "report.md")):
        publish_report_artifacts(tmp_path)


def test_bad_results_stop_publishing_with_the_file_named(tmp_path: Path) -> None:
    for name in ("report.md", "report.html"):
        (tmp_path / name).write_text("stale")
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ReportInputError, match=str(tmp_path / "results.json")):
        publish_report_artifacts(tmp_path)
