"""``submit``: write the competition's submission file from a prediction stage."""

from __future__ import annotations

from typing import Literal

from podium.ensemble.predictions import load_predictions
from podium.recipe import StageConfig
from podium.stages import register_stage
from podium.stages.ensemble import PREDICTION_KINDS


class SubmitConfig(StageConfig):
    kind: Literal["submit"] = "submit"
    predictions: str
    filename: str = "submission.csv"

    def references(self):
        return [("predictions", self.predictions, PREDICTION_KINDS)]


@register_stage("submit", SubmitConfig)
def run(ctx) -> dict:
    preds = load_predictions(ctx.upstream_run(ctx.cfg.predictions).output("predictions.npz"))
    path = ctx.task.submit(preds, ctx.data_root, ctx.cfg, ctx.run.path / ctx.cfg.filename)
    ctx.run.record_outputs([path])
    ctx.info(f"submission written to {path}")
    return {"rows": len(preds.ids)}
