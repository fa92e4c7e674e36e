"""Small stores written straight through the storage code, for the storage tests: records, features, a
store with damaged chunks, and a writer killed mid-write (a real process, SIGKILLed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from genreflow.core import FeatureConfig
from genreflow.storage.schema import BATCHES_GROUP, CHUNK_FRAMES, FEATURES_GROUP, TrackRecord
from genreflow.storage.store import FeatureSet
from tests.support.paths import REPO_ROOT

CONFIG = FeatureConfig(n_mels=32)


def record(key: str, n_frames: int) -> TrackRecord:
    return TrackRecord(key, n_frames, n_frames * CONFIG.hop_length / CONFIG.sample_rate, f"/music/{key}.wav")


def features(n_frames: int, n_mels: int = CONFIG.n_mels) -> np.ndarray:
    return np.random.default_rng(n_frames).uniform(-80.0, 20.0, (n_frames, n_mels)).astype(np.float32)


def batches_folder(location: str | Path, config: FeatureConfig = CONFIG) -> Path:
    return Path(location) / FEATURES_GROUP / config.identity() / BATCHES_GROUP


def damaged_store(tmp_path: Path) -> tuple[FeatureSet, dict[str, Path]]:
    """Four one-chunk tracks in one batch and a fifth in its own; returns the store and each track's chunk file."""
    location = str(tmp_path / "store.zarr")
    store = FeatureSet.create_or_open(location, CONFIG)
    store.write_tracks([(record(key, 50), features(50)) for key in ("a", "b", "c", "d")])
    store.write_tracks([(record("e", 60), features(60))])
    batches = sorted(path for path in batches_folder(location).iterdir() if path.is_dir())
    chunks = {key: batches[0] / f"c.{row}.0.0" for row, key in enumerate("abcd")}
    chunks["e"] = batches[1] / "c.0.0.0"
    return FeatureSet.open(location, CONFIG), chunks


WRITER = """
import sys
import numpy as np
from genreflow.core import FeatureConfig
from genreflow.storage.schema import TrackRecord
from genreflow.storage.store import FeatureSet

frames = int(sys.argv[2])
store = FeatureSet.create_or_open(sys.argv[1], FeatureConfig())
values = np.random.default_rng(0).uniform(-80, 0, (frames, 128)).astype(np.float32)
store.write_tracks([(TrackRecord("long", frames, 1.0, "/x"), values)])
print("finished", flush=True)
"""
KILLED_FRAMES = 100 * CHUNK_FRAMES  # 100 chunks: the kill lands long before the last one


def kill_when_chunks_appear(writer: subprocess.Popen[str], batches: Path) -> None:
    deadline = time.monotonic() + 120
    while not any(batches.glob("*/c.*")):
        assert writer.poll() is None, f"the writer exited before writing any chunk: {writer.communicate()}"
        assert time.monotonic() < deadline, "the writer never started writing chunks"
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    writer.wait()


def run_killed_writer(location: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, location, str(KILLED_FRAMES)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    kill_when_chunks_appear(writer, batches_folder(location, FeatureConfig()))
    assert writer.returncode == -signal.SIGKILL and "finished" not in writer.stdout.read()
