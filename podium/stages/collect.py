"""``collect``: one model from a router and experts, written as one checkpoint ``predict`` uses like any.

``experts`` lists checkpoint references (a sweep without ``[i]`` brings all its members); each may pick
its epoch by score instead, ``select: {epochs: [31, 32, 33, 34, 35], by: leaderboard}``, which scores
every candidate with the task's ``expert_score`` on that split (the leaderboard, as team sMaRtIfy chose
their Hacker experts, looks at labels the final ranking also uses: say so when you report it). The task
assembles the module (``Task.collect``); every part's checkpoint is verified by its checksum first.

    collect:
      kind: collect
      router: router@best
      experts:
        - {model: hacker_experts, select: {epochs: [1, 2, 3, 4, 5], by: leaderboard}}
        - helper_experts@last
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from rich.table import Table

from podium.engine.checkpoint import load_checkpoint, record_checkpoint, select_checkpoint
from podium.ensemble.experts import save_collected, select_epoch
from podium.errors import ConfigError
from podium.recipe import Ref, StageConfig, Strict, validate
from podium.registry import get_task, register_stage
from podium.stages.predict import load_model
from podium.store import sha256_file


class SelectConfig(Strict):
    epochs: list[int] = Field(min_length=1)
    by: str = "val"  # the split the task scores each candidate on

    @field_validator("epochs")
    @classmethod
    def _positive(cls, epochs: list[int]) -> list[int]:
        if min(epochs) < 1 or len(set(epochs)) != len(epochs):
            raise ValueError(f"distinct epochs >= 1, got {epochs}")
        return epochs


class ExpertEntry(Strict):
    model: str
    select: SelectConfig | None = None


class CollectConfig(StageConfig):
    kind: Literal["collect"] = "collect"
    router: str | None = None
    experts: list[str | ExpertEntry] = Field(min_length=1)

    def entries(self) -> list[ExpertEntry]:
        return [ExpertEntry(model=e) if isinstance(e, str) else e for e in self.experts]

    def references(self):
        refs = [("router", self.router, ("train",))] if self.router else []
        return refs + [(f"experts[{i}]", e.model, ("train",)) for i, e in enumerate(self.entries())]


def _loaded(ctx, stage: str, cfg, path):
    return load_model(get_task(ctx.recipe.stages[stage].task), cfg, load_checkpoint(path)["state_dict"])


def _select(ctx, stage: str, run, cfg, select: SelectConfig) -> tuple[int, dict[int, float]]:
    """The best of ``select.epochs`` of one expert by the task's score on ``select.by``."""
    def score(epoch: int) -> float:
        model = _loaded(ctx, stage, cfg, select_checkpoint(run, "epoch", epoch))
        return ctx.task.expert_score(model, cfg, ctx.data_root, select.by)

    return select_epoch(select.epochs, score)


def _selection_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="expert selection")
    for col in ("expert", "epoch", "score", "chosen"):
        table.add_column(col, justify="right")
    for r in rows:
        for epoch, score in r["scores"].items():
            table.add_row(r["expert"], str(epoch), f"{score:.4f}", "yes" if epoch == r["epoch"] else "")
    return table


@register_stage("collect", CollectConfig)
def run(ctx) -> dict:
    where = f"stages.{ctx.name}"
    experts, parts, selections = [], [], []
    for i, entry in enumerate(ctx.cfg.entries()):
        ref = Ref.parse(entry.model, f"{where}.experts[{i}].model")
        if entry.select and "@" in entry.model:
            raise ConfigError(f"{where}.experts[{i}].model: {entry.model!r} names a checkpoint but select "
                              f"chooses among epochs {entry.select.epochs}: give the stage alone")
        members = [ref.member] if ref.member is not None else list(range(len(ctx.upstream[ref.stage])))
        for m in members:
            run = ctx.upstream[ref.stage][m]
            cfg = ctx.trained_config(run)
            label = f"{ref.stage}[{m}]"
            if entry.select is None:
                path = select_checkpoint(run, ref.select, ref.epoch)
            else:
                epoch, scores = _select(ctx, ref.stage, run, cfg, entry.select)
                selections.append({"expert": label, "epoch": epoch, "scores": scores, "by": entry.select.by})
                path = select_checkpoint(run, "epoch", epoch)
            experts.append((_loaded(ctx, ref.stage, cfg, path), cfg))
            parts.append({"stage": ref.stage, "member": m, "file": path.relative_to(run.path).as_posix(),
                          "sha256": sha256_file(path), "config": cfg.model_dump(mode="json")})
    router, router_part = None, None
    if ctx.cfg.router:
        ref = Ref.parse(ctx.cfg.router, f"{where}.router")
        path, cfg = ctx.checkpoint(ref)
        router = _loaded(ctx, ref.stage, cfg, path)
        router_part = {"stage": ref.stage, "member": ref.member, "file": path.name, "sha256": sha256_file(path),
                       "config": cfg.model_dump(mode="json")}
    module = ctx.task.collect(router, experts)
    spec = {"task": ctx.node.task, "router": router_part, "experts": parts}
    out = save_collected(ctx.run.path / "checkpoints" / "collected.ckpt", module, spec)
    record_checkpoint(ctx.run, ["best", "last"], out)
    first = parts[0]
    ctx.run.update_manifest(model_stage=first["stage"], model_config=first["config"], selection=selections,
                            parts=[{k: p[k] for k in ("stage", "member", "file", "sha256")} for p in parts])
    if selections:
        ctx.console.print(_selection_table(selections))
    size = sum(p.numel() for p in module.parameters())
    ctx.info(f"{len(experts)} experts{' and a router' if router is not None else ''} collected: "
             f"{size / 1e6:.2f} M parameters")
    return {"experts": len(experts), "parameters": size,
            **{f"epoch_{s['expert']}": s["epoch"] for s in selections}}


def assemble(ctx, spec: dict[str, Any]):
    """The collected module with fresh weights, from its checkpoint's ``collected`` spec (then loaded)."""
    def part(entry: dict[str, Any]):
        node = ctx.recipe.stages[entry["stage"]]
        cfg = validate(type(node.config), entry["config"], f"collected part {entry['stage']}")
        return get_task(node.task).module(cfg).model, cfg

    router = part(spec["router"])[0] if spec["router"] else None
    return get_task(spec["task"]).collect(router, [part(e) for e in spec["experts"]])
