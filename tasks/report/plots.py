"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: figures are plain objects, so drawing is safe inside Prefect's worker threads and leaves no
global state behind. Each function takes plain numbers, so it can be tested without a run folder.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from genreflow.files import write_bytes

DPI = 100
PAPER_STYLE = {"linestyle": "--", "marker": "x", "alpha": 0.8}


@dataclass(frozen=True)
class Plot:
    """A figure saved as PNG: its file name stem, its caption and its bytes (for embedding)."""

    name: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class CurvePoint:
    clip_seconds: float
    mean: float
    sd: float | None


@dataclass(frozen=True)
class CostPoint:
    model: str
    clip_seconds: float
    colour: str
    params: float
    train_seconds: float
    accuracy: float


def save_plot(figure: Figure, name: str, caption: str, folder: Path) -> Plot:
    """Render `figure` to PNG once, write it to `folder/<name>.png` and keep the bytes for the HTML."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    png = buffer.getvalue()
    write_bytes(folder / f"{name}.png", png)
    return Plot(name, caption, png)


def accuracy_by_clip_figure(
    curves: Mapping[str, Sequence[CurvePoint]], paper: Mapping[str, Mapping[float, float]], colours: Mapping[str, str]
) -> Figure:
    """Track accuracy against clip length per model (bars: spread over seeds), the paper's curves dashed."""
    figure = Figure(figsize=(7.5, 4.5), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    for model, points in curves.items():
        axes.errorbar(
            [p.clip_seconds for p in points],
            [p.mean for p in points],
            yerr=[p.sd or 0.0 for p in points],
            marker="o",
            capsize=3,
            color=colours[model],
            label=f"{model} (this run)",
        )
    for model, accuracy in paper.items():
        clips = sorted(accuracy)
        axes.plot(
            clips,
            [accuracy[c] for c in clips],
            color=colours.get(model, "grey"),
            label=f"{model} (paper)",
            **PAPER_STYLE,
        )
    axes.set_xscale("log")
    axes.set_xticks(
        sorted({p.clip_seconds for points in curves.values() for p in points} | {c for a in paper.values() for c in a})
    )
    axes.xaxis.set_major_formatter("{x:g} s")
    axes.set_ylim(0, 1)
    axes.set_xlabel("clip length")
    axes.set_ylabel("track-level test accuracy")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", ncols=2)
    return figure


def confusion_figure(confusion: Sequence[Sequence[int]], genres: Sequence[str], title: str) -> Figure:
    """Counts of true (rows) against predicted (columns) genre, each cell labelled."""
    figure = Figure(figsize=(6.5, 5.5), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = range(len(genres))
    axes.set_xticks(ticks, genres, rotation=45, ha="right")
    axes.set_yticks(ticks, genres)
    threshold = max(max(row) for row in confusion) / 2
    for row, counts in enumerate(confusion):
        for column, count in enumerate(counts):
            axes.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if count > threshold else "black",
            )
    axes.set_xlabel("predicted genre")
    axes.set_ylabel("true genre")
    axes.set_title(title, fontsize="medium")
    return figure


def training_curves_figure(histories: Mapping[str, Sequence[Mapping[str, Sequence[float]]]]) -> Figure:
    """Per model, train (solid) and validation (dashed, where tracks were held out) accuracy per epoch, one line
    pair per seed."""
    figure = Figure(figsize=(3.2 * len(histories) + 1, 3.6), dpi=DPI, layout="constrained")
    panels = figure.subplots(1, len(histories), squeeze=False, sharey=True)[0]
    for axes, (label, runs) in zip(panels, histories.items(), strict=True):
        for seed_index, history in enumerate(runs):
            colour = f"C{seed_index}"
            epochs = range(1, len(history["accuracy"]) + 1)
            axes.plot(epochs, history["accuracy"], color=colour, label="train" if seed_index == 0 else None)
            if history.get("val_accuracy"):
                axes.plot(
                    epochs,
                    history["val_accuracy"],
                    color=colour,
                    linestyle="--",
                    label="validation" if seed_index == 0 else None,
                )
        axes.set_title(label, fontsize="medium")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("accuracy")
    panels[0].legend(fontsize="small")
    return figure


def cost_figure(points: Sequence[CostPoint]) -> Figure:
    """Accuracy against parameter count and against training time: what each point of accuracy costs."""
    figure = Figure(figsize=(9, 4), dpi=DPI, layout="constrained")
    by_params, by_time = figure.subplots(1, 2, sharey=True)
    for axes, attribute, label in (
        (by_params, "params", "parameters"),
        (by_time, "train_seconds", "training time per cell (s)"),
    ):
        labelled: set[str] = set()
        for point in points:
            x = max(getattr(point, attribute), 1)
            axes.scatter(x, point.accuracy, color=point.colour, label=None if point.model in labelled else point.model)
            axes.annotate(
                f"{point.clip_seconds:g} s", (x, point.accuracy), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
            labelled.add(point.model)
        axes.set_xscale("log")
        axes.set_xlabel(label)
        axes.grid(alpha=0.3)
    by_params.set_ylabel("track-level test accuracy")
    by_params.legend(fontsize="small")
    return figure
