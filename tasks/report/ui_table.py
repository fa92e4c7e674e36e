"""The results as the Prefect UI's table artifact: one JSON-ready row per (model, clip length)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genreflow.tasks.report import paper
from genreflow.tasks.report.analysis import analyse
from genreflow.tasks.report.document import mean_or_none
from genreflow.tasks.report.statistics import CellSummary
from genreflow.tasks.run_folder import load_run_folder


def results_table(run_dir: Path | str) -> list[dict[str, Any]]:
    """One JSON-ready row per (model, clip length), beside the paper's accuracy: the UI's results table."""
    analysis = analyse(load_run_folder(Path(run_dir)))
    return [_table_row(summary) for summary in analysis.summaries]


def _table_row(summary: CellSummary) -> dict[str, Any]:
    interval = summary.accuracy_interval or (None, None)
    return {
        "model": summary.model,
        "clip_seconds": summary.clip_seconds,
        "seeds": len(summary.seeds),
        "track_accuracy": _rounded(summary.track_accuracy.mean),
        "track_accuracy_sd": _rounded(summary.track_accuracy.sd),
        "track_accuracy_ci_low": _rounded(interval[0]),
        "track_accuracy_ci_high": _rounded(interval[1]),
        "track_macro_f1": _rounded(summary.track_macro_f1.mean),
        "clip_accuracy": _rounded(mean_or_none(summary.clip_accuracy)),
        "clip_macro_f1": _rounded(mean_or_none(summary.clip_macro_f1)),
        "paper_accuracy": paper.PAPER_ACCURACY.get(summary.model, {}).get(summary.clip_seconds),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
