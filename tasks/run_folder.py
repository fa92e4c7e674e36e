"""A run folder, `<out>/<run name>/`: the one place that names its files, writes them and reads them back.

    results.json   every evaluated cell's result (docs/CONTRACTS.md); what the report is built from
    run.json       the run's provenance: data, parameters, versions, machine
    summary.json   every cell with its status, time and accuracy, and the run's state
    report.md, report.html, plots/   the report (tasks/report)

`<out>/latest` links the newest run's folder. The flow writes the three JSON files once its cells have
finished, each whole (genreflow.files); the report and the commands read them here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreflow.files import write_json
from genreflow.tasks.report.statistics import CellResult, ReportInputError

RESULTS_FILE = "results.json"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
LATEST = "latest"  # in the runs folder: a link to the newest run's folder


def write_run_folder(
    run_dir: Path, results: list[dict[str, Any]], run: dict[str, Any], summary: dict[str, Any]
) -> None:
    """The run's three JSON files, each written whole; summary.json last, as the run's last word."""
    write_json(run_dir / RESULTS_FILE, {"cells": results})
    write_json(run_dir / RUN_FILE, run)
    write_json(run_dir / SUMMARY_FILE, summary)


def point_latest_at(run_dir: Path) -> None:
    """Make `<runs>/latest` a link to this run's folder, replaced in one step."""
    link, staged = run_dir.parent / LATEST, run_dir.parent / f".{LATEST}.{os.getpid()}"
    staged.unlink(missing_ok=True)
    staged.symlink_to(run_dir.name, target_is_directory=True)
    staged.replace(link)


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
