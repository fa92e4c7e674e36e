"""The `genreflow` flow: extract, train the grid, evaluate, report. Reads as the pipeline's table of contents."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.extraction import extract_all, plan_task
from flows.grid import CacheLocation, Cell, CellOutcome, GridSettings, run_grid
from genreflow.config import DEFAULT_CLIP_SECONDS, DEFAULT_MODELS, FeatureConfig
from storage.store import FeatureStore, absolute_location
from tasks.collection import Collection, load_collection

class GridFailed(RuntimeError):
    """Some cells failed; every other cell finished and the summary says which failed."""


def check_grid(models: list[str], clip_seconds: list[float], seeds: list[int], split: str) -> None:
    """Refuse a grid that cannot run, before any work starts, with a message that says what is wrong."""
    from models.registry import MODELS
    from tasks.splits import parse_split

    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        raise ValueError(f"unknown model(s) {unknown or models}; choose from {sorted(MODELS)}")
    if not clip_seconds or any(seconds <= 0 for seconds in clip_seconds):
        raise ValueError(f"clip lengths must be positive seconds, got {clip_seconds}")
    if not seeds or any(seed < 0 for seed in seeds):
        raise ValueError(f"seeds must be non-negative integers, got {seeds}")
    parse_split(split)


@task(name="collect-tracks", cache_policy=NO_CACHE)
def collect_task(data: str, tracks_per_genre: int, synthetic_root: Path) -> Collection:
    """The input tracks: a GTZAN-layout folder, or the seeded synthetic collection written as audio."""
    collection = load_collection(data, tracks_per_genre=tracks_per_genre, synthetic_root=synthetic_root)
    get_run_logger().info("%d tracks in %d genres from %s", len(collection.tracks), len(collection.genres), data)
    return collection


@task(name="store-summary", cache_policy=NO_CACHE)
def store_summary_task(store: str) -> dict[str, Any]:
    """What the store holds after extraction: counts, quarantine, data version."""
    info = FeatureStore.open(store).info()
    logger = get_run_logger()
    logger.info("store %s: %d tracks %s, data version %s", store, info["tracks"], info["genres"], info["data_version"])
    for entry in info["quarantined"]:
        logger.warning("quarantined %s: %s", entry["path"], entry["reason"])
    return info


@task(name="report", cache_policy=NO_CACHE)
def report_task(out_dir: Path) -> None:
    """Render report.md / report.html and publish them as Prefect artifacts."""
    from flows.artifacts import publish_report_artifacts
    from tasks.report import build_report

    build_report(out_dir)
    publish_report_artifacts(out_dir)


def _write_json(path: Path, content: dict[str, Any]) -> None:
    """Write via a temporary name so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content, indent=2, default=str))
    partial.replace(path)


def _summary(outcomes: list[CellOutcome], out_dir: Path) -> dict[str, Any]:
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    return {
        "flow_run_id": str(flow_run.get_id()),
        "state": "Failed" if failed else "Completed",
        "cells": [outcome.to_dict() for outcome in outcomes],
        "results_path": str(out_dir / "results.json"),
    }


def _run_record(
    started: str, store_info: dict[str, Any], extracted: list[Any], skipped: int, split: str
) -> dict[str, Any]:
    """The run's provenance, which the report's data and run sections are made from."""
    from tasks.provenance import collect_environment

    quarantined = sum(outcome.status == "quarantined" for outcome in extracted)
    return {
        "flow_run_id": str(flow_run.get_id()),
        "started": started,
        "parameters": dict(flow_run.parameters),
        "environment": collect_environment(),
        "store": store_info,
        "split": split,
        "extraction": {"extracted": len(extracted) - quarantined, "skipped": skipped, "quarantined": quarantined},
    }


@flow(name="genreflow", log_prints=True)
def genreflow_flow(
    data: str = "synthetic",
    tracks_per_genre: int = 20,
    store: str = "runs/store.zarr",
    models: list[str] = list(DEFAULT_MODELS),
    clip_seconds: list[float] = list(DEFAULT_CLIP_SECONDS),
    seeds: list[int] = [0],
    split: str = "stratified",
    epochs: int = 30,
    crops_per_track: int | None = None,
    dask_address: str | None = None,
    workers: int | None = None,
    out: str = "runs/latest",
    cache: str = "runs/cache",
) -> dict[str, Any]:
    """Extract log-mels on Dask into Zarr, train every (model, clip, seed) cell, evaluate, and report."""
    check_grid(models, clip_seconds, seeds, split)
    out_dir, store = Path(out).resolve(), absolute_location(store)
    cache_location = CacheLocation.for_run(cache, out_dir)
    feature_config = FeatureConfig()
    started = datetime.now(timezone.utc).isoformat()

    collection = collect_task(data, tracks_per_genre, cache_location.local_root / "synthetic")
    todo = plan_task(collection, store, feature_config)
    extracted = extract_all(todo, store, feature_config, max(clip_seconds), dask_address, workers)
    store_info = store_summary_task(store)

    cells = [Cell(model, seconds, seed) for model in models for seconds in clip_seconds for seed in seeds]
    grid = GridSettings(store, split, epochs, crops_per_track, store_info["data_version"], cache_location)
    outcomes, results = run_grid(cells, grid)

    summary = _summary(outcomes, out_dir)
    _write_json(out_dir / "results.json", {"cells": results})
    _write_json(out_dir / "run.json", _run_record(started, store_info, extracted, len(collection.tracks) - len(todo), split))
    _write_json(out_dir / "summary.json", summary)
    report_task(out_dir)
    failed = [cell for cell, outcome in zip(cells, outcomes, strict=True) if outcome.status == "failed"]
    if failed:
        names = ", ".join(cell.name for cell in failed)
        raise GridFailed(f"{len(failed)} of {len(outcomes)} cells failed ({names}); the others finished. See {out_dir / 'summary.json'}")
    return summary
