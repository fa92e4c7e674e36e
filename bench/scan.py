"""What keying a collection by content costs: `scan_collection` (list the folder, read every file, XXH3-128 its
bytes) against listing alone, and the hash alone on bytes already in memory, on the same files.

Every run reads and hashes every track before planning (content, not timestamps, decides what is extracted
again), so this is a fixed cost per run. The files are read once first, so the figures are those of a warm page
cache, the usual case for a nightly run; a cold disk adds its read time (the bytes per track are printed).

    python bench/scan.py --synthetic 1000
    python bench/scan.py --data ../shared/data/gtzan-mini

Last line JSON: tracks, mb_per_track, listing_ms, scan_ms (median of --repeats), hash_ms, scan_ms_per_track,
hash_ms_per_track, scan_vs_listing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from genreflow.tasks.collection.scan import content_key, list_collection, scan_collection
from genreflow.tasks.collection.synthetic import GENRES, write_synthetic_collection


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", help="a GTZAN-layout folder")
    source.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        default=1000,
        help="N synthetic 30 s tracks, rounded up to whole genres (default 1000)",
    )
    parser.add_argument("--work-dir", default="runs/bench", help="where the synthetic audio goes")
    parser.add_argument("--repeats", type=int, default=5, help="timed scans; the median is reported (default 5)")
    return parser.parse_args(argv)


def collection_folder(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data)
    per_genre = math.ceil(args.synthetic / len(GENRES))
    return write_synthetic_collection(Path(args.work_dir) / f"synthetic-seed0-n{per_genre}", per_genre, seed=0)


def milliseconds(work) -> float:
    started = time.perf_counter()
    work()
    return 1000 * (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = collection_folder(args)
    files = [Path(found.path) for found in list_collection(folder).files]
    contents = [path.read_bytes() for path in files]  # the warm page cache the figures are for
    listing = statistics.median(milliseconds(lambda: list_collection(folder)) for _ in range(args.repeats))
    scan = statistics.median(milliseconds(lambda: scan_collection(folder)) for _ in range(args.repeats))
    hashing = statistics.median(
        milliseconds(lambda: [content_key(data) for data in contents]) for _ in range(args.repeats)
    )
    tracks = len(files)
    figures = {
        "tracks": tracks,
        "mb_per_track": round(sum(map(len, contents)) / tracks / 2**20, 3),
        "listing_ms": round(listing, 1),
        "scan_ms": round(scan, 1),
        "hash_ms": round(hashing, 1),
        "scan_ms_per_track": round(scan / tracks, 3),
        "hash_ms_per_track": round(hashing / tracks, 3),
        "scan_vs_listing": round(scan / listing, 1),
    }
    print(
        f"{tracks} tracks in {folder}: listing {listing:.0f} ms, scan (read + hash) {scan:.0f} ms, "
        f"hash alone {hashing:.0f} ms"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
