"""The `genreflow` flow: extract, train the grid, evaluate, report. Reads as the pipeline's table of contents."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings
from prefect.states import Failed, State
from prefect.utilities.annotations import quote

from genreflow.core import FEATURE_SETS, FeatureConfig
from genreflow.flows.cells import CacheLocation, Cell
from genreflow.flows.extraction import Extraction, extract_collection
from genreflow.flows.grid import CellOutcome, GridSettings, run_grid, training_runner
from genreflow.flows.preflight import check_run
from genreflow.models.registry import model_names, spec
from genreflow.parameters import RunParameters, with_run_parameters
from genreflow.storage.schema import CollectionRecord
from genreflow.storage.store import FeatureSet, absolute_location
from genreflow.tasks.collection.scan import SYNTHETIC, Collection, load_collection
from genreflow.tasks.run_folder import RESULTS_FILE, SUMMARY_FILE, point_latest_at, write_run_folder
from genreflow.tasks.training.train import TrainingData


def run_name() -> str:
    """`<collection>-<UTC start>-<id>`: readable in the UI and a folder name; stable when the run is retried."""
    run = FlowRunContext.get().flow_run
    data = str(flow_run.parameters.get("data", SYNTHETIC))
    label = SYNTHETIC if data == SYNTHETIC else Path(data).name or "data"
    return f"{label}-{run.created or datetime.now(UTC):%Y%m%d-%H%M%S}-{str(run.id)[:6]}"


@task(name="scan-collection", cache_policy=NO_CACHE)
def collect_task(data: str, tracks_per_genre: int, synthetic_root: Path) -> Collection:
    """The input tracks, each keyed by the hash of its content: a GTZAN-layout folder, or the seeded
    synthetic collection written as audio."""
    collection = load_collection(data, tracks_per_genre=tracks_per_genre, synthetic_root=synthetic_root)
    get_run_logger().info("%d tracks in %d genres from %s", len(collection.tracks), len(collection.genres), data)
    return collection


@task(name="training-data", cache_policy=NO_CACHE)
def training_data_task(store: str, feature_config: FeatureConfig, record: CollectionRecord) -> dict[str, Any]:
    """The collection's tracks this run trains on (those extracted), with what the report says of the data."""
    feature_set = FeatureSet.open(store, feature_config)
    usable = feature_set.usable(record.tracks)
    data = TrainingData(store, feature_config, record.root, tuple(usable.ready))
    logger = get_run_logger()
    logger.info(
        "%d of %d tracks of %s to train on, data version %s",
        len(usable.ready),
        len(record.tracks),
        record.root,
        data.data_version,
    )
    for track_id, reason in usable.quarantined.items():
        logger.warning("quarantined %s: %s", track_id, reason)
    if usable.missing:
        logger.warning(
            "%d track(s) not extracted (see the extraction's errors): %s", len(usable.missing), usable.missing[:5]
        )
    seconds = sum(feature_set.track(track.key).duration_s for track in usable.ready)  # the index `usable` read
    description = {
        "store": store,
        "collection": record.root,
        "tracks": len(usable.ready),
        "audio_hours": round(seconds / 3600, 4),
        "genres": _genre_counts(usable.ready),
        "data_version": data.data_version,
        "feature_id": feature_config.identity(),
        "feature_config": feature_config.to_dict(),
        "quarantined": [{"path": track_id, "reason": reason} for track_id, reason in usable.quarantined.items()],
        "missing": usable.missing,
    }
    return {"training_data": data, "description": description}


def training_data_of(store: str, feature_config: FeatureConfig, record: CollectionRecord) -> dict[str, Any]:
    """`training_data_task` with the record quoted: Prefect would otherwise visit every track of it, twice,
    looking for futures (2.6-3.2 s of the task at 10,000 tracks, docs/benchmarks.md "Scale")."""
    return training_data_task(store, feature_config, quote(record))


def _genre_counts(tracks: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for track in tracks:
        counts[track.genre] = counts.get(track.genre, 0) + 1
    return dict(sorted(counts.items()))


@task(name="report", cache_policy=NO_CACHE)
def report_task(run_dir: Path) -> None:
    """Render report.md / report.html and publish them as Prefect artifacts."""
    from genreflow.flows.artifacts import publish_report_artifacts
    from genreflow.tasks.report.build import build_report

    build_report(run_dir)
    publish_report_artifacts(run_dir)


def _summary(outcomes: list[CellOutcome], run_dir: Path) -> dict[str, Any]:
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    return {
        "flow_run_id": str(flow_run.get_id()),
        "flow_run_name": flow_run.get_name(),
        "state": "Failed" if failed else "Completed",
        "run_dir": str(run_dir),
        "cells": [outcome.to_dict() for outcome in outcomes],
        "results_path": str(run_dir / RESULTS_FILE),
    }


@contextmanager
def api_for_workers() -> Iterator[None]:
    """The run's Prefect API named in its settings, so that the task runs sent to Dask workers report to it. On
    a temporary server the setting is empty, and each worker would start a temporary server of its own (tens of
    seconds each, its task runs invisible here)."""
    if PREFECT_API_URL.value():
        yield
        return
    with get_client(sync_client=True) as client, temporary_settings({PREFECT_API_URL: str(client.api_url)}):
        yield


def _ui_url() -> str | None:
    """This run's page in the Prefect UI; None on a temporary server, which is gone once the run ends."""
    return flow_run.get_flow_run_ui_url() if PREFECT_UI_URL.value() else None


def feature_sets_of(models: list[str]) -> list[str]:
    """The feature sets the run's models train on, in the registry's order of models."""
    return list(dict.fromkeys(spec(model).features for model in model_names() if model in models))


def _run_record(
    started: str, descriptions: dict[str, dict[str, Any]], extraction: Extraction, split: str
) -> dict[str, Any]:
    """The run's provenance, which the report's data and run sections are made from: the data as the first
    feature set sees it (the log-mel where a model uses it), and every feature set's version."""
    data = next(iter(descriptions.values()))
    from genreflow.tasks.provenance import collect_environment

    return {
        "flow_run_id": str(flow_run.get_id()),
        "flow_run_name": flow_run.get_name(),
        "ui_url": _ui_url(),
        "started": started,
        "parameters": dict(flow_run.parameters),
        "environment": collect_environment(),
        "data": data,
        "feature_sets": {
            name: {key: description[key] for key in ("feature_id", "data_version", "tracks", "quarantined")}
            for name, description in descriptions.items()
        },
        "split": split,
        "extraction": extraction.counts(),
    }


def run_genreflow(**parameters: Any) -> dict[str, Any] | State:
    """Extract log-mels on Dask into Zarr, train every (model, clip, seed) cell, evaluate, and report."""
    run = RunParameters(**parameters)
    check_run(run)
    runs_dir, store = Path(run.out).resolve(), absolute_location(run.store)
    run_dir = runs_dir / flow_run.get_name()
    cache_location = CacheLocation.for_run(run.cache, runs_dir)
    started = datetime.now(UTC).isoformat()

    collection = collect_task(run.data, run.tracks_per_genre, cache_location.local_root / "synthetic")
    extractions, prepared = {}, {}
    for name in feature_sets_of(run.models):  # each feature set only if a model of the run needs it
        config = FEATURE_SETS[name]
        extractions[name] = extract_collection(collection, store, config, run.dask_address, run.workers)
        prepared[name] = training_data_of(store, config, extractions[name].record)
    first = next(iter(prepared))

    cells = [Cell(model, seconds, seed) for model in run.models for seconds in run.clip_seconds for seed in run.seeds]
    data = {name: ready["training_data"] for name, ready in prepared.items()}
    grid = GridSettings(
        data=data, split=run.split, training=run.training_settings(), cache=cache_location, cache_url=run.cache
    )
    with api_for_workers(), training_runner(run.dask_address, run.train_slots) as runner:
        outcomes, results = run_grid(cells, grid, runner)

    summary = _summary(outcomes, run_dir)
    descriptions = {name: ready["description"] for name, ready in prepared.items()}
    run_record = _run_record(started, descriptions, extractions[first], run.split)
    write_run_folder(run_dir, results, run_record, summary)
    point_latest_at(run_dir)
    report_task(run_dir)
    failed = [cell for cell, outcome in zip(cells, outcomes, strict=True) if outcome.status == "failed"]
    if failed:
        names = ", ".join(cell.name for cell in failed)
        message = (
            f"{len(failed)} of {len(outcomes)} cells failed ({names}); the others finished. "
            f"See {run_dir / SUMMARY_FILE}"
        )
        return Failed(message=message, data=summary)  # the run ends Failed; its summary still comes back
    return summary


genreflow_flow = flow(name="genreflow", flow_run_name=run_name, log_prints=True)(with_run_parameters(run_genreflow))
