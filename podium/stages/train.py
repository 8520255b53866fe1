"""``train``: fit a task's model with Lightning; resume exactly from the last good checkpoint.

``params_from: a_search_stage`` applies that Optuna study's best parameters.
``init: other@epoch=N`` warm-starts from another stage's checkpoint: its weights, or with
``init_state: full`` also its optimiser, scheduler and loop state (training continues from epoch N up
to this stage's ``max_epochs``); ``other[i]@...`` names a member of a sweep, and a sweep initialised
from a sweep of as many members pairs them up. ``members:`` (handled by the recipe) turns one stage
into a sweep. A task's train config may reference more stages (the IQA captioner's features and
backbone): the task binds them before the module is built (``stages.inputs``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import lightning as L

from podium.engine.checkpoint import PodiumCheckpoint, last_good_checkpoint, load_checkpoint
from podium.engine.distributed import SINGLE, World
from podium.engine.metrics_log import MetricsTable
from podium.engine.threads import torch_threads
from podium.engine.trainer import TRAINER_UNHASHED, DataModule, TrainerConfig, build_trainer
from podium.errors import ConfigError
from podium.recipe import Ref, StageConfig, validate
from podium.registry import CHECKPOINT_KINDS, register_stage
from podium.stages.inputs import bound_config
from podium.store import StageRun


class TrainConfig(StageConfig):
    kind: Literal["train"] = "train"
    trainer: TrainerConfig = TrainerConfig()
    init: str | None = None
    init_state: Literal["weights", "full"] = "weights"
    params_from: str | None = None

    unhashed = TRAINER_UNHASHED

    def references(self):
        refs = [("init", self.init, CHECKPOINT_KINDS)] if self.init else []
        return refs + ([("params_from", self.params_from, ("search",))] if self.params_from else [])


def _format_row(row: dict) -> str:
    vals = "  ".join(f"{k}={v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{k}={v:.2e}"
                     for k, v in row.items() if k not in ("epoch", "step"))
    return f"epoch {row['epoch']}: {vals}"


def fit(cfg: TrainConfig, task, run: StageRun, seed: int, data_root, info, warn,
        init: tuple | None = None, callbacks: Sequence = (), world: World = SINGLE) -> dict:
    """Train ``cfg`` into ``run``'s directory, resuming from its newest good checkpoint if it has one.

    ``init`` is ``(checkpoint path, "weights" | "full")`` for a warm start; ``callbacks`` are extra
    Lightning callbacks (the search stage's pruning); ``world`` the launched processes, which a stage
    over all of them trains on with DDP. Returns the stage metrics.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    module = task.module(cfg)
    size = sum(p.numel() for p in module.parameters())
    info(f"{type(getattr(module, 'model', module)).__name__}: {size / 1e6:.2f} M parameters ({size:,})")
    train_ds, val_ds = task.datasets(cfg, data_root, seed)
    table = MetricsTable(run.path / "logs" / "metrics.csv", writer=run.writer)

    ckpt_path = None
    resume = last_good_checkpoint(run, warn)
    if resume is not None:
        ckpt_path = run.path / resume["file"]
        table.truncate(after_epoch=resume["epoch"])
        info(f"resuming from {resume['file']} (epoch {resume['epoch']} of {cfg.trainer.max_epochs})")
    else:
        table.truncate(after_epoch=0)
        if init is not None:
            init_path, state = init
            if state == "full":
                ckpt_path = init_path
            else:
                module.load_state_dict(load_checkpoint(init_path)["state_dict"])

    monitor = cfg.trainer.monitor or task.monitor
    mode = cfg.trainer.mode or task.monitor_mode
    callback = PodiumCheckpoint(run, monitor, mode, cfg.trainer.save_every_n_epochs,
                                cfg.trainer.keep_last, table, on_epoch=lambda r: info(_format_row(r)))
    trainer = build_trainer(cfg.trainer, callback, run.path, world, extra_callbacks=callbacks,
                            validate=val_ds is not None)
    with torch_threads(cfg.trainer.threads):
        trainer.fit(module, datamodule=DataModule(train_ds, val_ds, cfg.trainer, seed), ckpt_path=ckpt_path)

    best = run.read_manifest().get("checkpoints", {}).get("best", {})
    last = table.rows[-1] if table.rows else {}
    return {f"best_{monitor}": best.get("score"), "best_epoch": best.get("epoch"),
            **{k: v for k, v in last.items() if k != "step"}}


def with_params(cfg: TrainConfig, params: dict, where: str) -> TrainConfig:
    """``cfg`` with dotted ``params`` (e.g. a search stage's best ``optim.lr``) applied and re-validated."""
    from omegaconf import OmegaConf

    data = OmegaConf.create(cfg.model_dump(mode="json"))
    for key, value in params.items():
        OmegaConf.update(data, key, value, merge=True, force_add=True)
    return validate(type(cfg), OmegaConf.to_container(data), where)


def _aligned(ref: Ref, ctx) -> Ref:
    """A sweep initialised from a sweep of as many members: member i starts from member i (experts
    fine-tuned further, each from its own checkpoint)."""
    if ref.member is not None or len(ctx.upstream[ref.stage]) == 1 or ctx.member is None:
        return ref
    if len(ctx.upstream[ref.stage]) != len(ctx.node.configs):
        raise ConfigError(f"stages.{ctx.name}.init: {ref.stage!r} has {len(ctx.upstream[ref.stage])} members and "
                          f"this stage {len(ctx.node.configs)}; name one as {ref.stage}[i]")
    return dataclasses.replace(ref, member=ctx.member)


@register_stage("train", TrainConfig)
def run(ctx) -> dict:
    cfg = ctx.cfg
    if cfg.params_from:
        best = ctx.upstream_run(cfg.params_from).read_manifest()["best_params"]
        cfg = with_params(cfg, best, f"stages.{ctx.name} (with {cfg.params_from}'s best parameters)")
        ctx.run.update_manifest(config=cfg.model_dump(mode="json"), params_applied=best)
        ctx.info(f"parameters from {cfg.params_from}: {best}")
    bound = bound_config(ctx, cfg, handled=("init", "params_from"))
    if bound.model_dump(mode="json") != cfg.model_dump(mode="json"):
        ctx.run.update_manifest(config=bound.model_dump(mode="json"))
    cfg = bound
    init = None
    if cfg.init:
        ref = _aligned(Ref.parse(cfg.init, f"stages.{ctx.name}.init"), ctx)
        init = (ctx.checkpoint(ref)[0], cfg.init_state)
        ctx.info(f"initialised from {ref} ({cfg.init_state})")
    return fit(cfg, ctx.task, ctx.run, ctx.seed, ctx.data_root, ctx.info, ctx.warn, init=init, world=ctx.world)
