"""``synth``: write the task's synthetic data set in the competition's real on-disk layout.

With ``data.root`` set in the recipe the stage writes nothing: it checks the real data instead, and
its hash covers the real files' names and sizes, so new data re-runs everything downstream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from podium.recipe import StageConfig
from podium.registry import register_stage


class SynthConfig(StageConfig):
    kind: Literal["synth"] = "synth"


@register_stage("synth", SynthConfig, uses_data=False)
def run(ctx) -> dict:
    if ctx.recipe.data_root is not None:
        root = Path(ctx.recipe.data_root)
        files = ctx.task.check_data(root)
        ctx.info(f"using real data at {root} ({len(files)} files checked)")
        return {"files": len(files)}
    out = ctx.run.path / "data"
    files = ctx.task.synth(ctx.cfg, out, ctx.seed)
    ctx.run.record_outputs(files)
    ctx.info(f"synthetic data in {out}")
    return {"files": len(files)}
