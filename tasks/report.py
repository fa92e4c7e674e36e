"""The run report: every result beside the paper's, as report.md and one self-contained report.html.

The report is a list of sections built once from the run folder (results.json, run.json, summary.json; see
docs/CONTRACTS.md) and rendered twice, to Markdown and to HTML, so the two never disagree. Missing pieces (a
failed cell, one seed, no RNN, no run.json) become sentences in the report, not errors: it is written at
the end of every flow run, including the runs that went wrong.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks import paper
from tasks.report_plots import (
    CostPoint,
    CurvePoint,
    Plot,
    accuracy_by_clip_figure,
    confusion_figure,
    cost_figure,
    save_plot,
    training_curves_figure,
)
from tasks.report_stats import (
    BOOTSTRAP_RESAMPLES,
    Cell,
    CellSummary,
    ReportInputError,
    Spread,
    mcnemar,
    paired_correctness,
    summarise,
)

RESULTS_FILE = "results.json"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
CNN, RNN, BASELINE = "cnn", "rnn", "baseline"
MODEL_ORDER = (BASELINE, CNN, RNN, "crnn")
MODEL_NAMES = {CNN: "CNN", RNN: "RNN", "crnn": "CRNN", BASELINE: "baseline"}
REASON_CHARACTERS = 200
SIGNIFICANCE = 0.05


# ---- reading the run folder ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunFolder:
    """What a run left behind; `run` and `summary` are empty when their files are absent."""

    path: Path
    cells: list[Cell]
    run: dict[str, Any]
    summary: dict[str, Any]


def load_run_folder(run_dir: Path) -> RunFolder:
    """Read a run folder; results.json is required, run.json and summary.json are optional."""
    run_dir = Path(run_dir)
    results_path = run_dir / RESULTS_FILE
    if not results_path.is_file():
        raise ReportInputError(f"{results_path}: not found; is {run_dir} a genreflow run folder whose training finished?")
    results = _read_json(results_path)
    if not isinstance(results.get("cells"), list):
        raise ReportInputError(f"{results_path}: expected an object with a 'cells' list")
    cells = [Cell.from_json(values, f"{results_path} cell {index}") for index, values in enumerate(results["cells"])]
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


# ---- what the report says ------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """The run folder summarised: one CellSummary per (model, clip length), the best clip of each model."""

    folder: RunFolder
    summaries: list[CellSummary]
    best: dict[str, CellSummary]
    unfinished: list[dict[str, Any]]
    cells: dict[tuple[str, float, int], Cell] = field(repr=False)

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
    groups: dict[tuple[str, float], list[Cell]] = defaultdict(list)
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
    return MODEL_NAMES.get(model, model)


def model_sort_key(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


def unfinished_cells(folder: RunFolder) -> list[dict[str, Any]]:
    """Cells the flow reported as failed, and cells the run's parameters asked for that have no result."""
    finished = {(cell.model, cell.clip_seconds, cell.seed) for cell in folder.cells}
    unfinished = {
        (entry["model"], float(entry["clip_seconds"]), int(entry["seed"])): ("failed", first_line(entry.get("error") or "failed"))
        for entry in folder.summary.get("cells", [])
        if entry.get("status") == "failed"
    }
    parameters = folder.run.get("parameters", {})
    for model in parameters.get("models", []):
        for clip in parameters.get("clip_seconds", []):
            for seed in parameters.get("seeds", []):
                unfinished.setdefault((model, float(clip), int(seed)), ("missing", f"no result in {RESULTS_FILE}"))
    return [
        {"model": model, "clip_seconds": clip, "seed": seed, "status": status, "reason": reason}
        for (model, clip, seed), (status, reason) in sorted(unfinished.items(), key=lambda item: (model_sort_key(item[0][0]), item[0][1:]))
        if (model, clip, seed) not in finished
    ]


# ---- formatting ---------------------------------------------------------------------------------


def first_line(text: str) -> str:
    """An error's first line, cut short: a traceback would swamp the table it sits in."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= REASON_CHARACTERS else line[: REASON_CHARACTERS - 1] + "…"


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def spread_text(value: Spread | None) -> str:
    """'61.7 ± 5.2' in percent; no ± for a single seed; '—' when absent."""
    if value is None:
        return "—"
    return percent(value.mean) + (f" ± {percent(value.sd)}" if value.sd is not None else "")


def interval_text(interval: tuple[float, float] | None) -> str:
    return "—" if interval is None else f"[{percent(interval[0])}, {percent(interval[1])}]"


def clip_text(seconds: float) -> str:
    return f"{seconds:g} s"


def cell_name(summary: CellSummary) -> str:
    return f"{summary.model} at {clip_text(summary.clip_seconds)}"


def mean_or_none(value: Spread | None) -> float | None:
    return None if value is None else value.mean


def value_text(value: Any) -> str:
    """Strings as they are, everything else as JSON, so nested settings read the same everywhere."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value)


def number_text(value: float | None, template: str) -> str:
    return "—" if value is None else template.format(value)


# ---- the document -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class Bullets:
    items: list[str]


Block = str | Table | Bullets | Plot


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block]


def headline_section(analysis: Analysis, plot: Plot) -> Section:
    clips = analysis.clip_lengths
    rows = [(model, *(headline_entry(analysis, model, clip) for clip in clips)) for model in analysis.models]
    paper_rows = [
        (f"Paper {model.upper()} ({paper.PAPER_TABLES[model]}: {paper.PAPER_ROW_NOTE})", *(paper_entry(model, clip) for clip in clips))
        for model in paper.PAPER_ACCURACY
    ]
    seeds = sorted({seed for s in analysis.summaries for seed in s.seeds})
    return Section(
        "Headline: track-level test accuracy (%) by model and clip length",
        [
            overview(analysis),
            f"Each entry: mean ± standard deviation over seeds ({seed_phrase(seeds)}), then the 95% bootstrap interval "
            f"over test tracks ({BOOTSTRAP_RESAMPLES} resamples). A track's genre is the vote of its clips.",
            Table(("model", *map(clip_text, clips)), rows + paper_rows),
            f"Paper rows are the paper's own numbers, not this run's, on {paper.PAPER_DATA}, with {paper.PAPER_SPLIT}. "
            "Different data and a different split: compare the trends, not single points.",
            plot,
            *notes_on_gaps(analysis),
        ],
    )


def overview(analysis: Analysis) -> str:
    """One sentence a reader can stop after: what ran, on what, and what came out best."""
    run = analysis.folder.run
    data = run.get("parameters", {}).get("data", "unknown data")
    finished = len(analysis.folder.cells)
    asked = finished + len(analysis.unfinished)
    best = best_overall(analysis)
    outcome = f" Best: {cell_name(best)}, {spread_text(best.track_accuracy)} % track accuracy." if best else ""
    return f"Run started {run.get('started', 'at an unknown time')} on {data}: {finished} of {asked} cells finished.{outcome}"


def headline_entry(analysis: Analysis, model: str, clip: float) -> str:
    summary = analysis.summary(model, clip)
    if summary is None:
        statuses = {e["status"] for e in analysis.unfinished if (e["model"], e["clip_seconds"]) == (model, clip)}
        return "failed" if "failed" in statuses else "no result" if statuses else "not run"
    return f"{spread_text(summary.track_accuracy)} {interval_text(summary.accuracy_interval)}"


def paper_entry(model: str, clip: float) -> str:
    value = paper.PAPER_ACCURACY[model].get(clip)
    return "—" if value is None else f"{100 * value:.0f}"


def seed_phrase(seeds: Sequence[int]) -> str:
    if len(seeds) == 1:
        return f"a single seed, {seeds[0]}, so no spread"
    return f"{len(seeds)} seeds: {', '.join(map(str, seeds))}"


def notes_on_gaps(analysis: Analysis) -> list[str]:
    """Sentences for what this run lacks, so a reader does not mistake a gap for a result."""
    notes = []
    if not analysis.summaries:
        notes.append("No cell finished training, so there are no results to show.")
    if any(s.accuracy_interval is None for s in analysis.summaries):
        notes.append("Cells whose results lack per-track predictions have no bootstrap interval (shown as —).")
    for model in (CNN, RNN, BASELINE):
        if model not in analysis.best:
            notes.append(f"This run has no {display_name(model)} results.")
    return notes


def detail_section(analysis: Analysis) -> Section:
    rows = [
        (
            s.model, clip_text(s.clip_seconds), ", ".join(map(str, s.seeds)),
            spread_text(s.track_accuracy), interval_text(s.accuracy_interval),
            spread_text(s.track_macro_f1), interval_text(s.macro_f1_interval),
            spread_text(s.clip_accuracy), spread_text(s.clip_macro_f1),
            paper_entry(s.model, s.clip_seconds) if s.model in paper.PAPER_ACCURACY else "—",
        )
        for s in analysis.summaries
    ]
    headers = (
        "model", "clip", "seeds", "track accuracy", "95% CI", "track macro-F1", "95% CI",
        "clip accuracy", "clip macro-F1", "paper accuracy",
    )
    return Section(
        "All cells: track- and clip-level accuracy and macro-F1 (%)",
        [
            "Track level: one prediction per test track (the vote of its clips). Clip level: every clip on its own. "
            "Intervals are over test tracks; clip-level results carry no per-clip predictions, so no interval.",
            Table(headers, rows),
        ],
    )


def significance_section(analysis: Analysis) -> Section:
    blocks: list[Block] = [
        "McNemar's test on the test tracks both models classified, per seed: how many tracks only one of the two "
        f"got right. Exact binomial test when those are few. p < {SIGNIFICANCE} means the difference is unlikely "
        "to be chance on these tracks."
    ]
    best_cnn = analysis.best.get(CNN)
    for rival in (RNN, BASELINE):
        blocks.extend(comparison_blocks(analysis, best_cnn, analysis.best.get(rival), rival))
    return Section("Are the differences real?", blocks)


def comparison_blocks(analysis: Analysis, first: CellSummary | None, second: CellSummary | None, rival: str) -> list[Block]:
    title = f"Best {display_name(CNN)} vs best {display_name(rival)}"
    if first is None or second is None:
        absent = CNN if first is None else rival
        return [f"{title}: skipped, this run has no {display_name(absent)} results."]
    rows = []
    for seed in sorted(set(first.seeds) & set(second.seeds)):
        a = analysis.cells[(first.model, first.clip_seconds, seed)]
        b = analysis.cells[(second.model, second.clip_seconds, seed)]
        test = mcnemar(*paired_correctness(a, b))
        verdict = "yes" if test.p_value < SIGNIFICANCE else "no"
        rows.append((str(seed), str(test.tracks), str(test.only_first_right), str(test.only_second_right), f"{test.p_value:.3g}", test.method, verdict))
    heading = f"{title}: {cell_name(first)} ({spread_text(first.track_accuracy)} %) against {cell_name(second)} ({spread_text(second.track_accuracy)} %)."
    if not rows:
        return [f"{heading} They share no seed, so no paired test."]
    headers = ("seed", "shared tracks", f"only {first.model} right", f"only {second.model} right", "p", "test", f"p < {SIGNIFICANCE}")
    return [heading, Table(headers, rows)]


def best_model_section(analysis: Analysis, plots: dict[str, Plot]) -> Section:
    blocks: list[Block] = [plots[name] for name in ("confusion", "training_curves") if name in plots]
    if "training_curves" not in plots:
        blocks.append("No model recorded a per-epoch history, so there are no training curves.")
    no_history = [m for m, s in analysis.best.items() if not has_history(analysis, s)]
    if no_history and "training_curves" in plots:
        blocks.append(f"No per-epoch history recorded for: {', '.join(no_history)}.")
    return Section("The best model, and how each model trained", blocks)


def has_history(analysis: Analysis, summary: CellSummary) -> bool:
    return any(analysis.cells[(summary.model, summary.clip_seconds, seed)].history.get("val_accuracy") for seed in summary.seeds)


def costs_section(analysis: Analysis, plot: Plot | None) -> Section:
    rows = [
        (
            s.model, clip_text(s.clip_seconds),
            number_text(mean_or_none(s.costs["params"]), "{:,.0f}"),
            number_text(_megabytes(mean_or_none(s.costs["size_bytes"])), "{:.2f} MB"),
            number_text(mean_or_none(s.costs["train_seconds"]), "{:.1f} s"),
            number_text(mean_or_none(s.costs["epochs_run"]), "{:.1f}"),
            number_text(mean_or_none(s.costs["predict_clips_per_second"]), "{:,.0f}"),
        )
        for s in analysis.summaries
    ]
    headers = ("model", "clip", "parameters", "size on disk", "training time", "epochs", "prediction (clips/s)")
    blocks: list[Block] = ["Means over seeds. Training time covers one cell; prediction throughput is clips per second on this machine.", Table(headers, rows)]
    return Section("Costs", blocks + ([plot] if plot else []))


def _megabytes(size: float | None) -> float | None:
    return None if size is None else size / 1e6


def unfinished_section(analysis: Analysis) -> Section | None:
    if not analysis.unfinished:
        return None
    rows = [(e["model"], clip_text(e["clip_seconds"]), str(e["seed"]), e["reason"]) for e in analysis.unfinished]
    return Section(
        "Cells without a result",
        ["These cells were asked for but produced no result; the tables above leave them out.", Table(("model", "clip", "seed", "reason"), rows)],
    )


def data_section(folder: RunFolder) -> Section:
    data = folder.run.get("data")
    blocks: list[Block] = []
    if data:
        blocks.append(
            f"Collection {data.get('collection', '?')} (store {data.get('store', '?')}): {data.get('tracks', '?')} tracks, "
            f"{data.get('audio_hours', '?')} hours of audio; data version {data.get('data_version', '?')}, feature id "
            f"{data.get('feature_id', '?')}. Every cell learned from these tracks and no others."
        )
        genres = data.get("genres", {})
        blocks.append(Table(("genre", *genres), [("tracks", *map(str, genres.values()))]))
    else:
        versions = sorted({cell.data_version for cell in folder.cells if cell.data_version})
        blocks.append(f"{RUN_FILE} not found: data details unavailable. Data version(s) from the results: {', '.join(versions) or 'unknown'}.")
    blocks.extend(data_version_blocks(folder, data))
    blocks.append(split_table(folder.cells))
    blocks.extend(excluded_blocks(folder.cells))
    blocks.extend(quarantine_blocks(data))
    if data and data.get("feature_config"):
        blocks.append(Table(("feature setting", "value"), [(key, value_text(value)) for key, value in data["feature_config"].items()]))
    return Section("The data", blocks)


def data_version_blocks(folder: RunFolder, data: dict[str, Any] | None) -> list[Block]:
    """A warning where cells learned from other data than each other (or than the run's collection)."""
    versions = sorted({cell.data_version for cell in folder.cells if cell.data_version})
    expected = {data["data_version"]} if data and data.get("data_version") else set()
    if len(versions) <= 1 and set(versions) <= (expected or set(versions)):
        return []
    return [f"Warning: the results come from {len(versions)} different data versions ({', '.join(versions)}); "
            "cells trained on different collections are not comparable."]


def excluded_blocks(cells: Iterable[Cell]) -> list[Block]:
    """Which cells left out tracks shorter than their clip, and how many."""
    rows = sorted({(cell.model, clip_text(cell.clip_seconds), len(cell.excluded)) for cell in cells if cell.excluded})
    if not rows:
        return []
    return ["Tracks shorter than a cell's clip were left out of that cell (listed in its result.json):",
            Table(("model", "clip", "tracks left out"), [(model, clip, str(count)) for model, clip, count in rows])]


def split_table(cells: Iterable[Cell]) -> Table:
    sizes = {cell.seed: cell.n_tracks for cell in sorted(cells, key=lambda cell: cell.seed)}
    rows = [(str(seed), *(str(n.get(part, "?")) for part in ("train", "valid", "test"))) for seed, n in sizes.items()]
    return Table(("split seed", "train tracks", "validation tracks", "test tracks"), rows)


def quarantine_blocks(data: dict[str, Any] | None) -> list[Block]:
    if not data:
        return []
    quarantined = data.get("quarantined", [])
    if not quarantined:
        return ["No file was quarantined."]
    rows = [(entry.get("path") or entry.get("track_id", "?"), entry.get("reason", "?")) for entry in quarantined]
    return [f"{len(rows)} file(s) quarantined (left out of every split):", Table(("file", "reason"), rows)]


def run_section(folder: RunFolder) -> Section:
    run = folder.run
    if not run:
        return Section("The run", [f"{RUN_FILE} not found in {folder.path}: no run details."])
    environment = run.get("environment", {})
    machine = environment.get("platform", {})
    facts = [
        ("flow run id", run.get("flow_run_id")),
        ("started", run.get("started")),
        ("final state", folder.summary.get("state")),
        ("git commit", environment.get("git_commit")),
        ("python", environment.get("python")),
        ("CPU", f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"),
        ("GPU", ", ".join(machine.get("gpu") or []) or "none visible"),
        ("split", run.get("split")),
        ("extraction", run.get("extraction")),
    ]
    parameters = [(key, value_text(value)) for key, value in run.get("parameters", {}).items()]
    packages = [(name, version) for name, version in environment.get("packages", {}).items()]
    return Section(
        "The run",
        [
            Table(("", ""), [(label, value_text(value)) for label, value in facts]),
            Table(("parameter", "value"), parameters),
            Table(("package", "version"), packages),
        ],
    )


def differences_section(folder: RunFolder) -> Section:
    tracks = folder.run.get("data", {}).get("tracks")
    data = (
        f"The paper used {paper.PAPER_DATA}; this run used {tracks} tracks, so its numbers are not the paper's "
        "numbers on the same data."
        if tracks
        else f"The paper used {paper.PAPER_DATA}."
    )
    items = [f"{d.topic.capitalize()}: {d.paper} This run: {d.this_run}" for d in paper.DIFFERENCES]
    source = f"From the paper and its code ({paper.PAPER_CODE}, commit {paper.PAPER_CODE_COMMIT})."
    return Section("What differs from the paper", [data, Bullets(items), source])


# ---- plots --------------------------------------------------------------------------------------


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
    figure = confusion_figure(confusion, genres, f"{cell_name(best)}, summed over seeds")
    caption = f"Track-level confusion matrix of the best model, {cell_name(best)} (rows: true genre)."
    return save_plot(figure, "confusion", caption, folder)


def training_curves_plot(analysis: Analysis, folder: Path) -> Plot | None:
    histories = {cell_name(s): histories_of(analysis, s) for s in analysis.best.values() if has_history(analysis, s)}
    if not histories:
        return None
    caption = "Accuracy per epoch at each model's best clip length: train solid, validation dashed, one colour per seed."
    return save_plot(training_curves_figure(histories), "training_curves", caption, folder)


def cost_plot(analysis: Analysis, colours: dict[str, str], folder: Path) -> Plot | None:
    points = cost_points(analysis, colours)
    if not points:
        return None
    caption = "Track-level accuracy against parameters and against training time; each point is one model at one clip length."
    return save_plot(cost_figure(points), "costs", caption, folder)


def accuracy_curves(analysis: Analysis) -> dict[str, list[CurvePoint]]:
    curves: dict[str, list[CurvePoint]] = defaultdict(list)
    for s in analysis.summaries:
        curves[s.model].append(CurvePoint(s.clip_seconds, s.track_accuracy.mean, s.track_accuracy.sd))
    return dict(curves)


def best_overall(analysis: Analysis) -> CellSummary | None:
    return max(analysis.best.values(), key=lambda s: s.track_accuracy.mean, default=None)


def confusion_of(analysis: Analysis, summary: CellSummary) -> list[list[int]] | None:
    """The track-level confusion matrix summed over the seeds; None if a seed lacks one."""
    matrices = [analysis.cells[(summary.model, summary.clip_seconds, seed)].metrics["track"].get("confusion") for seed in summary.seeds]
    if not all(matrices):
        return None
    return [[sum(values) for values in zip(*rows, strict=True)] for rows in zip(*matrices, strict=True)]


def histories_of(analysis: Analysis, summary: CellSummary) -> list[dict[str, list[float]]]:
    runs = [analysis.cells[(summary.model, summary.clip_seconds, seed)].history for seed in summary.seeds]
    return [run for run in runs if run.get("accuracy") and run.get("val_accuracy")]


def cost_points(analysis: Analysis, colours: dict[str, str]) -> list[CostPoint]:
    return [
        CostPoint(s.model, s.clip_seconds, colours[s.model], s.costs["params"].mean, s.costs["train_seconds"].mean, s.track_accuracy.mean)
        for s in analysis.summaries
        if s.costs["params"] is not None and s.costs["train_seconds"] is not None
    ]


# ---- rendering ----------------------------------------------------------------------------------


def sections_of(analysis: Analysis, plots: dict[str, Plot]) -> list[Section]:
    folder = analysis.folder
    sections = [
        headline_section(analysis, plots["accuracy_by_clip"]),
        significance_section(analysis),
        detail_section(analysis),
        best_model_section(analysis, plots),
        costs_section(analysis, plots.get("costs")),
        unfinished_section(analysis),
        data_section(folder),
        run_section(folder),
        differences_section(folder),
    ]
    return [section for section in sections if section is not None]


def title_of(folder: RunFolder) -> str:
    return f"genreflow report: {folder.run.get('flow_run_id') or folder.path.name}"


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    parts = [f"# {title}\n"]
    for section in sections:
        parts.append(f"## {section.title}\n")
        parts.extend(_markdown_block(block) for block in section.blocks)
    return "\n".join(parts)


def _markdown_block(block: Block) -> str:
    if isinstance(block, Table):
        lines = [_markdown_row(block.headers), _markdown_row(tuple("---" for _ in block.headers))]
        return "\n".join(lines + [_markdown_row(row) for row in block.rows]) + "\n"
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items) + "\n"
    if isinstance(block, Plot):
        return f"![{block.caption}]({PLOTS_DIR}/{block.name}.png)\n"
    return f"{block}\n"


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f0f3f7; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { font-size: 0.9em; color: #555; }
"""


def render_html(title: str, sections: Sequence[Section]) -> str:
    """One self-contained page: inline style, plots as base64 PNG, nothing fetched from anywhere."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body.extend(_html_block(block) for block in section.blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.headers)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Plot):
        data = base64.b64encode(block.png).decode("ascii")
        caption = html.escape(block.caption)
        return f'<figure><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
    return f"<p>{html.escape(block)}</p>"


# ---- entry points -------------------------------------------------------------------------------


def build_report(run_dir: Path | str) -> tuple[Path, Path]:
    """Write report.md, report.html and plots/*.png into the run folder; return the two report paths."""
    run_dir = Path(run_dir)
    analysis = analyse(load_run_folder(run_dir))
    plots = draw_plots(analysis, run_dir / PLOTS_DIR)
    sections = sections_of(analysis, plots)
    title = title_of(analysis.folder)
    markdown_path, html_path = run_dir / REPORT_MD, run_dir / REPORT_HTML
    markdown_path.write_text(render_markdown(title, sections))
    html_path.write_text(render_html(title, sections))
    return markdown_path, html_path


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


FIGURE_LINK = re.compile(r"!\[([^\]]*)\]\((" + PLOTS_DIR + r"/[^)]+)\)")


def markdown_without_figures(markdown: str) -> str:
    """The report's Markdown for places that cannot show the local plot files (the Prefect UI)."""
    return FIGURE_LINK.sub(r"*Figure (in report.html and \2): \1*", markdown)
