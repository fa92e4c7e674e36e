"""Predicting a whole library into a table: one CSV row per file, files read on the Dask cluster, resumable.

The files are read and turned into log-mels on the cluster's workers (the extraction code: no TensorFlow there),
`CHUNK_FILES` to a task, a few chunks in flight per worker; the model runs in this process, on the clips of a
chunk's files together (`Ensemble.probabilities`). Each chunk's rows are appended to the table and flushed
before the next, so a run that stops keeps every finished row, and the same command again predicts only the
files the table does not hold yet (a last row cut short is dropped and redone). A table written by another
model or data version is refused rather than mixed.

Columns: path, true_genre (from a GTZAN-layout folder), genre_1, probability_1 ... genre_3, probability_3,
learned_from (the model trained or validated on this content), content_key, model, data_version, error.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreflow.core import FeatureConfig
from genreflow.models.directory import CellInfo
from genreflow.tasks.evaluation.predict import (
    CHUNK_FILES,
    AudioInput,
    Ensemble,
    collect_inputs,
    features_or_error,
    predicted_rows,
)

TOP = 3
COLUMNS = [
    "path", "true_genre", *[f"{kind}_{rank}" for rank in range(1, TOP + 1) for kind in ("genre", "probability")],
    "learned_from", "content_key", "model", "data_version", "error",
]  # fmt: skip
CHUNKS_PER_WORKER = 2  # in flight: one being read while the model runs on another


class TableError(ValueError):
    """A table that cannot be continued: another model's, or not a genreflow prediction table."""


@dataclass(frozen=True)
class TableOutcome:
    """What a prediction run did: rows it added, rows it found already there, errors among the added."""

    table: Path
    added: int
    kept: int
    errors: int


def predict_to_table(
    model_dir: str | Path,
    paths: Sequence[str | os.PathLike[str]],
    table: Path,
    client: Any | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TableOutcome:
    """Predict every audio file under `paths` not yet in `table` (a CSV), appending a row per file; with a Dask
    `client`, the files are read on its workers. `progress(done, total)` is called after every chunk."""
    ensemble = Ensemble.load(model_dir)
    identity = {"model": str(model_dir), "data_version": ensemble.cell.data_version}
    done = rows_already_in(table, identity)
    inputs, missing = collect_inputs(paths)
    todo = [item for item in inputs if item.path not in done]
    missing = [entry for entry in missing if entry["path"] not in done]
    chunks = [todo[start : start + CHUNK_FILES] for start in range(0, len(todo), CHUNK_FILES)]
    added = errors = 0
    with contextlib.closing(_Appender(table)) as writer:
        for row in missing:
            writer.writerow(_table_row(row, identity))
            added, errors = added + 1, errors + 1
        for chunk, read in _read_chunks(chunks, ensemble.cell, client):
            for row in predicted_rows(ensemble, chunk, read):
                writer.writerow(_table_row(row, identity))
                errors += "error" in row
            added += len(chunk)
            writer.flush()
            if progress:
                progress(added, len(todo) + len(missing))
    return TableOutcome(table, added, len(done), errors)


def rows_already_in(table: Path, identity: dict[str, str]) -> set[str]:
    """The paths `table` already holds rows for; a last row cut short is removed first (it will be redone)."""
    if not table.exists() or table.stat().st_size == 0:
        return set()
    _drop_partial_last_line(table)
    with table.open(newline="") as stream:
        reader = csv.DictReader(stream)
        if reader.fieldnames != COLUMNS:
            raise TableError(f"{table} is not a genreflow prediction table (its columns are {reader.fieldnames})")
        rows = list(reader)
    for row in rows:
        if (row["model"], row["data_version"]) != (identity["model"], identity["data_version"]):
            raise TableError(
                f"{table} holds predictions of another model ({row['model']}, data version {row['data_version']}); "
                "write this one's to another file"
            )
    return {row["path"] for row in rows}


def _drop_partial_last_line(table: Path) -> None:
    """Cut a last line without its newline (the run writing it stopped mid-row)."""
    content = table.read_bytes()
    if content.endswith(b"\n"):
        return
    with table.open("r+b") as stream:
        stream.truncate(content.rfind(b"\n") + 1)


class _Appender:
    """A CSV writer on a file opened for appending, its header written if the file is new."""

    def __init__(self, table: Path) -> None:
        new = not table.exists() or table.stat().st_size == 0
        table.parent.mkdir(parents=True, exist_ok=True)
        self._stream = table.open("a", newline="")
        self._writer = csv.DictWriter(self._stream, COLUMNS)
        if new:
            self._writer.writeheader()

    def writerow(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)

    def flush(self) -> None:
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        self.flush()
        self._stream.close()


def _read_chunks(
    chunks: list[list[AudioInput]], cell: CellInfo, client: Any | None
) -> Iterator[tuple[list[AudioInput], list[Any]]]:
    """Each chunk with its files' `features_or_error`, read here or on the cluster (a few chunks in flight, the
    next submitted as one comes back; in order of completion)."""
    config, clip_seconds = cell.feature_config, cell.clip_seconds
    if client is None:
        for chunk in chunks:
            yield chunk, read_chunk(chunk, config, clip_seconds)
        return
    from distributed import as_completed

    chunk_of: dict[Any, list[AudioInput]] = {}

    def submit(chunk: list[AudioInput]) -> Any:
        future = client.submit(read_chunk, chunk, config, clip_seconds, pure=False)
        chunk_of[future] = chunk
        return future

    pending = iter(chunks)
    in_flight = max(1, CHUNKS_PER_WORKER * len(client.scheduler_info()["workers"]))
    futures = as_completed([submit(chunk) for chunk in itertools.islice(pending, in_flight)])
    for future in futures:
        read = future.result()
        yield chunk_of.pop(future), read
        for chunk in itertools.islice(pending, 1):
            futures.add(submit(chunk))


def read_chunk(chunk: list[AudioInput], config: FeatureConfig, clip_seconds: float) -> list[Any]:
    """The features (or why not) of each file of a chunk: the worker's part."""
    return [features_or_error(item.path, config, clip_seconds) for item in chunk]


def _table_row(row: dict[str, Any], identity: dict[str, str]) -> dict[str, Any]:
    ranked = sorted(row.get("probabilities", {}).items(), key=lambda item: -item[1])[:TOP]
    values: dict[str, Any] = {"path": row["path"], "true_genre": row.get("true", ""), "error": row.get("error", "")}
    for rank, (genre, probability) in enumerate(ranked, start=1):
        values[f"genre_{rank}"], values[f"probability_{rank}"] = genre, probability
    values["learned_from"] = row.get("learned_from", "")
    values["content_key"] = row.get("key", "")
    return {**values, **identity}
