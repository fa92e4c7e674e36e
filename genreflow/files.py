"""Files written whole or not at all: the one way genreflow writes a local file that a reader may open at any
moment (model directories, run folders, the synthetic collection's audio).

A file is written under a hidden temporary name beside it, unique to the process, and renamed onto its name in
one step once complete; on any error (a full disk) the temporary file is removed, so nothing half-written is
left under either name. Imports nothing of the project: any layer may use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """A temporary path to write `path`'s content to; it becomes `path` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_bytes(path: Path, content: bytes) -> None:
    """`content` as the whole of `path`."""
    with written_whole(path) as partial:
        partial.write_bytes(content)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """`content` as indented JSON (values JSON does not know, such as paths, as their text)."""
    write_bytes(path, json.dumps(content, indent=1, default=str).encode())
