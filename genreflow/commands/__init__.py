"""The `genreflow` sub-commands, one module each (see `genreflow/cli.py`), and what several of them share."""

from __future__ import annotations

import sys


def fail(message: str) -> int:
    """Print `message` as genreflow's one-line error and return the exit status 1, so a handler can
    `return fail(...)`."""
    print(f"genreflow: error: {message}", file=sys.stderr)
    return 1
