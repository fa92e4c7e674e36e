"""`genreflow extract` (audio to the store, on Dask), `genreflow store info` (what a store holds),
`genreflow store verify` (read everything, name what is damaged) and `genreflow store compact` (delete the
batches nothing needs any more).

The same functions the flow calls, without Prefect: scan the collection (every file hashed), plan against the
store, extract on Dask with a progress bar, record the collection, then a closing summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from genreflow.core import FEATURE_SETS, LOG_MEL

if TYPE_CHECKING:
    from genreflow.storage.maintenance import Compaction, Damage
    from genreflow.storage.store import Store
    from genreflow.tasks.features.extract import ExtractionPlan, TrackOutcome


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `extract` and `store info | verify | compact`."""
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

    store = subparsers.add_parser("store", help="inspect, verify or compact a store")
    store_commands = store.add_subparsers(dest="store_command", metavar="STORE_COMMAND", required=True)
    info = store_commands.add_parser(
        "info", help="collections, feature sets, quarantine, size",
        description="Summarise the store from its metadata alone (fast, no chunk is read): feature sets, "
        "collections, quarantine, damaged batch metadata, size. `genreflow store verify` reads every chunk.",
    )  # fmt: skip
    info.add_argument("store", help="store path or fsspec URL")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(handler=show_store_info)
    verify = store_commands.add_parser(
        "verify", help="read every track and name what is damaged",
        description="Read every chunk of every complete track (checksums, decoding, missing chunks) and every "
        "batch's and collection's metadata, and list what is damaged, one line each. Exit status 1 if anything "
        "is. `genreflow extract` re-extracts damaged tracks whose files are still there; training refuses them.",
    )  # fmt: skip
    verify.add_argument("store", help="store path or fsspec URL")
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")
    verify.set_defaults(handler=verify_store)
    compact = store_commands.add_parser(
        "compact", help="delete superseded, abandoned and damaged batches to free space",
        description="Delete the batch arrays no reader needs: those whose every track was extracted again since, "
        "those a stopped extraction left incomplete and those whose metadata is damaged. Only batches dead for "
        "at least --min-age hours go, so that a running extraction or a training run that indexed the store "
        "earlier is not disturbed.",
    )  # fmt: skip
    compact.add_argument("store", help="store path or fsspec URL")
    compact.add_argument(
        "--min-age",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="leave batches that died less than this long ago (default %(default)g; 0 when "
        "nothing else uses the store)",
    )
    compact.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    compact.add_argument("--json", action="store_true", help="print JSON instead of text")
    compact.set_defaults(handler=compact_store)


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
        return _fail(str(error))
    for entry in collection.ignored:
        print(f"ignored {entry.path}: {entry.reason}")
    if not collection.tracks:
        return _fail(f"no audio files in {args.data} (expected <genre>/<file> with one of the audio extensions)")
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
        return _fail(str(failure))
    return 0


def show_store_info(args: argparse.Namespace) -> int:
    """Print `maintenance.describe`, as JSON or as text."""
    from genreflow.storage.maintenance import describe
    from genreflow.storage.schema import StoreError
    from genreflow.storage.store import Store, absolute_location

    try:
        info = describe(Store.open(absolute_location(args.store)))
    except StoreError as error:
        return _fail(str(error))
    print(json.dumps(info, indent=2) if args.json else _describe_info(info))
    return 0


def verify_store(args: argparse.Namespace) -> int:
    """Print every damaged thing in the store, naming tracks by their collections; 1 if there is any."""
    from genreflow.storage.maintenance import verify
    from genreflow.storage.schema import StoreError
    from genreflow.storage.store import Store, absolute_location

    try:
        store = Store.open(absolute_location(args.store))
        damage = verify(store)
    except StoreError as error:
        return _fail(str(error))
    rows = [_damage_row(entry, _names_by_key(store)) for entry in damage]
    if args.json:
        print(json.dumps({"location": store.location, "damaged": rows}, indent=2))
    else:
        print(
            "\n".join(
                [f"{row['kind']} {row['name']}: {row['reason']}" for row in rows]
                or [f"{store.location}: no damage found"]
            )
        )
    return 1 if damage else 0


def _names_by_key(store: Store) -> dict[str, list[str]]:
    """Content key -> '<collection folder>: <track id>' of every recorded track with that content."""
    names: dict[str, list[str]] = {}
    for record in store.collections():
        for track in record.tracks:
            names.setdefault(track.key, []).append(f"{record.root}/{track.track_id}")
    return names


def _damage_row(entry: Damage, names: dict[str, list[str]]) -> dict[str, Any]:
    row = {"kind": entry.kind, "name": entry.name, "reason": entry.reason, "feature_id": entry.feature_id}
    if entry.kind == "track":
        row["tracks"] = names.get(entry.name, [])
        row["name"] = " = ".join(row["tracks"]) + f" (key {entry.name})" if row["tracks"] else f"key {entry.name}"
    return row


def compact_store(args: argparse.Namespace) -> int:
    """Run `maintenance.compact` and say what went (or would go) and what was left for later."""
    from genreflow.storage.maintenance import compact
    from genreflow.storage.schema import StoreError
    from genreflow.storage.store import Store, absolute_location

    if args.min_age < 0:
        return _fail(f"--min-age must be 0 or more hours, got {args.min_age:g}")
    try:
        store = Store.open(absolute_location(args.store), writable=not args.dry_run)
        compaction = compact(store, args.min_age * 3600, args.dry_run)
    except StoreError as error:
        return _fail(str(error))
    if args.json:
        print(json.dumps(_compaction_json(compaction), indent=2))
    else:
        print(_describe_compaction(compaction, args.min_age))
    return 0


def _compaction_json(compaction: Compaction) -> dict[str, Any]:
    return {
        "removed": [{"batch": batch.name, "reason": batch.reason} for batch in compaction.removed],
        "bytes_freed": compaction.bytes_freed,
        "too_young": compaction.too_young,
        "dry_run": compaction.dry_run,
    }


def _describe_compaction(compaction: Compaction, min_age_hours: float) -> str:
    verb = "would remove" if compaction.dry_run else "removed"
    reasons = Counter(batch.reason for batch in compaction.removed)
    lines = [
        f"{verb} {len(compaction.removed)} batch array(s) ({reasons['superseded']} superseded, "
        f"{reasons['incomplete']} incomplete, {reasons['damaged']} damaged), {compaction.bytes_freed / 2**20:.1f} MiB"
    ]
    if compaction.too_young:
        lines.append(
            f"left {compaction.too_young} that died less than {min_age_hours:g} h ago "
            "(run again later, or with --min-age 0 when no extraction or training uses the store)"
        )
    return "\n".join(lines)


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


def _describe_info(info: dict[str, Any]) -> str:
    lines = [
        f"store          {info['location']}",
        f"schema         version {info['schema_version']}",
        f"size           {info['bytes_on_disk'] / 2**20:.1f} MiB",
    ]
    for features in info["feature_sets"]:
        lines += [
            f"feature set    {features['feature_id']}: {json.dumps(features['feature_config'])}",
            f"  tracks       {features['tracks']} ({features['audio_hours']:.2f} h of audio)",
            f"  incomplete   {features['incomplete_tracks']} (a stopped extraction; the next one redoes them)",
            f"  superseded   {features['superseded_copies']} (older copies of tracks extracted again: store compact)",
            f"  damaged      {len(features['damaged_batches'])} batch(es) whose metadata does not read (store verify)",
            f"  quarantined  {len(features['quarantined'])}",
        ]
        lines += [f"    {entry['source']}: {entry['reason']}" for entry in features["quarantined"]]
    lines.append("chunks         not read here: `genreflow store verify` reads and checks every one")
    for collection in info["collections"]:
        genres = ", ".join(f"{genre} {count}" for genre, count in collection["genres"].items())
        lines.append(f"collection     {collection['root']} (recorded {collection['recorded']})")
        lines.append(f"  tracks       {collection['tracks']} ({genres})")
        for feature_id, usable in collection["feature_sets"].items():
            lines.append(
                f"  in {feature_id}: {usable['ready']} ready, {usable['quarantined']} quarantined, "
                f"{usable['missing']} missing"
            )
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"genreflow: error: {message}", file=sys.stderr)
    return 1
