"""The parts of the report every recipe has, drawn from the run store: leaderboards, training curves,
soups' greedy paths, ensembles' weights and inputs, and a second run side by side.

Each function returns an HTML fragment and reads only manifests, metrics files and recorded outputs
(verified before they are read).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from podium.engine.metrics_log import compare_epochs, read_epochs
from podium.report.draw import BAD, GOOD, NEUTRAL, Figures, bars, colour, esc, fmt, layout, table
from podium.report.items import Bars, Baseline, RunView, headline, is_score
from podium.store import StageRun


def baseline_lines(scores: dict[str, dict[str, Any]], baselines: list[Baseline]) -> dict[str, float]:
    """The task baselines these metrics carry (every prediction of an evaluate stage has the same)."""
    out = {}
    for b in baselines:
        value = next((m[b.metric] for m in scores.values() if is_score(m.get(b.metric))), None)
        if value is not None:
            out[b.label] = float(value)
    return out


# --- leaderboard -------------------------------------------------------------------------------------


def leaderboard(view: RunView, name: str, baselines: list[Baseline], figures: Figures,
                other: RunView | None = None) -> str:
    """The headline as a sorted bar chart (best on top) with the baselines as lines, then every number."""
    scores = view.scores(name)
    if scores is None:
        return "<p class='note'>not scored yet</p>"
    ranked = sorted(((headline(m), p) for p, m in scores.items() if headline(m)), key=lambda t: -t[0][1])
    out = ""
    if ranked:
        metric = ranked[0][0][0]
        series = {view.label: [h[1] for h, _ in ranked]}
        theirs = other.scores(name) if other is not None and name in other.recipe.stages else None
        if theirs:
            series[other.label] = [theirs[p][metric] if is_score(theirs.get(p, {}).get(metric)) else None
                                   for _, p in ranked]
        out += bars(Bars(title="", labels=[p for _, p in ranked], series=series, axis=metric, horizontal=True,
                         lines=baseline_lines(scores, baselines)), figures)
    columns = list(dict.fromkeys(k for m in scores.values() for k, v in m.items() if is_score(v)))
    out += table(["predictions", *columns], [[p, *(fmt(m.get(c)) for c in columns)] for p, m in scores.items()])
    return out


# --- training curves -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    stage: str
    member: int | None
    epochs: dict[int, dict[str, float]]
    best: dict[str, Any]

    @property
    def label(self) -> str:
        return self.stage + (f"[{self.member}]" if self.member is not None else "")


def curves(view: RunView) -> list[Curve]:
    """Every train stage's (and sweep member's) per-epoch metrics, in recipe order."""
    out = []
    for name in view.of_kind("train"):
        runs = view.runs[name]
        for i, run in enumerate(runs):
            path = run.path / "logs" / "metrics.csv"
            if path.is_file():
                best = run.read_manifest().get("checkpoints", {}).get("best", {})
                out.append(Curve(name, i if len(runs) > 1 else None, read_epochs(path), best))
    return out


def _metric_order(metrics: list[str]) -> list[str]:
    """Validation first, then training, then the rest; the learning rate last."""
    def rank(m: str) -> tuple[int, int]:
        group = 0 if m.startswith("val") else 1 if m.startswith("train") else 3 if m == "lr" else 2
        return group, metrics.index(m)
    return sorted(metrics, key=rank)


def training_figure(mine: list[Curve], figures: Figures, theirs: Sequence[Curve] = (), their_label: str = "") -> str:
    """One panel per metric, every run of that metric on the panel's shared axes; each run keeps its colour
    in every panel (click its legend entry to hide it everywhere). The best epoch is a star on the panel
    of the metric that chose it; a second run is dashed."""
    metrics = _metric_order(list(dict.fromkeys(k for c in [*mine, *theirs] for row in c.epochs.values()
                                               for k in row if k != "step")))
    if not metrics:
        return "<p class='note'>no metrics logged</p>"
    cols = 2 if len(metrics) > 1 else 1
    rows = math.ceil(len(metrics) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=metrics, horizontal_spacing=0.08,
                        vertical_spacing=0.3 / rows)  # about 80 px between rows of 260
    index = {c.label: i for i, c in enumerate(mine)}
    for dashed, group in ((False, mine), (True, theirs)):
        for c in group:
            i = index.get(c.label, len(index))
            name = f"{their_label}: {c.label}" if dashed else c.label
            epochs = sorted(c.epochs)
            legend = True  # on the first panel the run appears in
            for k, metric in enumerate(metrics):
                pts = [(e, c.epochs[e][metric]) for e in epochs if metric in c.epochs[e]]
                if not pts:
                    continue
                row, col = k // cols + 1, k % cols + 1
                fig.add_scatter(x=[e for e, _ in pts], y=[v for _, v in pts], mode="lines+markers", name=name,
                                legendgroup=name, showlegend=legend,
                                line={"color": colour(i), "dash": "dash" if dashed else "solid", "width": 1.8},
                                marker={"size": 4}, row=row, col=col,
                                hovertemplate=f"{esc(name)}<br>epoch %{{x}}<br>{metric} %{{y:.5g}}<extra></extra>")
                legend = False
                best = c.best.get("epoch")
                if c.best.get("monitor") == metric and best in c.epochs and metric in c.epochs[best]:
                    fig.add_scatter(x=[best], y=[c.epochs[best][metric]], mode="markers", name=name,
                                    legendgroup=name, showlegend=False, row=row, col=col,
                                    marker={"symbol": "star", "size": 14, "color": colour(i),
                                            "line": {"color": "#222", "width": 1}},
                                    hovertemplate=f"{esc(name)}: best epoch %{{x}}<br>{metric} %{{y:.5g}}"
                                                  "<extra></extra>")
    for k, metric in enumerate(metrics):
        if k + cols >= len(metrics):  # the lowest panel of its column
            fig.update_xaxes(title_text="epoch", row=k // cols + 1, col=k % cols + 1)
        rates = [row["lr"] for c in [*mine, *theirs] for row in c.epochs.values() if "lr" in row]
        if metric == "lr" and min(rates) > 0:  # a schedule that ends at 0 has no log axis
            fig.update_yaxes(type="log", row=k // cols + 1, col=k % cols + 1)
    layout(fig, 120 + 260 * rows, legend={"orientation": "h", "y": -0.08 if rows > 1 else -0.25, "x": 0})
    return figures.html(fig)


def training_table(found: list[Curve]) -> str:
    """Per train stage and member: epochs, best epoch and score; each stage's first row is its anchor."""
    rows, ids, seen = [], [], set()
    for c in found:
        last = c.epochs[max(c.epochs)] if c.epochs else {}
        rows.append([c.label, len(c.epochs), c.best.get("epoch", ""), c.best.get("monitor", ""),
                     fmt(c.best.get("score")), fmt(last.get("lr"))])
        ids.append("" if c.stage in seen else f"stage-{c.stage}")
        seen.add(c.stage)
    return table(["run", "epochs", "best epoch", "monitor", "best score", "last lr"], rows, ids)


def differences(mine: list[Curve], theirs: Sequence[Curve]) -> str:
    """What ``podium compare`` prints, per run both sides have: the first epoch at which they differ."""
    by_label = {c.label: c for c in theirs}
    rows = []
    for c in mine:
        if c.label not in by_label:
            continue
        cmp = compare_epochs(c.epochs, by_label[c.label].epochs)
        firsts = {m: e for m, e in cmp.first_difference.items() if e is not None}
        first = min(firsts.values(), default=None)
        worst = max(cmp.max_abs_difference.items(), key=lambda kv: kv[1], default=("", 0.0))
        rows.append([c.label, cmp.epochs, "identical" if first is None else first,
                     ", ".join(m for m, e in firsts.items() if e == first), f"{worst[0]} {worst[1]:.3g}" if first
                     is not None else ""])
    if not rows:
        return "<p class='note'>no train stage ran in both</p>"
    return table(["run", "common epochs", "first differing epoch", "metrics that differ first",
                  "largest |difference|"], rows)


# --- soups and ensembles -------------------------------------------------------------------------------


def soup(view: RunView, name: str, figures: Figures) -> str:
    """A greedy soup's path: each member tried in rank order, its own score, the candidate soup's score
    (kept or not) and the soup's score after the step."""
    done = view.done(name)
    if not done:
        return "<p class='note'>not done yet</p>"
    manifest = done[0].read_manifest()
    metrics = manifest.get("metrics", {})
    summary = (f"<p>{esc(view.recipe.stages[name].config.method)} soup of {metrics.get('ingredients', '?')} of "
               f"{metrics.get('members', '?')} members: held-out score {fmt(metrics.get('heldout_score'))}</p>")
    steps = manifest.get("greedy_path")
    if not steps:
        return summary
    x = [f"{i + 1}: member {s['member']}" for i, s in enumerate(steps)]
    fig = go.Figure()
    fig.add_scatter(x=x, y=[s["score"] for s in steps], mode="markers", name="member alone",
                    marker={"color": NEUTRAL, "size": 9, "symbol": "diamond"})
    fig.add_scatter(x=x, y=[s["candidate_score"] for s in steps], mode="markers", name="candidate soup",
                    text=["kept" if s["accepted"] else "rejected" for s in steps],
                    marker={"color": [GOOD if s["accepted"] else BAD for s in steps], "size": 11,
                            "symbol": ["circle" if s["accepted"] else "x" for s in steps]},
                    hovertemplate="%{x}<br>candidate %{y:.4f} (%{text})<extra></extra>")
    fig.add_scatter(x=x, y=[s["soup_score"] for s in steps], mode="lines+markers", name="soup after the step",
                    line={"color": "#1f77b4", "shape": "hv"})
    layout(fig, 360, yaxis={"title": "held-out score"}, xaxis={"title": "members in rank order"})
    rows = [[i + 1, s["member"], fmt(s["score"]), fmt(s["candidate_score"]), "kept" if s["accepted"] else "no",
             fmt(s["soup_score"])] for i, s in enumerate(steps)]
    return summary + figures.html(fig) + table(["step", "member", "alone", "candidate", "kept", "soup"], rows)


def ensemble(view: RunView, name: str, baselines: list[Baseline], figures: Figures) -> str:
    """The blend's weights, and its inputs' headline next to the blend's from the evaluate stages that
    scored them all."""
    cfg = view.recipe.stages[name].config
    weights = cfg.weights()
    out = f"<p>{esc(cfg.method)} of {', '.join(f'{esc(p)} ×{w:g}' for p, w in weights.items())}</p>"
    for ev in view.of_kind("evaluate"):
        scores = view.scores(ev)
        if not scores or name not in scores:
            continue
        shown = [p for p in weights if p in scores and headline(scores[p])] + [name]
        labels = [f"{p} ×{weights[p]:g}" if p in weights else f"{p} ({cfg.method})" for p in shown]
        metric = headline(scores[name])
        if metric is None:
            continue
        values = [headline(scores[p])[1] for p in shown]
        out += f"<h3>scored by {esc(ev)}</h3>" + bars(
            Bars(title="", labels=labels, series={metric[0]: values}, axis=metric[0], horizontal=True,
                 lines=baseline_lines(scores, baselines), highlight=(labels[-1],)), figures)
    return out


def stage_rows(view: RunView) -> list[list[str]]:
    """The stage table: kind, task, state, hash, seconds spent (every attempt, every member), key metric."""
    out = []
    for row in view.rows:
        node = view.recipe.stages[row.stage]
        seconds = stage_seconds(view.runs[row.stage])
        out.append([row.stage, row.kind, node.task or "", row.state, row.hash,
                    "" if seconds is None else f"{seconds:.1f}", row.metric])
    return out


def stage_seconds(runs: list[StageRun]) -> float | None:
    times = [a["seconds"] for r in runs for a in r.read_manifest().get("attempts", []) if "seconds" in a]
    return sum(times) if times else None
