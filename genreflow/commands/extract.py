"""`genreflow extract`: audio to the store, on Dask (`genreflow store` inspects, verifies and compacts it).

The same functions the flow calls, without Prefect: scan the collection (every file hashed), plan against the
store, extract on Dask with a progress bar, record the collection, then a closing summary.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from genreflow.commands import fail
from genreflow.core import FEATURE_SETS, LOG_MEL

if TYPE_CHECKING:
    from genreflow.tasks.features.extract import ExtractionPlan, TrackOutcome


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `extract`."""
    extract = subparsers.add_parser(
        "extract", help="extract log-mel features into the Zarr store (Dask)",
        description="Read and hash every track, compute the log-mel of each one the store lacks on Dask workers "
        "and write it into the store, then record the collection (its tracks, labels and content keys). Tracks "
        "already complete and undamaged are skipped; files whose content is unusable are quarantined with their "
        "reason.",
    )  # fmt: skip
    extract.add_argument("--data", default="synthetic", help="a GTZAN-layout folder, or 'synthetic' (default)")
    extract.add_argument("--store", default="runs/store.zarr", help="store path or fsspec URL (default %(default)s)")
    extract.add_argument("--workers", type=int, default=None, help="Dask workers for a local cluster (default: cores)")
    extract.add_argument("--dask-address", default=None, help="use this running Dask scheduler instead")
    extract.add_argument(
        "--features", choices=list(FEATURE_SETS), default=LOG_MEL,
        help="the feature set to extract: the log-mel every model but musicnn uses, or musicnn's embeddings "
        "(default %(default)s)",
    )  # fmt: skip
    extract.add_argument("--tracks-per-genre", type=int, default=20, help="synthetic collection size (default 20)")
    extract.add_argument("--synthetic-seed", type=int, default=0, help="synthetic collection seed (default 0)")
    extract.add_argument(
        "--synthetic-dir",
        default=None,
        help="folder to write the synthetic collection under (default: beside a local store)",
    )
    extract.set_defaults(handler=run_extract)


def run_extract(args: argparse.Namespace) -> int:
    """Plan, extract on Dask with a progress bar, record the collection, print the summary; 1 if some track
    could not be written."""
    from tqdm import tqdm

    from genreflow.storage.schema import CollectionTrack, StoreError
    from genreflow.storage.store import Store, absolute_location
    from genreflow.tasks.cluster import dask_client
    from genreflow.tasks.collection.scan import default_synthetic_root, load_collection
    from genreflow.tasks.features.extract import ExtractionError, extract_batch, plan_extraction

    started = time.perf_counter()
    location = absolute_location(args.store)
    config = FEATURE_SETS[args.features]
    try:
        synthetic_root = args.synthetic_dir or default_synthetic_root(location)
        collection = load_collection(args.data, args.tracks_per_genre, synthetic_root, args.synthetic_seed)
        store = Store.create_or_open(location)
        feature_set = store.feature_set(config)
    except (OSError, ValueError, StoreError) as error:
        return fail(str(error))
    for entry in collection.ignored:
        print(f"ignored {entry.path}: {entry.reason}")
    if not collection.tracks:
        return fail(f"no audio files in {args.data} (expected <genre>/<file> with one of the audio extensions)")
    plan = plan_extraction(collection, feature_set, store.collection(collection.root))
    print(_describe_plan(plan, location))
    outcomes: list[TrackOutcome] = []
    failure: ExtractionError | None = None
    if plan.todo:
        with dask_client(args.dask_address, args.workers) as client, tqdm(total=len(plan.todo), unit="track") as bar:
            try:
                outcomes = extract_batch(plan.todo, location, config, client, bar.update)
            except ExtractionError as error:
                outcomes, failure = error.outcomes, error
    store.record_collection(collection.root, [CollectionTrack(t.track_id, t.genre, t.key) for t in collection.tracks])
    print(_summary(outcomes, len(plan.skipped), time.perf_counter() - started))
    if failure is not None:
        return fail(str(failure))
    return 0


def _describe_plan(plan: ExtractionPlan, location: str) -> str:
    reasons: dict[str, int] = {}
    for reason in plan.reasons.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return f"{location}: {len(plan.todo)} to extract ({detail or 'none'}), {len(plan.skipped)} complete already"


def _summary(outcomes: list[TrackOutcome], skipped: int, seconds: float) -> str:
    quarantined = [outcome for outcome in outcomes if outcome.status == "quarantined"]
    audio_hours = sum(outcome.audio_seconds for outcome in outcomes) / 3600
    lines = [
        f"extracted {len(outcomes) - len(quarantined)}, skipped {skipped}, quarantined {len(quarantined)}, "
        f"audio {audio_hours:.2f} h, time {seconds:.1f} s"
    ]
    lines += [f"  quarantined {outcome.track_id}: {outcome.reason}" for outcome in quarantined]
    return "\n".join(lines)
