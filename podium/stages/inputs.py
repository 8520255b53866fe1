"""The stages a train or predict config reads beyond its kind's own references, resolved for its task.

A task's config may name more stages than the kind knows of (an IQA caption stage: the extract stage
whose features it trains on, the stage its backbone comes from, the checkpoints it ensembles); they are
references like any other, so the recipe orders and hashes them, and the task's ``bind`` receives what
they name here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from podium.recipe import Ref
from podium.registry import CHECKPOINT_KINDS


def bound_config(ctx: Any, cfg: Any, handled: Sequence[str]) -> Any:
    """``cfg`` bound by the task to the files its other references name (a checkpoint kind's verified
    checkpoint, any other stage's run) and to the data root; ``handled`` are the fields the kind resolves."""
    inputs: dict[str, Any] = {}
    for field, text, _ in cfg.references():
        if field in handled:
            continue
        ref = Ref.parse(text, f"stages.{ctx.name}.{field}")
        if ctx.recipe.stages[ref.stage].kind in CHECKPOINT_KINDS:
            inputs[field] = ctx.checkpoint(ref)[0]
        else:
            inputs[field] = ctx.upstream_run(ref.stage, ref.member)
    return ctx.task.bind(cfg, ctx.data_root, ctx.seed, inputs)
