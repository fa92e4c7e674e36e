"""The report's figures, drawn from the analysis into the run folder's plots/ (the drawing itself is in
plots.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from genreflow.tasks.report import paper
from genreflow.tasks.report.analysis import (
    Analysis,
    best_overall,
    cell_label,
    confusion_of,
    has_history,
    histories_of,
    model_sort_key,
)
from genreflow.tasks.report.plots import (
    CostPoint,
    CurvePoint,
    Plot,
    accuracy_by_clip_figure,
    confusion_figure,
    cost_figure,
    save_plot,
    training_curves_figure,
)


def model_colours(models: Sequence[str]) -> dict[str, str]:
    ordered = sorted({*models, *paper.PAPER_ACCURACY}, key=model_sort_key)
    return {model: f"C{index}" for index, model in enumerate(ordered)}


def draw_plots(analysis: Analysis, folder: Path) -> dict[str, Plot]:
    """Every figure the run's results allow, written to `folder` and kept for embedding."""
    colours = model_colours(analysis.models)
    drawn = [
        accuracy_plot(analysis, colours, folder),
        confusion_plot(analysis, folder),
        training_curves_plot(analysis, folder),
        cost_plot(analysis, colours, folder),
    ]
    return {plot.name: plot for plot in drawn if plot is not None}


def accuracy_plot(analysis: Analysis, colours: dict[str, str], folder: Path) -> Plot:
    figure = accuracy_by_clip_figure(accuracy_curves(analysis), paper.PAPER_ACCURACY, colours)
    caption = "Track-level accuracy against clip length per model (bars: spread over seeds); the paper's curves dashed."
    return save_plot(figure, "accuracy_by_clip", caption, folder)


def confusion_plot(analysis: Analysis, folder: Path) -> Plot | None:
    best = best_overall(analysis)
    confusion = None if best is None else confusion_of(analysis, best)
    if confusion is None:
        return None
    genres = analysis.cells[(best.model, best.clip_seconds, best.seeds[0])].genres
    figure = confusion_figure(confusion, genres, f"{cell_label(best)}, summed over seeds")
    caption = f"Track-level confusion matrix of the best model, {cell_label(best)} (rows: true genre)."
    return save_plot(figure, "confusion", caption, folder)


def training_curves_plot(analysis: Analysis, folder: Path) -> Plot | None:
    histories = {cell_label(s): histories_of(analysis, s) for s in analysis.best.values() if has_history(analysis, s)}
    if not histories:
        return None
    caption = (
        "Accuracy per epoch at each model's best clip length: train solid, validation dashed, one colour per seed."
    )
    return save_plot(training_curves_figure(histories), "training_curves", caption, folder)


def cost_plot(analysis: Analysis, colours: dict[str, str], folder: Path) -> Plot | None:
    points = cost_points(analysis, colours)
    if not points:
        return None
    caption = (
        "Track-level accuracy against parameters and against training time; each point is one model at one clip length."
    )
    return save_plot(cost_figure(points), "costs", caption, folder)


def accuracy_curves(analysis: Analysis) -> dict[str, list[CurvePoint]]:
    curves: dict[str, list[CurvePoint]] = defaultdict(list)
    for s in analysis.summaries:
        curves[s.model].append(CurvePoint(s.clip_seconds, s.track_accuracy.mean, s.track_accuracy.sd))
    return dict(curves)


def cost_points(analysis: Analysis, colours: dict[str, str]) -> list[CostPoint]:
    return [
        CostPoint(
            s.model,
            s.clip_seconds,
            colours[s.model],
            s.costs["params"].mean,
            s.costs["train_seconds"].mean,
            s.track_accuracy.mean,
        )
        for s in analysis.summaries
        if s.costs["params"] is not None and s.costs["train_seconds"] is not None
    ]
