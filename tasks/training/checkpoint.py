"""A cell's training state, saved after every epoch, so that a cell whose worker dies continues where it was.

One checkpoint folder per training key (a local folder or any fsspec URL, beside the cache's models):

    fold-<k>/      a finished fold's folder, copied whole with its fold.json moved in last: never trained again
    state.npz      the running fold after its last finished epoch: every model variable (weights, batch
                   normalisation statistics, dropout seeds), every optimizer variable (its step too, so a
                   schedule continues), early stopping's best value, wait and best weights, the history so
                   far and the training key it belongs to, with a SHA-256 of all of it

Each file is written under a temporary name and moved into place, so a reader finds the previous epoch's state
or the new one, never a part. Arrays and JSON only, read without pickle. A state that does not load (cut
short, a byte changed, another key's) is discarded with a warning naming it, and the fold starts over: partial
weights are never loaded. No random state is saved because none is needed: an epoch's crops and masks derive
from (seed, fold, epoch), and the dropout seeds are model variables.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

logger = logging.getLogger(__name__)

STATE_FILE = "state.npz"
FORMAT = 1
FOLD_DONE_FILE = "fold.json"  # written last into a fold folder: its presence marks the fold finished
ARRAY_GROUPS = ("model", "optimizer", "best")


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: unreadable, damaged or written for another training."""


@dataclass
class TrainingState:
    """One fold's training after `epochs_done` epochs: everything the next epoch needs."""

    fold: int
    epochs_done: int
    finished: bool  # no epoch follows: early stopping ended the fold, or its epochs are spent
    history: dict[str, list[float]]
    stopping: dict[str, Any] = field(default_factory=dict)  # early stopping's wait, best, best_epoch, ...
    model: list[np.ndarray] = field(default_factory=list)
    optimizer: list[np.ndarray] = field(default_factory=list)
    best: list[np.ndarray] | None = None  # early stopping's best weights, where it keeps them

    def facts(self) -> dict[str, Any]:
        """The JSON part of the state (the arrays go beside it)."""
        return {
            "fold": self.fold,
            "epochs_done": self.epochs_done,
            "finished": self.finished,
            "history": self.history,
            "stopping": self.stopping,
            "has_best": self.best is not None,
        }


def encode_state(state: TrainingState, key: str) -> bytes:
    """`state` as the bytes of an .npz: its arrays, and its facts with `key` and a SHA-256 over both."""
    arrays = _named_arrays(state)
    facts = {"format": FORMAT, "key": key, **state.facts()}
    facts["sha256"] = _digest(facts, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, facts=np.frombuffer(json.dumps(facts).encode(), np.uint8), **arrays)
    return buffer.getvalue()


def decode_state(data: bytes, key: str) -> TrainingState:
    """The state in `data`, checked whole against its checksum and `key`; CheckpointError where it is not."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        facts = json.loads(arrays.pop("facts").tobytes())
        recorded = facts.pop("sha256")
    except Exception as error:  # a zip cut short or garbled fails in many ways; all mean the same here
        raise CheckpointError(f"unreadable ({type(error).__name__}: {error})") from error
    if recorded != _digest(facts, arrays):
        raise CheckpointError("its checksum does not match its contents (damaged)")
    if facts.get("format") != FORMAT or facts.get("key") != key:
        raise CheckpointError(f"written for another training ({facts.get('key')}, format {facts.get('format')})")
    groups = {group: _group(arrays, group) for group in ARRAY_GROUPS}
    return TrainingState(
        fold=facts["fold"],
        epochs_done=facts["epochs_done"],
        finished=facts["finished"],
        history=facts["history"],
        stopping=facts["stopping"],
        model=groups["model"],
        optimizer=groups["optimizer"],
        best=groups["best"] if facts["has_best"] else None,
    )


def _named_arrays(state: TrainingState) -> dict[str, np.ndarray]:
    values = {"model": state.model, "optimizer": state.optimizer, "best": state.best or []}
    return {
        f"{group}_{index:05d}": np.asarray(array) for group in ARRAY_GROUPS for index, array in enumerate(values[group])
    }


def _group(arrays: dict[str, np.ndarray], group: str) -> list[np.ndarray]:
    return [arrays[name] for name in sorted(arrays) if name.startswith(f"{group}_")]


def _digest(facts: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the facts and every array's name, dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class Checkpoint:
    """A cell's checkpoint folder at `url` (a path or any fsspec URL), for the training identified by `key`."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self._fs, self._root = fsspec.core.url_to_fs(self.url)

    def save_state(self, state: TrainingState) -> None:
        """Replace the saved state by `state`, whole or not at all."""
        self._write_whole(STATE_FILE, encode_state(state, self.key))

    def load_state(self, fold: int, log: logging.Logger | logging.LoggerAdapter = logger) -> TrainingState | None:
        """The saved state of `fold`, or None: none saved, one of another fold, or one that cannot be trusted
        (discarded with a warning naming it)."""
        path = f"{self._root}/{STATE_FILE}"
        try:
            if not self._fs.exists(path):
                return None
            state = decode_state(self._fs.cat_file(path), self.key)
        except (CheckpointError, OSError) as problem:
            log.warning("discarding the checkpoint %s/%s: %s; this fold starts over", self.url, STATE_FILE, problem)
            self._fs.rm(path)
            return None
        return state if state.fold == fold else None

    def save_fold(self, index: int, local_fold: Path) -> None:
        """Keep a finished fold's folder; its fold.json goes last, so only a whole copy counts as finished."""
        files = sorted(path for path in local_fold.iterdir() if path.is_file() and path.name != FOLD_DONE_FILE)
        self._fs.makedirs(f"{self._root}/fold-{index}", exist_ok=True)
        for path in files:
            self._fs.put_file(str(path), f"{self._root}/fold-{index}/{path.name}")
        self._write_whole(f"fold-{index}/{FOLD_DONE_FILE}", (local_fold / FOLD_DONE_FILE).read_bytes())

    def restore_fold(self, index: int, local_fold: Path) -> bool:
        """Copy a finished fold's folder to `local_fold` if this checkpoint holds one; whether it did."""
        remote = f"{self._root}/fold-{index}"
        if not self._fs.exists(f"{remote}/{FOLD_DONE_FILE}"):
            return False
        local_fold.mkdir(parents=True, exist_ok=True)
        for path in self._fs.ls(remote, detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if not name.startswith("."):
                self._fs.get_file(path, str(local_fold / name))
        return True

    def clear(self) -> None:
        """Remove the checkpoint (its cell is complete, or will never resume)."""
        if self._fs.exists(self._root):
            self._fs.rm(self._root, recursive=True)

    def _write_whole(self, name: str, data: bytes) -> None:
        """Write `data` to `name` under a temporary name, then move it there: never a part under `name`."""
        final = f"{self._root}/{name}"
        partial = f"{final.rsplit('/', 1)[0]}/.partial-{uuid.uuid4().hex}"
        self._fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        try:
            self._fs.pipe_file(partial, data)
            self._fs.mv(partial, final)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                self._fs.rm(partial)
            raise


@dataclass(frozen=True)
class StaleCheckpoint:
    """A checkpoint no training will resume, and why."""

    url: str
    reason: str
    size_bytes: int


def stale_checkpoints(checkpoints_root: str, models_root: str, min_age_hours: float) -> list[StaleCheckpoint]:
    """The checkpoints under `checkpoints_root` that no cell will resume: those whose model is in place under
    `models_root` (the cell finished: the run that did so was stopped before it cleaned up), and those not
    written for `min_age_hours` (a cell in training writes its checkpoint every epoch, so an old one belongs to
    a run given up, or to a key that another code version, data version or parameter set no longer asks
    for; were it asked for again, its cell would only start over)."""
    filesystem, root = fsspec.core.url_to_fs(checkpoints_root.rstrip("/"))
    if not filesystem.exists(root):
        return []
    models = fsspec.core.url_to_fs(models_root.rstrip("/"))[1]
    oldest = time.time() - 3600 * min_age_hours
    stale = []
    for entry in sorted(filesystem.ls(root, detail=False)):
        key = entry.rstrip("/").rsplit("/", 1)[-1]
        files = filesystem.find(entry, detail=True)
        size = sum(int(info.get("size") or 0) for info in files.values())
        newest = max((_modified(filesystem, path) for path in files), default=0.0)
        url = f"{checkpoints_root.rstrip('/')}/{key}"
        if filesystem.exists(f"{models}/{key}/cell.json"):
            stale.append(StaleCheckpoint(url, "its cell finished training", size))
        elif newest < oldest:
            hours = (time.time() - newest) / 3600 if newest else float("inf")
            stale.append(StaleCheckpoint(url, f"not written for {hours:.0f} h", size))
    return stale


def _modified(filesystem: Any, path: str) -> float:
    """When `path` was last written (seconds since the epoch); 0 where the filesystem cannot tell."""
    try:
        return filesystem.modified(path).timestamp()
    except (NotImplementedError, OSError, AttributeError):
        return 0.0
