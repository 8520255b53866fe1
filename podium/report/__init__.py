"""The run report: ``runs/<recipe>/report.html``, one self-contained file people open first.

It holds the pipeline as a graph of stages (each box a link to its part), the leaderboards as sorted bar
charts with the task's baseline, every train stage's curves on shared axes, soups' greedy paths,
ensembles' weights and inputs, and per task what the models produce (``Task.report_items``, drawn by the
shared helpers of ``podium.report.draw``). With a second run, both runs' curves are overlaid and the
first epoch at which they differ is listed.

Plotly writes the charts: maintained, interactive (hover, zoom, legend toggles) and its standalone HTML
needs only the plotly.js bundle, inlined once per file. Every part is drawn on its own: one that fails
becomes a visible note and a warning, never a failed run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from podium.registry import get_task
from podium.report.draw import esc, picture, table
from podium.report.graph import Node, pipeline_svg
from podium.report.items import Baseline, RunView
from podium.report.page import Page, Section
from podium.report.sections import (
    Curve,
    curves,
    differences,
    ensemble,
    leaderboard,
    soup,
    stage_rows,
    stage_seconds,
    training_figure,
    training_table,
)
from podium.store import atomic_write

__all__ = ["RunView", "write_report"]


class _Parts:
    """Draws the report's parts one at a time; a part that raises is replaced by a note saying why."""

    def __init__(self, page: Page, warn: Callable[[str], None]):
        self.page = page
        self.warn = warn

    def fail(self, what: str, error: Exception) -> str:
        message = f"{what}: {type(error).__name__}: {error}"
        self.page.failures.append(message)
        self.warn(f"report: could not draw {message}")
        return f"<div class='failed'>Could not draw {esc(message)}</div>"

    def html(self, what: str, draw: Callable[[], str]) -> str:
        try:
            return draw()
        except Exception as e:  # the report never fails a run: the part becomes a note
            return self.fail(what, e)


def _curves(view: RunView, parts: _Parts) -> list[Curve]:
    try:
        return curves(view)
    except Exception as e:  # a damaged metrics file costs the curves, not the report
        parts.fail(f"training curves of {view.label}", e)
        return []


def _pipeline(view: RunView, anchored: set[str]) -> str:
    """The graph, then the stage table; a stage with no part of its own is linked to its table row."""
    rows = {r.stage: r for r in view.rows}
    nodes = [Node(n, rows[n].kind, tuple(view.recipe.stages[n].needs), rows[n].state, rows[n].hash,
                  stage_seconds(view.runs[n]), rows[n].metric, f"#stage-{n}") for n in view.recipe.order]
    ids = ["" if r.stage in anchored else f"stage-{r.stage}" for r in view.rows]
    return pipeline_svg(nodes) + table(["stage", "kind", "task", "state", "hash", "seconds", "key metric"],
                                       stage_rows(view), ids)


def _comparison(view: RunView, other: RunView, mine: list[Curve], theirs: list[Curve]) -> str:
    """Each stage's hash, state and key metric in both runs, then where their training first parted."""
    theirs_rows = {r.stage: r for r in other.rows}
    rows = []
    for r in view.rows:
        o = theirs_rows.get(r.stage)
        rows.append([r.stage, r.state, r.hash, r.metric, *((o.state, o.hash, o.metric) if o else ("", "", "")),
                     "yes" if o and o.hash == r.hash else "no"])
    a, b = esc(view.label), esc(other.label)
    header = ["stage", f"{a} state", f"{a} hash", f"{a} key metric", f"{b} state", f"{b} hash", f"{b} key metric",
              "same hash"]
    return (table(header, rows) + "<h3>First epoch at which the training differs</h3>"
            + differences(mine, theirs))


def _task_pictures(view: RunView, parts: _Parts) -> tuple[dict[str, str], list[Baseline]]:
    """Each task's pictures (HTML, grouped under their headings) and the baselines its leaderboards draw."""
    stages = view.recipe.stages
    pictures: dict[str, str] = {}
    baselines: list[Baseline] = []
    for task in dict.fromkeys(stages[n].task for n in view.recipe.order if stages[n].task):
        try:
            items = get_task(task).report_items(view)
        except Exception as e:  # the report never fails a run: the task's part becomes a note
            pictures[task] = parts.fail(f"{task} pictures", e)
            continue
        baselines += [i for i in items if isinstance(i, Baseline)]
        groups: dict[str, str] = {}
        for item in items:
            if not isinstance(item, Baseline):
                drawn = parts.html(f"{task}: {item.title}", functools.partial(picture, item, parts.page.figures))
                groups[item.group] = groups.get(item.group, "") + drawn
        pictures[task] = "".join((f"<h3>{esc(g)}</h3>" if g else "") + body for g, body in groups.items())
    return pictures, baselines


def write_report(view: RunView, out: Path, other: RunView | None = None,
                 warn: Callable[[str], None] = lambda message: None) -> Path:
    """Write the report of ``view`` (next to ``other``'s curves and scores when given) to ``out``,
    atomically; ``warn`` hears about each part that could not be drawn."""
    recipe = view.recipe
    vs = f" vs {other.label}" if other else ""
    page = Page(f"{recipe.name}{vs}", esc(f"profile {recipe.profile or '(none)'} · seed {recipe.seed} · "
                                          f"data {view.data_root or '(not there yet)'}"))
    parts = _Parts(page, warn)
    anchored: set[str] = set()
    pictures, baselines = _task_pictures(view, parts)

    evaluates = [n for n in recipe.order if recipe.stages[n].kind == "evaluate"]
    if evaluates:
        page.add("leaderboard", "Leaderboard", "".join(
            f"<h3 id='stage-{esc(n)}'>{esc(n)}</h3>"
            + parts.html(f"leaderboard {n}", functools.partial(leaderboard, view, n, baselines, page.figures, other))
            for n in evaluates))
        anchored.update(evaluates)

    mine = _curves(view, parts)
    theirs = _curves(other, parts) if other else []
    if mine or theirs:
        body = parts.html("training curves", lambda: training_figure(mine, page.figures, theirs,
                                                                      other.label if other else ""))
        body += parts.html("training table", lambda: training_table(mine))
        page.add("training", "Training", body)
        anchored.update(c.stage for c in mine)

    for kind, title, draw in (("soup", "Soups", lambda n: soup(view, n, page.figures)),
                              ("ensemble", "Ensembles", lambda n: ensemble(view, n, baselines, page.figures))):
        names = [n for n in recipe.order if recipe.stages[n].kind == kind]
        if names:
            page.add(kind, title, "".join(f"<h3 id='stage-{esc(n)}'>{esc(n)}</h3>"
                                          + parts.html(f"{kind} {n}", functools.partial(draw, n)) for n in names))
            anchored.update(names)

    for task, body in pictures.items():
        if body:
            page.add(f"task-{task}", f"What the models produce ({task})", body)

    if other:
        page.add("comparison", f"{view.label} vs {other.label}",
                 parts.html("comparison", lambda: _comparison(view, other, mine, theirs)))

    pipeline = parts.html("pipeline", lambda: _pipeline(view, anchored))
    page.sections.insert(0, Section("pipeline", "Pipeline", pipeline))
    return atomic_write(out, page.render())
