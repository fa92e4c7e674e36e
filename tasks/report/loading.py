"""Reading a run folder for its report: results.json (required), run.json and summary.json (optional)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreflow.tasks.report.statistics import CellResult, ReportInputError

RESULTS_FILE = "results.json"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class RunFolder:
    """What a run left behind; `run` and `summary` are empty when their files are absent."""

    path: Path
    cells: list[CellResult]
    run: dict[str, Any]
    summary: dict[str, Any]


def load_run_folder(run_dir: Path) -> RunFolder:
    """Read a run folder; results.json is required, run.json and summary.json are optional."""
    run_dir = Path(run_dir)
    results_path = run_dir / RESULTS_FILE
    if not results_path.is_file():
        raise ReportInputError(
            f"{results_path}: not found; is {run_dir} a genreflow run folder whose training finished?"
        )
    results = _read_json(results_path)
    if not isinstance(results.get("cells"), list):
        raise ReportInputError(f"{results_path}: expected an object with a 'cells' list")
    cells = [
        CellResult.from_json(values, f"{results_path} cell {index}") for index, values in enumerate(results["cells"])
    ]
    run = _read_optional_json(run_dir / RUN_FILE)
    return RunFolder(run_dir, cells, run, _summary_of_same_run(_read_optional_json(run_dir / SUMMARY_FILE), run))


def _summary_of_same_run(summary: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """summary.json only if it belongs to the run in run.json: a rerun may report before rewriting it."""
    same_run = summary.get("flow_run_id") == run.get("flow_run_id") or not run
    return summary if same_run else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportInputError(f"{path}: not readable JSON ({error})") from error
    if not isinstance(content, dict):
        raise ReportInputError(f"{path}: expected a JSON object, found {type(content).__name__}")
    return content


def _read_optional_json(path: Path) -> dict[str, Any]:
    return _read_json(path) if path.is_file() else {}
