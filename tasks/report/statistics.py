"""The report's statistics: cell results, their spread over seeds, bootstrap intervals, McNemar's test.

Small test sets (tens of tracks) make single accuracies noisy, so every headline number comes with its
spread over seeds and a 95% bootstrap interval over test tracks, and model comparisons are paired on the
same test tracks. Only numpy and the standard library: a report must build in seconds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # a fixed seed: rebuilding a report gives the same intervals
CONFIDENCE = 0.95
# Below this many discordant tracks the chi-square approximation is poor; use the exact binomial test.
EXACT_MCNEMAR_BELOW = 25


class ReportInputError(ValueError):
    """A results file that cannot be reported on; the message names the file and the problem."""


@dataclass(frozen=True)
class Prediction:
    track_id: str
    true: str
    predicted: str


@dataclass(frozen=True)
class CellResult:
    """One trained (model, clip length, seed) result, as the report needs it."""

    model: str
    clip_seconds: float
    seed: int
    genres: tuple[str, ...]
    metrics: dict[str, dict[str, Any]]  # "track" and (optionally) "clip", as in result.json
    predictions: tuple[Prediction, ...]
    history: dict[str, list[float]]
    costs: dict[str, float | None]  # params, size_bytes, train_seconds, epochs_run, predict_clips_per_second
    n_tracks: dict[str, int]
    data_version: str | None
    excluded: dict[str, str]  # tracks too short for the clip: track id -> reason
    settings: dict[str, Any]  # how it trained (genreflow.core.TrainingSettings); empty in older results

    def metric(self, level: str, name: str) -> float | None:
        return self.metrics.get(level, {}).get(name)

    @classmethod
    def from_json(cls, values: dict[str, Any], where: str) -> CellResult:
        """Check the keys the report relies on; `where` names the file and cell in any error."""
        if not isinstance(values, dict):
            raise ReportInputError(f"{where}: expected a JSON object, found {type(values).__name__}")
        for key in ("model", "clip_seconds", "seed", "genres", "metrics"):
            if key not in values:
                raise ReportInputError(f"{where}: missing '{key}'")
        for key in ("accuracy", "macro_f1"):
            if not isinstance(values["metrics"].get("track", {}).get(key), (int, float)):
                raise ReportInputError(f"{where}: missing or non-numeric 'metrics.track.{key}'")
        return cls(
            model=str(values["model"]),
            clip_seconds=float(values["clip_seconds"]),
            seed=int(values["seed"]),
            genres=tuple(values["genres"]),
            metrics=values["metrics"],
            predictions=tuple(
                _prediction(entry, values["genres"], where) for entry in values.get("track_predictions") or []
            ),
            history={key: list(series) for key, series in (values.get("history") or {}).items()},
            costs={key: values.get(key) for key in COST_KEYS},
            n_tracks=dict(values.get("n_tracks") or {}),
            data_version=values.get("data_version"),
            excluded=dict(values.get("excluded") or {}),
            settings=dict(values.get("settings") or {}),
        )


COST_KEYS = ("params", "size_bytes", "train_seconds", "epochs_run", "predict_clips_per_second")


def _prediction(entry: dict[str, Any], genres: list[str], where: str) -> Prediction:
    try:
        prediction = Prediction(str(entry["track_id"]), str(entry["true"]), str(entry["predicted"]))
    except (KeyError, TypeError) as error:
        raise ReportInputError(f"{where}: a track prediction lacks {error}") from error
    for genre in (prediction.true, prediction.predicted):
        if genre not in genres:
            raise ReportInputError(
                f"{where}: track {prediction.track_id} names genre {genre!r}, which is not in 'genres'"
            )
    return prediction


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation over seeds (no deviation from a single seed), and each seed's value."""

    mean: float
    sd: float | None
    values: tuple[float, ...]


def spread(values: Sequence[float | None]) -> Spread | None:
    """Spread of the values that are present; None when none are."""
    present = [float(value) for value in values if value is not None]
    if not present:
        return None
    deviation = statistics.stdev(present) if len(present) > 1 else None
    return Spread(statistics.fmean(present), deviation, tuple(present))


@dataclass(frozen=True)
class CellSummary:
    """All seeds of one (model, clip length): what one row of the headline table shows."""

    model: str
    clip_seconds: float
    seeds: tuple[int, ...]
    track_accuracy: Spread
    track_macro_f1: Spread
    clip_accuracy: Spread | None
    clip_macro_f1: Spread | None
    vote_accuracy: Spread | None  # a track decided by the majority of its clips; None in older results
    accuracy_interval: tuple[float, float] | None
    macro_f1_interval: tuple[float, float] | None
    costs: dict[str, Spread | None]


def summarise(cells: Sequence[CellResult]) -> CellSummary:
    """Aggregate the seeds of one (model, clip length), each seed's values in seed order; intervals need every
    seed's track predictions."""
    cells = sorted(cells, key=lambda cell: cell.seed)
    first = cells[0]
    with_predictions = all(cell.predictions for cell in cells)
    return CellSummary(
        model=first.model,
        clip_seconds=first.clip_seconds,
        seeds=tuple(sorted(cell.seed for cell in cells)),
        track_accuracy=spread([cell.metric("track", "accuracy") for cell in cells]),
        track_macro_f1=spread([cell.metric("track", "macro_f1") for cell in cells]),
        clip_accuracy=spread([cell.metric("clip", "accuracy") for cell in cells]),
        clip_macro_f1=spread([cell.metric("clip", "macro_f1") for cell in cells]),
        vote_accuracy=spread([cell.metric("track_vote", "accuracy") for cell in cells]),
        accuracy_interval=track_accuracy_interval(cells) if with_predictions else None,
        macro_f1_interval=track_macro_f1_interval(cells) if with_predictions else None,
        costs={key: spread([cell.costs[key] for cell in cells]) for key in COST_KEYS},
    )


def track_accuracy_interval(cells: Sequence[CellResult]) -> tuple[float, float]:
    samples = [np.array([p.true == p.predicted for p in cell.predictions]) for cell in cells]
    return bootstrap_interval(samples, accuracy_of_rows)


def track_macro_f1_interval(cells: Sequence[CellResult]) -> tuple[float, float]:
    genres = cells[0].genres
    samples = [encode_pairs(cell.predictions, genres) for cell in cells]
    return bootstrap_interval(samples, partial(macro_f1_of_rows, n_classes=len(genres)))


def encode_pairs(predictions: Sequence[Prediction], genres: Sequence[str]) -> np.ndarray:
    """Each (true, predicted) pair as one integer true * K + predicted, so resampling stays vectorised."""
    index = {genre: position for position, genre in enumerate(genres)}
    return np.array([index[p.true] * len(genres) + index[p.predicted] for p in predictions], dtype=np.int64)


def bootstrap_interval(
    samples: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray], np.ndarray],
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile interval of the seed-mean statistic, resampling each seed's test tracks with replacement.

    `statistic` maps a (resamples, n) array of per-track items to (resamples,) values. Each seed keeps its own
    test tracks, so seeds with different splits are handled alike.
    """
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for items in samples:
        picks = rng.integers(0, len(items), size=(resamples, len(items)))
        total += statistic(items[picks])
    tail = (1 - confidence) / 2
    low, high = np.quantile(total / len(samples), [tail, 1 - tail])
    return float(low), float(high)


def accuracy_of_rows(correct: np.ndarray) -> np.ndarray:
    return correct.mean(axis=1)


def macro_f1_of_rows(pairs: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of each row of encoded (true, predicted) pairs, over the genres present in that row."""
    rows = pairs.shape[0]
    offsets = np.arange(rows)[:, None] * n_classes * n_classes
    counts = np.bincount((pairs + offsets).ravel(), minlength=rows * n_classes * n_classes)
    confusion = counts.reshape(rows, n_classes, n_classes)
    hits = np.diagonal(confusion, axis1=1, axis2=2)
    support = confusion.sum(axis=2) + confusion.sum(axis=1)
    present = support > 0
    f1 = np.divide(2 * hits, support, out=np.zeros(hits.shape), where=present)
    return f1.sum(axis=1) / present.sum(axis=1)


@dataclass(frozen=True)
class McNemar:
    """McNemar's paired test on the tracks two models both classified."""

    tracks: int
    only_first_right: int
    only_second_right: int
    p_value: float
    method: str


def paired_correctness(first: CellResult, second: CellResult) -> tuple[np.ndarray, np.ndarray]:
    """Right/wrong of both cells on the test tracks they share, in the same track order."""
    second_by_track = {p.track_id: p for p in second.predictions}
    shared = [p for p in first.predictions if p.track_id in second_by_track]
    first_right = np.array([p.true == p.predicted for p in shared], dtype=bool)
    second_right = np.array(
        [second_by_track[p.track_id].true == second_by_track[p.track_id].predicted for p in shared], dtype=bool
    )
    return first_right, second_right


def mcnemar(first_right: np.ndarray, second_right: np.ndarray) -> McNemar:
    """Exact binomial test on the discordant tracks when they are few, else chi-square with continuity correction."""
    only_first = int(np.sum(first_right & ~second_right))
    only_second = int(np.sum(~first_right & second_right))
    discordant = only_first + only_second
    if discordant < EXACT_MCNEMAR_BELOW:
        p_value, method = exact_binomial_p(min(only_first, only_second), discordant), "exact binomial"
    else:
        p_value, method = chi_square_p(only_first, only_second), "chi-square, continuity-corrected"
    return McNemar(len(first_right), only_first, only_second, p_value, method)


def exact_binomial_p(smaller: int, trials: int) -> float:
    """Two-sided p of seeing `smaller` or fewer successes (or as many more) in `trials` fair coin flips."""
    if trials == 0:
        return 1.0
    tail = sum(math.comb(trials, k) for k in range(smaller + 1)) / 2**trials
    return min(1.0, 2 * tail)


def chi_square_p(only_first: int, only_second: int) -> float:
    """Upper tail of chi-square with 1 degree of freedom for McNemar's corrected statistic."""
    statistic = max(abs(only_first - only_second) - 1, 0) ** 2 / (only_first + only_second)
    return math.erfc(math.sqrt(statistic / 2))
