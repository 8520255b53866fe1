"""``soup``: uniform or greedy weight averaging of a sweep's members (Wortsman et al. 2022).

Members are streamed from disk one at a time (``podium.ensemble.soup``), ranked and grown by the task's
held-out score, and the result is a checkpoint like any train stage's: ``model: my_soup@best`` works.
"""

from __future__ import annotations

from typing import Literal

import torch
from rich.table import Table

from podium.engine.checkpoint import load_checkpoint, record_checkpoint, select_checkpoint
from podium.ensemble.soup import greedy_soup, uniform_soup
from podium.errors import ConfigError
from podium.recipe import Ref, StageConfig
from podium.registry import register_stage
from podium.store import atomic_path


class SoupConfig(StageConfig):
    kind: Literal["soup"] = "soup"
    members: str
    method: Literal["uniform", "greedy"] = "greedy"
    strict: bool = True

    def references(self):
        return [("members", self.members, ("train",))]


def _path_table(steps) -> Table:
    table = Table(title="greedy soup")
    for col in ("step", "member", "member score", "candidate score", "joined", "soup score"):
        table.add_column(col, justify="right")
    for i, s in enumerate(steps):
        table.add_row(str(i), str(s.member), f"{s.score:.4f}", f"{s.candidate_score:.4f}",
                      "yes" if s.accepted else "no", f"{s.soup_score:.4f}")
    return table


@register_stage("soup", SoupConfig)
def run(ctx) -> dict:
    ref = Ref.parse(ctx.cfg.members, f"stages.{ctx.name}.members")
    runs = ctx.upstream[ref.stage]
    configs = [ctx.trained_config(r) for r in runs]
    if len({c.model_dump_json(include={"model"}) for c in configs}) > 1:
        raise ConfigError(f"stages.{ctx.name}.members: the members of {ref.stage!r} differ in model: "
                          "a soup averages weights of one architecture")
    train_cfg = configs[0]
    paths = [select_checkpoint(r, ref.select, ref.epoch) for r in runs]
    task = ctx.task
    module = task.module(train_cfg)  # built once: a greedy soup of N members scores about 2N weight sets

    def load(path):
        return load_checkpoint(path)["state_dict"]

    def evaluate(state_dict) -> float:
        module.load_state_dict(state_dict)
        return task.heldout_score(module.model.eval(), train_cfg, ctx.data_root)

    metrics: dict = {"members": len(paths)}
    if ctx.cfg.method == "uniform":
        soup = uniform_soup(paths, load)
        metrics["heldout_score"] = evaluate(soup)
        metrics["ingredients"] = len(paths)
    else:
        result = greedy_soup(paths, load, evaluate, strict=ctx.cfg.strict)
        soup = result.state_dict
        metrics.update(heldout_score=result.score, ingredients=len(result.ingredients))
        ctx.run.update_manifest(greedy_path=[vars(s) for s in result.steps], ingredients=result.ingredients)
        ctx.console.print(_path_table(result.steps))
    out = ctx.run.path / "checkpoints" / "soup.ckpt"
    with atomic_path(out) as tmp:
        torch.save({"state_dict": soup}, tmp)
    record_checkpoint(ctx.run, ["best", "last"], out, score=metrics["heldout_score"])
    ctx.run.update_manifest(model_stage=ref.stage, model_config=train_cfg.model_dump(mode="json"))
    ctx.info(f"{ctx.cfg.method} soup of {metrics['ingredients']}/{len(paths)} members: "
             f"held-out {metrics['heldout_score']:.4f}")
    return metrics
