"""``evaluate``: score one or more prediction stages with the task's leaderboard metric.

Several inputs give the leaderboard table the write-ups kept by hand: single models next to ensembles.
"""

from __future__ import annotations

from typing import Literal

from rich.table import Table

from podium.ensemble.predictions import Predictions, load_predictions
from podium.recipe import StageConfig
from podium.registry import register_stage
from podium.stages.ensemble import PREDICTION_KINDS
from podium.store import StageRun, write_json


class EvaluateConfig(StageConfig):
    kind: Literal["evaluate"] = "evaluate"
    predictions: str | list[str]

    def inputs(self) -> list[str]:
        return [self.predictions] if isinstance(self.predictions, str) else list(self.predictions)

    def references(self):
        return [(f"predictions[{i}]", name, PREDICTION_KINDS) for i, name in enumerate(self.inputs())]


def prediction_source(run: StageRun) -> Predictions | StageRun:
    """Per-item predictions when the stage wrote podium's npz, else the stage run with its files verified."""
    if "predictions.npz" in run.read_manifest().get("outputs", {}):
        return load_predictions(run.output("predictions.npz"))
    run.verify_outputs()
    return run


def scalar_columns(scores: dict[str, dict]) -> list[str]:
    """Metric names whose values are single numbers (per-class breakdowns stay in metrics.json)."""
    return list(dict.fromkeys(k for m in scores.values() for k, v in m.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)))


def leaderboard_table(title: str, scores: dict[str, dict]) -> Table:
    """Predictions as rows and metrics as columns; turned sideways when there are many metrics (MRI)."""
    columns = scalar_columns(scores)

    def cell(m: dict, c: str) -> str:
        return f"{m[c]:.4f}" if isinstance(m.get(c), float) else str(m.get(c, ""))

    table = Table(title=title)
    if len(columns) > 6:
        table.add_column("metric")
        for name in scores:
            table.add_column(name, justify="right")
        for c in columns:
            table.add_row(c, *(cell(m, c) for m in scores.values()))
        return table
    table.add_column("predictions")
    for c in columns:
        table.add_column(c, justify="right")
    for name, m in scores.items():
        table.add_row(name, *(cell(m, c) for c in columns))
    return table


@register_stage("evaluate", EvaluateConfig)
def run(ctx) -> dict:
    scores = {}
    for name in ctx.cfg.inputs():
        scores[name] = ctx.task.evaluate(prediction_source(ctx.upstream_run(name)), ctx.data_root, ctx.cfg,
                                         ctx.run.path / name)
    path = write_json(ctx.run.path / "metrics.json", scores)
    extras = sorted(p for p in ctx.run.path.rglob("*") if p.is_file() and p.parent != ctx.run.path)
    ctx.run.record_outputs([path, *extras])
    ctx.console.print(leaderboard_table(f"{ctx.recipe.name}: {ctx.name}", scores))
    for line in ctx.task.leaderboard_notes(scores):
        ctx.console.print(line)
    return {name: next(iter(m.values())) for name, m in scores.items()}
