"""``ensemble``: combine several predict (or ensemble) stages' per-item arrays.

Methods: ``weighted_mean`` of probabilities or logits (weights from the recipe), ``soft_vote``
(mean softmax), ``soft_vote_minmax`` (per-item min-max scaled logits, summed), ``hard_vote`` (row-wise
mode of each input's argmax) and ``split_vote`` (18-class mask task: mask / gender / age voted apart).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from podium.ensemble import vote
from podium.ensemble.predictions import Predictions, load_predictions, save_predictions
from podium.errors import ConfigError
from podium.recipe import StageConfig
from podium.registry import register_stage

PREDICTION_KINDS = ("predict", "ensemble", "regress")  # stages that write predictions.npz


class EnsembleConfig(StageConfig):
    kind: Literal["ensemble"] = "ensemble"
    method: Literal["weighted_mean", "soft_vote", "soft_vote_minmax", "hard_vote", "split_vote"] = "weighted_mean"
    inputs: dict[str, float] | list[str]

    def weights(self) -> dict[str, float]:
        return self.inputs if isinstance(self.inputs, dict) else dict.fromkeys(self.inputs, 1.0)

    def references(self):
        return [(f"inputs.{name}", name, PREDICTION_KINDS) for name in self.weights()]


def combine(method: str, preds: list[Predictions], weights: list[float]) -> tuple[np.ndarray, str]:
    """The combined scores and what they are (probs / logits / classes)."""
    scores = [p.scores for p in preds]
    if method == "weighted_mean":
        return vote.weighted_mean(scores, weights).astype(np.float32), preds[0].kind
    if method in ("soft_vote", "soft_vote_minmax"):
        return vote.soft_vote(scores, "minmax" if method.endswith("minmax") else "softmax"), "probs"
    classes = [s if p.kind == "classes" else np.argmax(s, axis=-1) for s, p in zip(scores, preds, strict=True)]
    if method == "split_vote":
        return vote.split_vote(classes), "classes"
    return vote.hard_vote(classes, num_classes=preds[0].scores.shape[-1]), "classes"


@register_stage("ensemble", EnsembleConfig)
def run(ctx) -> dict:
    weights = ctx.cfg.weights()
    preds = [load_predictions(ctx.upstream_run(name).output("predictions.npz")) for name in weights]
    first = preds[0]
    for name, p in zip(weights, preds, strict=True):
        if p.kind == "captions":
            raise ConfigError(f"stages.{ctx.name}.inputs.{name}: holds captions, which are not averaged; ensemble "
                              "caption models inside their predict stage (its task's models: list)")
        if p.split != first.split or not np.array_equal(p.ids, first.ids):
            raise ConfigError(f"stages.{ctx.name}.inputs.{name}: predicts split {p.split!r} with "
                              f"{len(p.ids)} items; expected the same items as {next(iter(weights))!r} "
                              f"({first.split!r}, {len(first.ids)} items)")
        if ctx.cfg.method == "weighted_mean" and p.kind != first.kind:
            raise ConfigError(f"stages.{ctx.name}.inputs.{name}: holds {p.kind}; weighted_mean needs every "
                              f"input to hold {first.kind}")
    scores, kind = combine(ctx.cfg.method, preds, list(weights.values()))
    out = Predictions(first.ids, scores, kind, first.split)
    files = [save_predictions(ctx.run.path / "predictions.npz", out),
             *ctx.task.write_predictions(out, ctx.cfg, ctx.run.path)]
    ctx.run.record_outputs(files)
    ctx.info(f"{ctx.cfg.method} of {', '.join(f'{n} x{w:g}' for n, w in weights.items())}")
    return {"items": len(out.ids), "split": out.split}
