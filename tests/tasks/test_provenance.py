"""Provenance: the run.json `environment` block, read from this machine; TensorFlow is never imported for it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from genreflow.tasks.provenance import REPO_ROOT, collect_environment, git_commit, git_dirty

FAKE_GPUS = ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")


def environment_in_subprocess(path_prefix: Path | None = None, import_tensorflow: bool = False) -> dict:
    """collect_environment() in a fresh interpreter, with the TensorFlow modules loaded afterwards and before."""
    script = (
        ("import tensorflow\n" if import_tensorflow else "")
        + "import json, sys\nfrom genreflow.tasks.provenance import collect_environment\n"
        "environment = collect_environment()\n"
        "loaded = 'tensorflow' in sys.modules\n"
        "config = sys.modules['tensorflow'].config if loaded else None\n"
        "tf_gpus = [d.name for d in config.list_physical_devices('GPU')] if loaded else None\n"
        "print(json.dumps({'environment': environment, 'tensorflow_loaded': loaded, 'tf_gpus': tf_gpus}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True, timeout=300
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def fake_nvidia_smi(folder: Path) -> Path:
    """An `nvidia-smi` that answers like the real one on a two-GPU machine (no GPU here to ask)."""
    script = folder / "nvidia-smi"
    lines = "\\n".join(FAKE_GPUS)
    script.write_text(f'#!/bin/sh\nprintf "{lines}\\n"\n')
    script.chmod(0o755)
    return folder


def test_environment_has_the_contract_keys_and_real_versions() -> None:
    environment = collect_environment()
    assert set(environment) >= {"git_commit", "packages", "platform", "python"}
    assert set(environment["platform"]) >= {"cpu", "cores", "gpu"}
    assert environment["packages"]["numpy"] == np.__version__
    assert environment["platform"]["cores"] == os.cpu_count()
    assert environment["python"] == ".".join(map(str, sys.version_info[:3]))
    json.dumps(environment)


def test_git_commit_is_the_checkouts_head_and_none_elsewhere(tmp_path: Path) -> None:
    if (REPO_ROOT / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert git_commit(REPO_ROOT) == head and re.fullmatch(r"[0-9a-f]{40}", head)
        assert isinstance(git_dirty(REPO_ROOT), bool)
    assert git_commit(tmp_path) is None and git_dirty(tmp_path) is None


def test_gpus_come_from_nvidia_smi_without_importing_tensorflow(tmp_path: Path) -> None:
    result = environment_in_subprocess(path_prefix=fake_nvidia_smi(tmp_path))
    assert result["tensorflow_loaded"] is False
    assert result["environment"]["platform"]["gpu"] == list(FAKE_GPUS)


def test_gpus_come_from_tensorflow_when_it_is_already_loaded(tmp_path: Path) -> None:
    """With TensorFlow loaded its own view wins over nvidia-smi's (on a CPU machine: no GPU at all)."""
    result = environment_in_subprocess(path_prefix=fake_nvidia_smi(tmp_path), import_tensorflow=True)
    assert result["environment"]["platform"]["gpu"] == result["tf_gpus"]
