"""The report as a document: sections of paragraphs, tables, bullet lists and figures, built once and rendered
twice (render.py), so the Markdown and the HTML never disagree; and the small text formats every section uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from genreflow.tasks.report.plots import Plot
from genreflow.tasks.report.statistics import Spread


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class Bullets:
    items: list[str]


Block = str | Table | Bullets | Plot


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block]


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def spread_text(value: Spread | None) -> str:
    """'61.7 ± 5.2' in percent; no ± for a single seed; '—' when absent."""
    if value is None:
        return "—"
    return percent(value.mean) + (f" ± {percent(value.sd)}" if value.sd is not None else "")


def values_text(value: Spread | None) -> str:
    """Each seed's value in percent, '72.9, 82.9'; '—' when absent."""
    return "—" if value is None else ", ".join(map(percent, value.values))


def interval_text(interval: tuple[float, float] | None) -> str:
    return "—" if interval is None else f"[{percent(interval[0])}, {percent(interval[1])}]"


def clip_text(seconds: float) -> str:
    return f"{seconds:g} s"


def mean_or_none(value: Spread | None) -> float | None:
    return None if value is None else value.mean


def value_text(value: Any) -> str:
    """Strings as they are, everything else as JSON, so nested settings read the same everywhere."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value)


def number_text(value: float | None, template: str) -> str:
    return "—" if value is None else template.format(value)
