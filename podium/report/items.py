"""What a task shows in the run report: plain data (arrays, numbers, text) that shared helpers draw.

A task returns these from ``Task.report_items``; it never draws or writes HTML itself, so every task's
pictures look alike, a new task needs no plotting code, and this module imports no plotting library.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from podium.store import StageRun, write_json

Tone = Literal["", "good", "bad", "extra"]  # plain, right, wrong (missed), wrong (predicted but absent)


@dataclass(frozen=True)
class Span:
    text: str
    tone: Tone = ""


@dataclass(frozen=True)
class Tile:
    """One image with its caption. uint8 images are shown as they are; float ones scaled from 0 to
    ``vmax`` (default: their own maximum). ``flagged`` frames it in red: an error worth a look."""

    image: np.ndarray  # (H, W) or (H, W, 3)
    caption: tuple[Span, ...] = ()
    flagged: bool = False
    vmax: float | None = None


@dataclass(frozen=True, kw_only=True)
class Picture:
    """What every picture has: a title, a note under it, and the heading it is grouped under."""

    title: str
    group: str = ""
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class ImageGrid(Picture):
    tiles: list[Tile]
    columns: int = 6
    tile_px: int = 160  # images are shrunk to this size (largest side) before they are embedded


@dataclass(frozen=True, kw_only=True)
class Bars(Picture):
    """Bars per label, one series each (grouped); ``lines`` are labelled reference values (a baseline, a
    time budget) drawn across the chart."""

    labels: list[str]
    series: dict[str, list[float | None]]
    axis: str
    lines: dict[str, float] = field(default_factory=dict)
    horizontal: bool = False
    log: bool = False
    highlight: tuple[str, ...] = ()  # labels drawn in another colour (the blend among its inputs)


@dataclass(frozen=True, kw_only=True)
class Heatmap(Picture):
    matrix: np.ndarray
    x_labels: list[str]
    y_labels: list[str]
    x_title: str
    y_title: str


@dataclass(frozen=True, kw_only=True)
class Strip(Picture):
    """Points per group (a strip each), one colour per series: ``series -> group -> [(label, value)]``."""

    points: dict[str, dict[str, list[tuple[str, float]]]]
    axis: str


@dataclass(frozen=True, kw_only=True)
class Scatter(Picture):
    """Labelled (x, y) points, one colour per series: ``series -> [(label, x, y)]``; ``diagonal`` draws
    y = x (predicted against true values)."""

    points: dict[str, list[tuple[str, float, float]]]
    x_title: str
    y_title: str
    diagonal: bool = False


@dataclass(frozen=True)
class Baseline:
    """Not a picture: the score a trivial submission gets (``metric``, a key of the task's evaluate
    metrics), which the leaderboard charts draw as a line labelled ``label``."""

    metric: str
    label: str


ReportItem = ImageGrid | Bars | Heatmap | Strip | Scatter | Baseline


@dataclass(frozen=True)
class RunView:
    """One run of a recipe as the report (and a task's ``report_items``) sees it: the recipe, the status
    rows (``api.StageStatus``), every stage's runs at the recipe's current hashes (done or not), the data
    root (None before the data exists), a folder of the run store to keep costly derived numbers in (see
    :func:`cached`), and ``label``, its name next to another run."""

    label: str
    recipe: Any
    rows: list[Any]
    runs: dict[str, list[StageRun]]
    data_root: Path | None
    cache: Path

    def done(self, name: str) -> list[StageRun]:
        return [r for r in self.runs.get(name, []) if r.status == "done"]

    def of_kind(self, kind: str, task: str | None = None) -> list[str]:
        """The recipe's stages of ``kind`` (run with ``task`` when given), in recipe order."""
        stages = self.recipe.stages
        return [n for n in self.recipe.order if stages[n].kind == kind and task in (None, stages[n].task)]

    def scores(self, evaluate: str) -> dict[str, dict[str, Any]] | None:
        """An evaluate stage's metrics.json (prediction -> metrics), or None while it is not done."""
        done = self.done(evaluate)
        return json.loads(done[0].output("metrics.json").read_text()) if done else None


@dataclass(frozen=True)
class Scored:
    """The best prediction stage an evaluate stage scored, by its headline (the first metric)."""

    evaluate: str
    prediction: str
    run: StageRun
    metrics: dict[str, Any]


def best_scored(view: RunView, task: str) -> list[Scored]:
    """Per finished evaluate stage of ``task``, the prediction with the highest headline: the report
    shows what the best submission produced (every task's headline is a score, higher is better)."""
    out = []
    for name in view.of_kind("evaluate", task):
        scores = view.scores(name)
        if scores is None:
            continue
        ranked = [(h[1], p) for p, m in scores.items() if (h := headline(m))]
        if not ranked:
            continue
        best = max(ranked)[1]
        runs = view.done(best)
        if runs:
            out.append(Scored(name, best, runs[0], scores[best]))
    return out


def is_score(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def headline(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """(name, value) of an evaluate stage's first metric, the leaderboard's, when it is a number."""
    if not metrics:
        return None
    key, value = next(iter(metrics.items()))
    return (key, float(value)) if is_score(value) else None


def cached(cache: Path, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON result, kept under ``cache/key.json``: a key names finished stages by hash,
    whose outputs never change, so the next report reads it instead of recomputing."""
    path = cache / f"{key}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass  # a damaged cache entry is only recomputed
    value = compute()
    write_json(path, value)
    return value
