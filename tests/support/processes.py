"""Start a real server process for a test, wait until it answers, and always stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

STARTUP_SECONDS = 90.0
STOP_SECONDS = 15.0
LOG_TAIL_CHARS = 3000


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def venv_script(name: str) -> str:
    """A console script installed beside this Python (prefect, dask, moto_server), so tests use the same venv."""
    return str(Path(sys.executable).parent / name)


def http_ok(url: str) -> bool:
    """Whether `url` answers with a 2xx status: how a server says it is ready."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def log_tail(log_path: Path) -> str:
    """The end of a process's log, to put into an error message."""
    return log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if log_path.exists() else "(no log)"


@contextmanager
def background_process(
    command: list[str],
    log_path: Path,
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    startup_seconds: float = STARTUP_SECONDS,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` with its output in `log_path` until the block ends; ready() says when it has started."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
        try:
            wait_until_ready(process, ready, log_path, startup_seconds)
            yield process
        finally:
            stop(process)


def wait_until_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], log_path: Path, startup_seconds: float
) -> None:
    """Poll ready() until it holds; fail with the process's log if it exits or takes too long."""
    deadline = time.monotonic() + startup_seconds
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args[0]} exited with {process.returncode} before it was ready:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.args[0]} not ready after {startup_seconds:.0f} s:\n{log_tail(log_path)}")
        time.sleep(0.25)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the process and the children it started (its own session), killing them after STOP_SECONDS."""
    signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        signal_group(process, signal.SIGKILL)
        process.wait()


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the process group that `background_process` made for this process (its id is the process's)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


# Root reads and lists anything whatever the permission bits say; without these two capabilities it obeys them.
DAC_CAPABILITIES = "-dac_override,-dac_read_search"


def as_unprivileged(command: list[str]) -> list[str]:
    """`command` run so that file permissions apply to it: unchanged for a normal user, and for root through
    util-linux's setpriv without the capabilities that let root ignore them."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", f"--inh-caps={DAC_CAPABILITIES}", f"--bounding-set={DAC_CAPABILITIES}", *command]
