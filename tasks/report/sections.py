"""The report's sections, in the order a reader wants them: the headline beside the paper, whether differences
are real, every cell, the best model, costs, what failed, the data, the run and how it differs from the paper.
Missing pieces (a failed cell, one seed, no RNN, no run.json) become sentences, not errors."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from genreflow.core import NETWORK_OWN, FeatureConfig
from genreflow.tasks.report import paper
from genreflow.tasks.report.analysis import Analysis, best_overall, cell_label, display_name, has_history
from genreflow.tasks.report.document import (
    Block,
    Bullets,
    Section,
    Table,
    clip_text,
    interval_text,
    mean_or_none,
    number_text,
    spread_text,
    value_text,
    values_text,
)
from genreflow.tasks.report.plots import Plot
from genreflow.tasks.report.statistics import (
    BOOTSTRAP_RESAMPLES,
    CellResult,
    CellSummary,
    McNemar,
    mcnemar,
    paired_correctness,
)
from genreflow.tasks.run_folder import RUN_FILE, RunFolder

CNN, RNN, BASELINE = "cnn", "rnn", "baseline"  # the paper compares the first two; the third is the floor
SIGNIFICANCE = 0.05


def headline_section(analysis: Analysis, plot: Plot) -> Section:
    clips = analysis.clip_lengths
    rows = [(model, *(headline_entry(analysis, model, clip) for clip in clips)) for model in analysis.models]
    paper_rows = [
        (
            f"Paper {model.upper()} ({paper.PAPER_TABLES[model]}: {paper.PAPER_ROW_NOTE})",
            *(paper_entry(model, clip) for clip in clips),
        )
        for model in paper.PAPER_ACCURACY
    ]
    seeds = sorted({seed for s in analysis.summaries for seed in s.seeds})
    return Section(
        "Headline: track-level test accuracy (%) by model and clip length",
        [
            overview(analysis),
            f"Each entry: mean ± standard deviation over seeds ({seed_phrase(seeds)}), then the 95% bootstrap interval "
            f"over test tracks ({BOOTSTRAP_RESAMPLES} resamples). A track's genre is the one its clips' mean "
            "probabilities favour.",
            Table(("model", *map(clip_text, clips)), rows + paper_rows),
            f"Paper rows are the paper's own numbers, not this run's, on {paper.PAPER_DATA}, with {paper.PAPER_SPLIT}. "
            "Different data and a different split: compare the trends, not single points.",
            *noise_notes(analysis, seeds),
            plot,
            *notes_on_gaps(analysis),
        ],
    )


def margin_of_error(tracks: int) -> float:
    """The widest 95 % margin, in points, of an accuracy measured on `tracks` tracks (a proportion near 0.5)."""
    return 100 * 1.96 * math.sqrt(0.25 / tracks)


def noise_notes(analysis: Analysis, seeds: Sequence[int]) -> list[str]:
    """Plain words on what the table cannot tell apart: a small test set, and a single seed."""
    tested = sorted({cell.n_tracks["test"] for cell in analysis.folder.cells if cell.n_tracks.get("test")})
    notes = []
    if tested:
        counts = str(tested[0]) if len(tested) == 1 else f"{tested[0]} to {tested[-1]}"
        notes.append(
            f"Each cell was tested on {counts} tracks, so an accuracy here can be off by up to "
            f"±{margin_of_error(tested[0]):.0f} points (95 %, at an accuracy of one half): where two intervals "
            "overlap, the difference between them is not evidence."
        )
    if len(seeds) == 1:
        notes.append(
            "One seed gives no spread, and on small collections the seed alone has moved a model by more than ten "
            "points: a difference smaller than that is not evidence. Run several (--seeds 0 1 2) to compare models."
        )
    return notes


def overview(analysis: Analysis) -> str:
    """One sentence a reader can stop after: what ran, on what, and what came out best."""
    run = analysis.folder.run
    data = run.get("parameters", {}).get("data", "unknown data")
    finished = len(analysis.folder.cells)
    asked = finished + len(analysis.unfinished)
    best = best_overall(analysis)
    outcome = f" Best: {cell_label(best)}, {spread_text(best.track_accuracy)} % track accuracy." if best else ""
    started = run.get("started", "at an unknown time")
    link = f" In the Prefect UI: {run['ui_url']}." if run.get("ui_url") else ""
    return f"Run started {started} on {data}: {finished} of {asked} cells finished.{outcome}{link}"


def headline_entry(analysis: Analysis, model: str, clip: float) -> str:
    summary = analysis.summary(model, clip)
    if summary is None:
        statuses = {e["status"] for e in analysis.unfinished if (e["model"], e["clip_seconds"]) == (model, clip)}
        for status in ("failed", "skipped"):
            if status in statuses:
                return status
        return "no result" if statuses else "not run"
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
            s.model,
            clip_text(s.clip_seconds),
            ", ".join(map(str, s.seeds)),
            spread_text(s.track_accuracy),
            values_text(s.track_accuracy),
            interval_text(s.accuracy_interval),
            spread_text(s.track_macro_f1),
            interval_text(s.macro_f1_interval),
            spread_text(s.clip_accuracy),
            spread_text(s.clip_macro_f1),
            spread_text(s.vote_accuracy),
            paper_entry(s.model, s.clip_seconds) if s.model in paper.PAPER_ACCURACY else "—",
        )
        for s in analysis.summaries
    ]
    headers = (
        "model",
        "clip",
        "seeds",
        "track accuracy",
        "each seed's",
        "95% CI",
        "track macro-F1",
        "95% CI",
        "clip accuracy",
        "clip macro-F1",
        "track accuracy by vote",
        "paper accuracy",
    )
    return Section(
        "All cells: track- and clip-level accuracy and macro-F1 (%)",
        [
            "Track level: one prediction per test track, the mean of its clips' probabilities; by vote: the genre "
            "most of its clips predict (— in results made before it was recorded). Clip level: every clip on its "
            "own. Intervals are over test tracks; clip-level results carry no per-clip predictions, so no interval.",
            Table(headers, rows),
        ],
    )


def significance_section(analysis: Analysis) -> Section:
    blocks: list[Block] = [
        "McNemar's test on the test tracks both models classified, per seed: how many tracks only one of the two "
        f"got right. Exact binomial test when those are few. p < {SIGNIFICANCE} means the difference is unlikely "
        "to be chance on these tracks. With several seeds, a last row pools every seed's tracks (the test across "
        "seeds and tracks); the seeds test the same tracks, so its pairs are not independent: read its p as a guide."
    ]
    best_cnn = analysis.best.get(CNN)
    for rival in (RNN, BASELINE):
        blocks.extend(comparison_blocks(analysis, best_cnn, analysis.best.get(rival), rival))
    return Section("Are the differences real?", blocks)


def comparison_blocks(
    analysis: Analysis, first: CellSummary | None, second: CellSummary | None, rival: str
) -> list[Block]:
    title = f"Best {display_name(CNN)} vs best {display_name(rival)}"
    if first is None or second is None:
        absent = CNN if first is None else rival
        return [f"{title}: skipped, this run has no {display_name(absent)} results."]
    pairs = {
        seed: paired_correctness(
            analysis.cells[(first.model, first.clip_seconds, seed)],
            analysis.cells[(second.model, second.clip_seconds, seed)],
        )
        for seed in sorted(set(first.seeds) & set(second.seeds))
    }
    rows = [mcnemar_row(str(seed), mcnemar(*pair)) for seed, pair in pairs.items()]
    if len(pairs) > 1:  # every seed's tracks together: the across-seeds test
        pooled = [np.concatenate(side) for side in zip(*pairs.values(), strict=True)]
        rows.append(mcnemar_row("all seeds, pooled", mcnemar(*pooled)))
    heading = (
        f"{title}: {cell_label(first)} ({spread_text(first.track_accuracy)} %) against "
        f"{cell_label(second)} ({spread_text(second.track_accuracy)} %)."
    )
    if not rows:
        return [f"{heading} They share no seed, so no paired test."]
    headers = (
        "seed",
        "shared tracks",
        f"only {first.model} right",
        f"only {second.model} right",
        "p",
        "test",
        f"p < {SIGNIFICANCE}",
    )
    return [heading, Table(headers, rows)]


def mcnemar_row(seeds: str, test: McNemar) -> tuple[str, ...]:
    verdict = "yes" if test.p_value < SIGNIFICANCE else "no"
    return (
        seeds,
        str(test.tracks),
        str(test.only_first_right),
        str(test.only_second_right),
        f"{test.p_value:.3g}",
        test.method,
        verdict,
    )


def best_model_section(analysis: Analysis, plots: dict[str, Plot]) -> Section:
    blocks: list[Block] = [
        *budget_sentences(analysis.folder.cells),
        *(plots[name] for name in ("confusion", "training_curves") if name in plots),
    ]
    if "training_curves" not in plots:
        blocks.append("No model recorded a per-epoch history, so there are no training curves.")
    no_history = [m for m, s in analysis.best.items() if not has_history(analysis, s)]
    if no_history and "training_curves" in plots:
        blocks.append(f"No per-epoch history recorded for: {', '.join(no_history)}.")
    return Section("The best model, and how each model trained", blocks)


def budget_sentences(cells: Sequence[CellResult]) -> list[str]:
    """What the networks' training budget was, once per distinct budget (a run has one; precision is left out:
    it is chosen per model and device, and the settings each network has its own of unless the run set them
    (batch size, schedule, stopping, augmentation) are given per model)."""
    networks = [cell for cell in cells if cell.settings and cell.history.get("loss")]
    per_model = {"precision", *NETWORK_OWN}
    budgets = ({name: value for name, value in cell.settings.items() if name not in per_model} for cell in networks)
    own = {cell.model: cell.settings for cell in networks}
    return [
        budget_sentence(json.loads(budget), own) for budget in sorted({json.dumps(b, sort_keys=True) for b in budgets})
    ]


def per_model_phrase(phrases: dict[str, str]) -> str:
    """The phrase every model shares ('32'), or each phrase with its models: '16 (cnn) or 32 (rnn, crnn)'."""
    models_of: dict[str, list[str]] = {}
    for model, phrase in phrases.items():
        models_of.setdefault(phrase, []).append(model)
    if len(models_of) == 1:
        return next(iter(models_of))
    return " or ".join(f"{phrase} ({', '.join(models)})" for phrase, models in models_of.items())


def stopping_phrase(settings: dict[str, Any]) -> str:
    """How a network's training ends and which weights it keeps."""
    if settings.get("early_stopping", True):
        return f"stopping after {settings.get('patience')} epochs without a lower validation loss"
    kept = "the moving average of the last steps' weights" if settings.get("average_weights") else "the last weights"
    validation = "" if settings.get("hold_out_validation", True) else ", the validation tracks trained on too"
    return f"every epoch run, {kept} kept{validation}"


def budget_sentence(settings: dict[str, Any], own: dict[str, dict[str, Any]]) -> str:
    """One budget in words; `own` holds each network's settings, for those it may have its own of."""
    crops = settings.get("crops_per_track")
    per_epoch = (
        f"{crops} random crop{'s' if crops != 1 else ''} of every training track (as many at every clip length, "
        "overlapping where a track holds fewer clips)"
        if crops
        else "as many random crops of each training track as it holds clips (fewer optimiser steps at longer clips)"
    )
    batches = per_model_phrase({model: str(values.get("batch_size")) for model, values in own.items()})
    schedules = per_model_phrase({model: _schedule_words(values.get("schedule")) for model, values in own.items()})
    stopping = per_model_phrase({model: stopping_phrase(values) for model, values in own.items()})
    augmentation = per_model_phrase({model: str(values.get("augment", "none")) for model, values in own.items()})
    decay = settings.get("weight_decay", 0.0)
    optimiser = f"AdamW (weight decay {decay:g})" if decay else "Adam"
    smoothing = settings.get("label_smoothing", 0.0)
    targets = f", targets smoothed by {smoothing:g}" if smoothing else ""
    return (
        f"The networks' training budget: up to {settings.get('epochs')} epochs, each of {per_epoch}, in "
        f"batches of {batches}, {optimiser} at {settings.get('learning_rate')}, {schedules}; {stopping}; "
        f"augmentation: {augmentation}{targets}."
    )


def _schedule_words(schedule: str | None) -> str:
    return "on a cosine schedule after one epoch's warm-up" if schedule == "cosine" else "constant"


def costs_section(analysis: Analysis, plot: Plot | None) -> Section:
    rows = [
        (
            s.model,
            clip_text(s.clip_seconds),
            number_text(mean_or_none(s.costs["params"]), "{:,.0f}"),
            number_text(_megabytes(mean_or_none(s.costs["size_bytes"])), "{:.2f} MB"),
            number_text(mean_or_none(s.costs["train_seconds"]), "{:.1f} s"),
            number_text(mean_or_none(s.costs["epochs_run"]), "{:.1f}"),
            number_text(mean_or_none(s.costs["predict_clips_per_second"]), "{:,.0f}"),
        )
        for s in analysis.summaries
    ]
    headers = ("model", "clip", "parameters", "size on disk", "training time", "epochs", "prediction (clips/s)")
    blocks: list[Block] = [
        "Means over seeds. Training time covers one cell; prediction throughput is clips per second on this machine.",
        Table(headers, rows),
    ]
    return Section("Costs", blocks + ([plot] if plot else []))


def _megabytes(size: float | None) -> float | None:
    return None if size is None else size / 1e6


def unfinished_section(analysis: Analysis) -> Section | None:
    if not analysis.unfinished:
        return None
    rows = [(e["model"], clip_text(e["clip_seconds"]), str(e["seed"]), e["reason"]) for e in analysis.unfinished]
    return Section(
        "Cells without a result",
        [
            "These cells were asked for but produced no result; the tables above leave them out.",
            Table(("model", "clip", "seed", "reason"), rows),
        ],
    )


def data_section(folder: RunFolder) -> Section:
    data = folder.run.get("data")
    blocks: list[Block] = []
    if data:
        blocks.append(
            f"Collection {data.get('collection', '?')} (store {data.get('store', '?')}): "
            f"{data.get('tracks', '?')} tracks, "
            f"{data.get('audio_hours', '?')} hours of audio; data version {data.get('data_version', '?')}, feature id "
            f"{data.get('feature_id', '?')}. Every cell learned from these tracks and no others."
        )
        genres = data.get("genres", {})
        blocks.append(Table(("genre", *genres), [("tracks", *map(str, genres.values()))]))
    else:
        versions = sorted({cell.data_version for cell in folder.cells if cell.data_version})
        blocks.append(
            f"{RUN_FILE} not found: data details unavailable. Data version(s) from the results: "
            f"{', '.join(versions) or 'unknown'}."
        )
    blocks.extend(data_version_blocks(folder, data))
    blocks.append(split_table(folder.cells))
    blocks.extend(excluded_blocks(folder.cells))
    blocks.extend(quarantine_blocks(data))
    if data and data.get("feature_config"):
        blocks.append(
            Table(
                ("feature setting", "value"),
                [(key, value_text(value)) for key, value in feature_settings(data["feature_config"]).items()],
            )
        )
    return Section("The data", blocks)


def feature_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The settings that define the run's feature set; all of them, as recorded, if they do not parse."""
    try:
        return FeatureConfig.from_dict(values).defining_settings()
    except (TypeError, ValueError):
        return values


def data_version_blocks(folder: RunFolder, data: dict[str, Any] | None) -> list[Block]:
    """A warning where cells learned from other data than each other (or than the run's collection)."""
    versions = sorted({cell.data_version for cell in folder.cells if cell.data_version})
    expected = {data["data_version"]} if data and data.get("data_version") else set()
    if len(versions) <= 1 and set(versions) <= (expected or set(versions)):
        return []
    return [
        f"Warning: the results come from {len(versions)} different data versions ({', '.join(versions)}); "
        "cells trained on different collections are not comparable."
    ]


def excluded_blocks(cells: Iterable[CellResult]) -> list[Block]:
    """Which cells left out tracks shorter than their clip, and how many."""
    rows = sorted({(cell.model, clip_text(cell.clip_seconds), len(cell.excluded)) for cell in cells if cell.excluded})
    if not rows:
        return []
    return [
        "Tracks shorter than a cell's clip were left out of that cell (listed in its result.json):",
        Table(("model", "clip", "tracks left out"), [(model, clip, str(count)) for model, clip, count in rows]),
    ]


def split_table(cells: Iterable[CellResult]) -> Table:
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
        ("flow run", run.get("flow_run_name") or run.get("flow_run_id")),
        ("in the Prefect UI", run.get("ui_url") or "not kept (a temporary server)"),
        ("started", run.get("started")),
        ("final state", folder.summary.get("state")),
        ("git commit", environment.get("git_commit")),
        ("python", environment.get("python")),
        ("CPU", f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"),
        ("GPU", ", ".join(machine.get("gpu") or []) or "none visible"),
        ("split", run.get("split")),
        ("extraction", run.get("extraction")),
        ("learning curves", curves_command(run.get("parameters", {}))),
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


def curves_command(parameters: dict[str, Any]) -> str:
    """How to open the run's learning curves (every network cell's, in its cache) in TensorBoard."""
    cache = parameters.get("cache")
    return f"genreflow cache tensorboard --cache {cache}" if cache else "not recorded"


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
    """The run's name (as the UI and the run folder show it), not its id."""
    return f"genreflow report: {folder.run.get('flow_run_name') or folder.path.name}"
