"""`genreflow report RUN_DIR` rebuilds the report from saved results, and says clearly when it cannot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from genreflow.cli import main
from tests.support.paths import FIXTURES

FIXTURE = FIXTURES / "report"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    for name in ("results.json", "run.json", "summary.json"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    return tmp_path


def test_report_command_rebuilds_from_the_saved_results(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir)]) == 0
    assert str(run_dir / "report.html") in capsys.readouterr().out
    assert "| rnn | 5 s | 0, 1 |" in (run_dir / "report.md").read_text()

    results = json.loads((run_dir / "results.json").read_text())
    results["cells"] = [cell for cell in results["cells"] if cell["model"] != "rnn"]
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "report.html").unlink()

    assert main(["report", str(run_dir)]) == 0
    markdown = (run_dir / "report.md").read_text()
    assert "| rnn | 5 s | 0, 1 |" not in markdown and "| rnn | 5 s | 0 | no result in results.json |" in markdown
    assert (run_dir / "report.html").is_file()


def test_a_folder_without_results_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("genreflow report: ") and str(tmp_path / "results.json") in error and "not found" in error
