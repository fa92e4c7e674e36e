"""Ctrl-C and SIGTERM end a run within seconds, whatever its threads and child processes are doing.

Left to themselves they did not: the signal reaches the whole process group, so the temporary Prefect server
and the Dask workers die or ignore it while the flow's threads keep retrying a server that is gone (a run was
still alive 150 s after Ctrl-C). Prefect installs its own SIGTERM handler while a flow runs, so a handler of
ours would not even be called; the signal is seen instead through Python's wakeup file descriptor, which every
handled signal writes to whoever handles it. On the first signal the main thread is interrupted, which lets
Prefect mark the run and the clusters close if they can; `GRACE_SECONDS` later every child process is ended
and the run exits with the signal's status, printing what was kept. A second signal does that at once.
Nothing finished is lost: extracted tracks are in the store and trained cells in the cache, each written
whole, so the same command goes on from there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

GRACE_SECONDS = 3.0
CHILDREN_WAIT_SECONDS = 2.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stopped_by_signals(kept: str) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM stop the run as described above; `kept` says what survives it."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
    threading.Thread(target=_watch, args=(reader, kept), name="genreflow-stop-watch", daemon=True).start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        writer.close()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Outside a flow (and for SIGINT inside one): the main thread stops what it is doing."""
    raise KeyboardInterrupt


def _watch(reader: socket.socket, kept: str) -> None:
    """Wait for stop signals on the wakeup descriptor: the first starts the grace period, a second ends now."""
    first = None
    while True:
        try:
            received = reader.recv(64)
        except OSError:
            return
        if not received:
            return
        for signum in (value for value in received if value in STOP_SIGNALS):
            name = signal.Signals(signum).name
            if first is not None:
                _end(first, kept)
            first = name
            print(
                f"\ngenreflow: {name}: stopping the run (at most {GRACE_SECONDS:g} s)...", file=sys.stderr, flush=True
            )
            threading.Timer(GRACE_SECONDS, _end, args=(name, kept)).start()


def _end(name: str, kept: str) -> None:
    """Every child process ended (terminated, then killed), one line on what was kept, and this process gone."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):  # it may have ended meanwhile: that is what was wanted
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=CHILDREN_WAIT_SECONDS)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    print(f"\ngenreflow: stopped by {name}. {kept}", file=sys.stderr, flush=True)  # after any half line
    os._exit(128 + signal.Signals[name].value)
