"""`genreflow store info` (what a store holds), `genreflow store verify` (read everything, name what is damaged)
and `genreflow store compact` (delete the batches nothing needs any more).

Thin wrappers over `storage.maintenance`: they open the store, call it and print its answer as text or JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from genreflow.commands import fail

if TYPE_CHECKING:
    from genreflow.storage.maintenance import Compaction, Damage
    from genreflow.storage.store import Store


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `store info | verify | compact`."""
    store = subparsers.add_parser("store", help="inspect, verify or compact a store")
    store_commands = store.add_subparsers(dest="store_command", metavar="STORE_COMMAND", required=True)
    _store_command(
        store_commands, "info", show_store_info, "collections, feature sets, quarantine, size",
        "Summarise the store from its metadata alone (fast, no chunk is read): feature sets, collections, "
        "quarantine, damaged batch metadata, size. `genreflow store verify` reads every chunk.",
    )  # fmt: skip
    _store_command(
        store_commands, "verify", verify_store, "read every track and name what is damaged",
        "Read every chunk of every complete track (checksums, decoding, missing chunks) and every batch's and "
        "collection's metadata, and list what is damaged, one line each. Exit status 1 if anything is. "
        "`genreflow extract` re-extracts damaged tracks whose files are still there; training refuses them.",
    )  # fmt: skip
    compact = _store_command(
        store_commands, "compact", compact_store, "delete superseded, abandoned and damaged batches to free space",
        "Delete the batch arrays no reader needs: those whose every track was extracted again since, those a "
        "stopped extraction left incomplete and those whose metadata is damaged. Only batches dead for at least "
        "--min-age hours go, so that a running extraction or a training run that indexed the store earlier is "
        "not disturbed.",
    )  # fmt: skip
    compact.add_argument(
        "--min-age",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="leave batches that died less than this long ago (default %(default)g; 0 when "
        "nothing else uses the store)",
    )
    compact.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")


def _store_command(
    commands: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    summary: str,
    description: str,
) -> argparse.ArgumentParser:
    """One `store` command: its help, the store it works on and `--json`, which every one of them takes."""
    parser = commands.add_parser(name, help=summary, description=description)
    parser.add_argument("store", help="store path or fsspec URL")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=handler)
    return parser


def show_store_info(args: argparse.Namespace) -> int:
    """Print `maintenance.describe`, as JSON or as text."""
    from genreflow.storage.maintenance import describe
    from genreflow.storage.schema import StoreError
    from genreflow.storage.store import Store, absolute_location

    try:
        info = describe(Store.open(absolute_location(args.store)))
    except StoreError as error:
        return fail(str(error))
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
        return fail(str(error))
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
        return fail(f"--min-age must be 0 or more hours, got {args.min_age:g}")
    try:
        store = Store.open(absolute_location(args.store), writable=not args.dry_run)
        compaction = compact(store, args.min_age * 3600, args.dry_run)
    except StoreError as error:
        return fail(str(error))
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
