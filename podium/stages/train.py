"""``train``: fit a task's model with Lightning; resume exactly from the last good checkpoint.

``init: other@epoch=N`` warm-starts from another stage's checkpoint: its weights, or with
``init_state: full`` also its optimiser, scheduler and loop state (training continues from epoch N up
to this stage's ``max_epochs``). ``members:`` (handled by the recipe) turns one stage into a sweep.
"""

from __future__ import annotations

from typing import Literal

import lightning as L

from podium.engine.checkpoint import PodiumCheckpoint, last_good_checkpoint, load_checkpoint
from podium.engine.metrics_log import MetricsTable
from podium.engine.trainer import DataModule, TrainerConfig, build_trainer
from podium.recipe import Ref, StageConfig
from podium.stages import CHECKPOINT_KINDS, register_stage


class TrainConfig(StageConfig):
    kind: Literal["train"] = "train"
    trainer: TrainerConfig = TrainerConfig()
    init: str | None = None
    init_state: Literal["weights", "full"] = "weights"

    def references(self):
        return [("init", self.init, CHECKPOINT_KINDS)] if self.init else []


def _format_row(row: dict) -> str:
    vals = "  ".join(f"{k}={v:.4f}" for k, v in row.items() if k not in ("epoch", "step"))
    return f"epoch {row['epoch']}: {vals}"


@register_stage("train", TrainConfig)
def run(ctx) -> dict:
    cfg, task = ctx.cfg, ctx.task
    L.seed_everything(ctx.seed, workers=True, verbose=False)
    module = task.module(cfg)
    train_ds, val_ds = task.datasets(cfg, ctx.data_root, ctx.seed)
    table = MetricsTable(ctx.run.path / "logs" / "metrics.csv")

    ckpt_path = None
    resume = last_good_checkpoint(ctx.run, ctx.warn)
    if resume is not None:
        ckpt_path = ctx.run.path / resume["file"]
        table.truncate(after_epoch=resume["epoch"])
        ctx.info(f"resuming from {resume['file']} (epoch {resume['epoch']} of {cfg.trainer.max_epochs})")
    else:
        table.truncate(after_epoch=0)
        if cfg.init:
            init_path, _ = ctx.checkpoint(Ref.parse(cfg.init, f"stages.{ctx.name}.init"))
            if cfg.init_state == "full":
                ckpt_path = init_path
            else:
                module.load_state_dict(load_checkpoint(init_path)["state_dict"])
            ctx.info(f"initialised from {cfg.init} ({cfg.init_state})")

    monitor = cfg.trainer.monitor or task.monitor
    mode = cfg.trainer.mode or task.monitor_mode
    callback = PodiumCheckpoint(ctx.run, monitor, mode, cfg.trainer.save_every_n_epochs,
                                cfg.trainer.keep_last, table, on_epoch=lambda r: ctx.info(_format_row(r)))
    trainer = build_trainer(cfg.trainer, callback, ctx.run.path)
    trainer.fit(module, datamodule=DataModule(train_ds, val_ds, cfg.trainer, ctx.seed), ckpt_path=ckpt_path)

    best = ctx.run.read_manifest().get("checkpoints", {}).get("best", {})
    last = table.rows[-1] if table.rows else {}
    return {f"best_{monitor}": best.get("score"), "best_epoch": best.get("epoch"),
            **{k: v for k, v in last.items() if k != "step"}}
