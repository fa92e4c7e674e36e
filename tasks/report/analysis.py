"""What the report says, before it is written: results grouped per (model, clip length) over seeds, the best
clip of each model, the cells that produced nothing, and what the figures need of them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from genreflow.models.registry import MODELS, model_names
from genreflow.tasks.report.statistics import CellResult, CellSummary, summarise
from genreflow.tasks.run_folder import RESULTS_FILE, RunFolder

REASON_CHARACTERS = 200


@dataclass(frozen=True)
class Analysis:
    """The run folder summarised: one CellSummary per (model, clip length), the best clip of each model."""

    folder: RunFolder
    summaries: list[CellSummary]
    best: dict[str, CellSummary]
    unfinished: list[dict[str, Any]]
    cells: dict[tuple[str, float, int], CellResult] = field(repr=False)

    @property
    def models(self) -> list[str]:
        expected = self.folder.run.get("parameters", {}).get("models", [])
        unfinished = [entry["model"] for entry in self.unfinished]
        return sorted({*expected, *unfinished, *(s.model for s in self.summaries)}, key=model_sort_key)

    @property
    def clip_lengths(self) -> list[float]:
        expected = self.folder.run.get("parameters", {}).get("clip_seconds", [])
        return sorted({*map(float, expected), *(s.clip_seconds for s in self.summaries)})

    def summary(self, model: str, clip_seconds: float) -> CellSummary | None:
        return next((s for s in self.summaries if (s.model, s.clip_seconds) == (model, clip_seconds)), None)


def analyse(folder: RunFolder) -> Analysis:
    groups: dict[tuple[str, float], list[CellResult]] = defaultdict(list)
    for cell in folder.cells:
        groups[(cell.model, cell.clip_seconds)].append(cell)
    summaries = [summarise(groups[key]) for key in sorted(groups, key=lambda key: (model_sort_key(key[0]), key[1]))]
    best: dict[str, CellSummary] = {}
    for summary in summaries:
        if summary.model not in best or summary.track_accuracy.mean > best[summary.model].track_accuracy.mean:
            best[summary.model] = summary
    cells = {(cell.model, cell.clip_seconds, cell.seed): cell for cell in folder.cells}
    return Analysis(folder, summaries, best, unfinished_cells(folder), cells)


def display_name(model: str) -> str:
    """The registry's name for people ("CNN"), or the model's own for one no longer registered."""
    return MODELS[model].display_name if model in MODELS else model


def model_sort_key(model: str) -> tuple[int, str]:
    """Models in the registry's order, unknown ones after them."""
    order = model_names()
    return (order.index(model) if model in order else len(order), model)


def unfinished_cells(folder: RunFolder) -> list[dict[str, Any]]:
    """Cells the flow reported as failed or skipped (a clip too short for the model), and cells the run's
    parameters asked for that have no result."""
    finished = {(cell.model, cell.clip_seconds, cell.seed) for cell in folder.cells}
    unfinished = {
        (entry["model"], float(entry["clip_seconds"]), int(entry["seed"])): (
            entry["status"],
            first_line(entry.get("error") or entry["status"]),
        )
        for entry in folder.summary.get("cells", [])
        if entry.get("status") in ("failed", "skipped")
    }
    parameters = folder.run.get("parameters", {})
    for model in parameters.get("models", []):
        for clip in parameters.get("clip_seconds", []):
            for seed in parameters.get("seeds", []):
                unfinished.setdefault((model, float(clip), int(seed)), ("missing", f"no result in {RESULTS_FILE}"))
    return [
        {"model": model, "clip_seconds": clip, "seed": seed, "status": status, "reason": reason}
        for (model, clip, seed), (status, reason) in sorted(
            unfinished.items(), key=lambda item: (model_sort_key(item[0][0]), item[0][1:])
        )
        if (model, clip, seed) not in finished
    ]


def first_line(text: str) -> str:
    """An error's first line, cut short: a traceback would swamp the table it sits in."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= REASON_CHARACTERS else line[: REASON_CHARACTERS - 1] + "…"


def cell_label(summary: CellSummary) -> str:
    """'cnn at 5 s'."""
    return f"{summary.model} at {summary.clip_seconds:g} s"


def best_overall(analysis: Analysis) -> CellSummary | None:
    return max(analysis.best.values(), key=lambda s: s.track_accuracy.mean, default=None)


def confusion_of(analysis: Analysis, summary: CellSummary) -> list[list[int]] | None:
    """The track-level confusion matrix summed over the seeds; None if a seed lacks one."""
    matrices = [
        analysis.cells[(summary.model, summary.clip_seconds, seed)].metrics["track"].get("confusion")
        for seed in summary.seeds
    ]
    if not all(matrices):
        return None
    return [[sum(values) for values in zip(*rows, strict=True)] for rows in zip(*matrices, strict=True)]


def histories_of(analysis: Analysis, summary: CellSummary) -> list[dict[str, list[float]]]:
    runs = [analysis.cells[(summary.model, summary.clip_seconds, seed)].history for seed in summary.seeds]
    return [run for run in runs if run.get("accuracy")]


def has_history(analysis: Analysis, summary: CellSummary) -> bool:
    return any(
        analysis.cells[(summary.model, summary.clip_seconds, seed)].history.get("accuracy") for seed in summary.seeds
    )
