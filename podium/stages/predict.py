"""``predict``: run a checkpoint over a split (with optional TTA) into podium's npz and the task's format.

Tasks whose predictions are per-item arrays return ``Predictions`` (ensembles can combine them); tasks
whose predictions are files (MRI reconstructions) write them under the stage directory and return
their paths, which are checksummed like any other output.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from podium.ensemble.predictions import Predictions, save_predictions
from podium.recipe import Ref, StageConfig
from podium.registry import CHECKPOINT_KINDS, register_stage
from podium.stages.inputs import bound_config


class PredictConfig(StageConfig):
    kind: Literal["predict"] = "predict"
    model: str
    split: str = "test"
    tta: str = "none"
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(0, ge=0)

    unhashed = ("batch_size", "num_workers")

    def references(self):
        return [("model", self.model, CHECKPOINT_KINDS)]


def load_model(task, train_cfg, state_dict: dict):
    """The pure nn.Module of a task's LightningModule, with a checkpoint's weights, in eval mode."""
    module = task.module(train_cfg)
    module.load_state_dict(state_dict)
    return module.model.eval()


@register_stage("predict", PredictConfig)
def run(ctx) -> dict:
    ref = Ref.parse(ctx.cfg.model, f"stages.{ctx.name}.model")
    model, train_cfg = ctx.model(ref)
    cfg = bound_config(ctx, ctx.cfg, handled=("model",))
    preds = ctx.task.predict(model, train_cfg, cfg, ctx.data_root, ctx.run.path)
    if not isinstance(preds, Predictions):
        ctx.run.record_outputs(preds)
        ctx.info(f"{len(preds)} files written with {ref} (tta: {ctx.cfg.tta})")
        return {"files": len(preds)}
    files = [save_predictions(ctx.run.path / "predictions.npz", preds),
             *ctx.task.write_predictions(preds, ctx.cfg, ctx.run.path)]
    ctx.run.record_outputs(files)
    ctx.info(f"{len(preds.ids)} {preds.split} items predicted with {ref} (tta: {ctx.cfg.tta})")
    return {"items": len(preds.ids), "split": preds.split}
