"""Where a run came from: code version, package versions and hardware, saved in run.json.

Cheap and side-effect free, so the flow can call it at the start of every run: it never imports TensorFlow
(that takes seconds and grabs devices); GPUs are read from TensorFlow only when it is already loaded,
otherwise from `nvidia-smi` where the driver is installed.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from genreflow.models.precision import cpu_model

REPO_ROOT = Path(__file__).resolve().parents[1]
# The distributions whose versions decide a result; listed as installed, absent ones are left out.
KEY_PACKAGES: tuple[str, ...] = (
    "genreflow",
    "prefect",
    "prefect-dask",
    "dask",
    "distributed",
    "zarr",
    "numcodecs",
    "librosa",
    "soundfile",
    "numpy",
    "scipy",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "scikit-learn",
    "matplotlib",
)
COMMAND_TIMEOUT_S = 10


def collect_environment() -> dict[str, Any]:
    """The `environment` block of run.json (see docs/CONTRACTS.md)."""
    return {
        "git_commit": git_commit(REPO_ROOT),
        "git_dirty": git_dirty(REPO_ROOT),
        "packages": package_versions(KEY_PACKAGES),
        "platform": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "gpu": visible_gpus(),
            "os": platform.platform(),
        },
        "python": platform.python_version(),
    }


def git_commit(checkout: Path) -> str | None:
    """The checkout's HEAD commit; None outside a git checkout (e.g. an installed wheel)."""
    return _run(["git", "-C", str(checkout), "rev-parse", "HEAD"])


def git_dirty(checkout: Path) -> bool | None:
    """Whether tracked files differ from HEAD, since then the commit alone does not say what ran."""
    changes = _run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"])
    return None if changes is None else bool(changes)


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each named distribution; ones not installed are omitted."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def visible_gpus() -> list[str]:
    """GPU names: TensorFlow's view if it is already imported, else nvidia-smi's, else none."""
    if "tensorflow" in sys.modules:
        return _tensorflow_gpus()
    return _nvidia_smi_gpus()


def _tensorflow_gpus() -> list[str]:
    tensorflow = sys.modules["tensorflow"]
    return [device.name for device in tensorflow.config.list_physical_devices("GPU")]


def _nvidia_smi_gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    listing = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    return [line.strip() for line in (listing or "").splitlines() if line.strip()]


def _run(command: list[str]) -> str | None:
    """A command's stripped stdout, or None when it is missing, fails or hangs."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip()
