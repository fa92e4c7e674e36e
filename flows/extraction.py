"""Extraction as Prefect tasks: the per-track work runs on Dask, each batch of tracks is one visible task.

Why not prefect-dask's `DaskTaskRunner` here: with Prefect's ephemeral API every Dask worker process starts
its own temporary Prefect server (a 4-task flow took 23-40 s against 4-8 s, docs/design.md). Instead the
flow owns one Dask cluster and runs one Prefect task per batch in its own threads; each batch task maps its
tracks onto the cluster with plain Dask. Workers import no Prefect and no TensorFlow, and write their
tracks straight into Zarr; only small outcomes come back.

The whole of it (plan, extract, record the collection) holds the store's lock (flows/locks.py): a second
run on the same store waits, then finds the tracks complete.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from genreflow.core import FeatureConfig
from genreflow.flows.locks import store_lock
from genreflow.storage.schema import CollectionRecord, CollectionTrack
from genreflow.storage.store import Store
from genreflow.tasks.cluster import dask_client
from genreflow.tasks.collection.scan import HIDDEN, Collection, SourceTrack
from genreflow.tasks.features.extract import TrackOutcome, extract_batch, plan_extraction

# One Prefect task per batch: retried as a unit, one progress step, one Dask client connection each; its
# tracks go to the workers as several tasks each (`task_groups` in tasks/features/extract.py).
TRACKS_PER_BATCH = 64


@dataclass(frozen=True)
class Extraction:
    """What extracting a collection did, and the store's record of the collection afterwards."""

    outcomes: list[TrackOutcome]
    skipped: int
    record: CollectionRecord

    def counts(self) -> dict[str, int]:
        quarantined = sum(outcome.status == "quarantined" for outcome in self.outcomes)
        return {"extracted": len(self.outcomes) - quarantined, "skipped": self.skipped, "quarantined": quarantined}


@task(name="plan-extraction", cache_policy=NO_CACHE)
def plan_task(collection: Collection, store: str, feature_config: FeatureConfig) -> list[SourceTrack]:
    """Tracks whose content the store lacks (or holds damaged); reports the rest as skipped."""
    handle = Store.create_or_open(store)
    plan = plan_extraction(collection, handle.feature_set(feature_config), handle.collection(collection.root))
    logger = get_run_logger()
    logger.info("%d tracks to extract, %d already complete in %s", len(plan.todo), len(plan.skipped), store)
    for track in plan.todo:
        if plan.reasons[track.track_id] != "new":
            logger.info("extracting %s again: %s", track.track_id, plan.reasons[track.track_id])
    for entry in collection.ignored:
        log = logger.info if entry.reason == HIDDEN else logger.warning  # .DS_Store and the like are expected
        log("ignored %s: %s", entry.path, entry.reason)
    return plan.todo


@task(name="extract-batch", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def extract_batch_task(
    batch: list[SourceTrack], store: str, feature_config: FeatureConfig, scheduler: str
) -> list[TrackOutcome]:
    """Extract one batch on the run's Dask cluster; environment errors raise and are retried."""
    with dask_client(scheduler, None) as client:
        outcomes = extract_batch(batch, store, feature_config, client)
    logger = get_run_logger()
    for outcome in outcomes:
        if outcome.status == "quarantined":
            logger.warning("quarantined %s: %s", outcome.track_id, outcome.reason)
    return outcomes


@task(name="record-collection", cache_policy=NO_CACHE)
def record_task(collection: Collection, store: str) -> CollectionRecord:
    """Remember in the store which tracks this folder holds, each labelled and keyed by content."""
    tracks = [CollectionTrack(track.track_id, track.genre, track.key) for track in collection.tracks]
    return Store.create_or_open(store).record_collection(collection.root, tracks)


def extract_collection(
    collection: Collection, store: str, feature_config: FeatureConfig, dask_address: str | None, workers: int | None
) -> Extraction:
    """Plan, extract what is missing on Dask and record the collection, holding the store's lock."""
    with store_lock(store):
        todo = plan_task(collection, store, feature_config)
        outcomes = extract_all(todo, store, feature_config, dask_address, workers)
        record = record_task(collection, store)
    return Extraction(outcomes, len(collection.tracks) - len(todo), record)


def _batches(tracks: list[SourceTrack]) -> list[list[SourceTrack]]:
    return [tracks[start : start + TRACKS_PER_BATCH] for start in range(0, len(tracks), TRACKS_PER_BATCH)]


def extract_all(
    todo: list[SourceTrack], store: str, feature_config: FeatureConfig, dask_address: str | None, workers: int | None
) -> list[TrackOutcome]:
    """Extract `todo` on a Dask cluster (the given scheduler, or a LocalCluster started for this run)."""
    if not todo:
        return []
    batches = _batches(todo)
    progress = create_progress_artifact(0.0, key="genreflow-extraction-progress", description="Extraction")
    outcomes: list[TrackOutcome] = []
    with dask_client(dask_address, workers) as client:
        scheduler = client.scheduler.address
        futures = [
            extract_batch_task.with_options(task_run_name=f"extract-batch-{index:03d}").submit(
                batch, store, feature_config, scheduler
            )
            for index, batch in enumerate(batches)
        ]
        for done, future in enumerate(as_completed(futures), start=1):
            outcomes.extend(future.result())
            update_progress_artifact(
                progress, 100.0 * done / len(batches), description=f"{done}/{len(batches)} batches"
            )
    return outcomes
