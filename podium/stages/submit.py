"""``submit``: write the competition's submission file from one prediction stage, or from several when
the submission joins different predictions (the IQA task's MOS and captions): the task then receives
their predictions as a list, in the order given."""

from __future__ import annotations

from typing import Literal

from podium.recipe import StageConfig
from podium.registry import register_stage
from podium.stages.ensemble import PREDICTION_KINDS
from podium.stages.evaluate import prediction_source


class SubmitConfig(StageConfig):
    kind: Literal["submit"] = "submit"
    predictions: str | list[str]
    filename: str = "submission.csv"

    def inputs(self) -> list[str]:
        return [self.predictions] if isinstance(self.predictions, str) else list(self.predictions)

    def references(self):
        return [(f"predictions[{i}]", name, PREDICTION_KINDS) for i, name in enumerate(self.inputs())]


@register_stage("submit", SubmitConfig)
def run(ctx) -> dict:
    sources = [prediction_source(ctx.upstream_run(name)) for name in ctx.cfg.inputs()]
    preds = sources[0] if isinstance(ctx.cfg.predictions, str) else sources
    path = ctx.task.submit(preds, ctx.data_root, ctx.cfg, ctx.run.path / ctx.cfg.filename)
    ctx.run.record_outputs([path])
    ctx.info(f"submission written to {path}")
    return {"file": path.name}
