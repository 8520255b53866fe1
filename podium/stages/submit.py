"""``submit``: write the competition's submission file from a prediction stage."""

from __future__ import annotations

from typing import Literal

from podium.recipe import StageConfig
from podium.registry import register_stage
from podium.stages.ensemble import PREDICTION_KINDS
from podium.stages.evaluate import prediction_source


class SubmitConfig(StageConfig):
    kind: Literal["submit"] = "submit"
    predictions: str
    filename: str = "submission.csv"

    def references(self):
        return [("predictions", self.predictions, PREDICTION_KINDS)]


@register_stage("submit", SubmitConfig)
def run(ctx) -> dict:
    preds = prediction_source(ctx.upstream_run(ctx.cfg.predictions))
    path = ctx.task.submit(preds, ctx.data_root, ctx.cfg, ctx.run.path / ctx.cfg.filename)
    ctx.run.record_outputs([path])
    ctx.info(f"submission written to {path}")
    return {"file": path.name}
