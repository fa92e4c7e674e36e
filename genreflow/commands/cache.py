"""`genreflow cache clean` (remove checkpoints no cell will resume) and `genreflow cache tensorboard` (serve the
learning curves of every cell trained into a cache)."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

from genreflow.commands import fail

DEFAULT_CACHE = "runs/cache"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cache clean | tensorboard`."""
    cache = subparsers.add_parser("cache", help="clean a cache's checkpoints or serve its learning curves")
    commands = cache.add_subparsers(dest="cache_command", metavar="CACHE_COMMAND", required=True)
    clean = commands.add_parser(
        "clean",
        help="remove checkpoints that no cell will resume",
        description="Remove the checkpoints of cells that finished (a run stopped before it cleaned up) and those "
        "not written for --min-age hours (a cell in training writes its checkpoint every epoch: an old one was "
        "given up, or belongs to a code version, data version or parameter set no run asks for any more). "
        "Trained models and results are left alone.",
    )
    clean.add_argument("--cache", default=DEFAULT_CACHE, help="cache path or fsspec URL (default %(default)s)")
    clean.add_argument(
        "--min-age", type=float, default=72.0, metavar="HOURS",
        help="leave checkpoints written less than this long ago (default %(default)g; 0 when nothing trains)",
    )  # fmt: skip
    clean.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    clean.set_defaults(handler=clean_cache)
    board = commands.add_parser(
        "tensorboard",
        help="serve every cell's learning curves in TensorBoard",
        description="Start TensorBoard on the cache's learning curves (loss, accuracy, learning rate and seconds "
        "per epoch of every fold of every network cell; the HParams tab compares cells). A cache on object "
        "storage is copied to a local folder first (TensorBoard reads local folders).",
    )
    board.add_argument("--cache", default=DEFAULT_CACHE, help="cache path or fsspec URL (default %(default)s)")
    board.add_argument("--port", type=int, default=6006, help="port to serve on (default %(default)s)")
    board.add_argument("--host", default="127.0.0.1", help="address to serve on (default %(default)s)")
    board.set_defaults(handler=serve_tensorboard)


def clean_cache(args: argparse.Namespace) -> int:
    """List, and unless --dry-run remove, the stale checkpoints."""
    import fsspec

    from genreflow.flows.cells import CachePaths
    from genreflow.tasks.training.checkpoint import stale_checkpoints

    paths = CachePaths(_absolute(args.cache))
    stale = stale_checkpoints(paths.checkpoints, paths.models, args.min_age)
    for checkpoint in stale:
        print(f"{checkpoint.url}: {checkpoint.reason}, {checkpoint.size_bytes / 1e6:.1f} MB")
        if not args.dry_run:
            filesystem, path = fsspec.core.url_to_fs(checkpoint.url)
            filesystem.rm(path, recursive=True)
    total = sum(checkpoint.size_bytes for checkpoint in stale) / 1e6
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(stale)} checkpoint(s), {total:.1f} MB, from {paths.checkpoints}")
    return 0


def serve_tensorboard(args: argparse.Namespace) -> int:
    """Run TensorBoard (in place of this process) on the cache's curves, copied here first from a URL."""
    import fsspec

    from genreflow.flows.cells import CachePaths

    curves = CachePaths(_absolute(args.cache)).curves
    filesystem, path = fsspec.core.url_to_fs(curves)
    if not filesystem.exists(path):
        return fail(f"{curves}: no learning curves yet (a run writes them as its network cells train)")
    if "://" in curves:
        local = Path("runs") / "tensorboard" / hashlib.sha256(curves.encode()).hexdigest()[:12]
        shutil.rmtree(local, ignore_errors=True)
        filesystem.get(path, str(local), recursive=True)
        print(f"copied {curves} to {local}")
        curves = str(local)
    command = ["-m", "tensorboard.main", "--logdir", curves, "--host", args.host, "--port", str(args.port)]
    os.execv(sys.executable, [sys.executable, *command])
    return 0  # not reached: exec replaces this process


def _absolute(cache: str) -> str:
    return cache if "://" in cache else str(Path(cache).resolve())
