"""``regress``: a regressor on an extract stage's pooled features, chosen on the validation split by the
task's leaderboard metric, predicting a split as ``Predictions`` of kind ``values``.

The seed team's MOS recipe: frozen pooled features of several backbones, one regressor per feature set,
predictions averaged. In podium each feature set is one ``regress`` stage and an ``ensemble`` stage
(``weighted_mean``) averages them, so ``evaluate`` lists every set next to the average. The candidates
(``engine.regressors``: scikit-learn ridge, SVR, kernel ridge over ``models:``) are fitted on the task's
training items and scored on its validation items; ``selection.json`` keeps every candidate's score.
The stage writes what ``predict`` writes (podium's npz and the task's format), so ensembles, evaluate
and submit take it like a predict stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from podium.engine.feature_store import STORE, read_features
from podium.engine.regressors import DEFAULT_GRID, check_grid, select
from podium.ensemble.predictions import Predictions, save_predictions
from podium.errors import ConfigError
from podium.recipe import Ref, StageConfig
from podium.registry import register_stage
from podium.store import write_json


class RegressConfig(StageConfig):
    kind: Literal["regress"] = "regress"
    features: str  # an extract stage with pooled features (pool: mean or head)
    split: str = "test"  # the split to predict (the task's names)
    val_fraction: float = Field(0.1, gt=0, lt=1)  # of the labelled items, to choose the candidate on
    models: dict[str, dict[str, list[Any]]] = DEFAULT_GRID  # regressor -> parameter -> values to try

    @field_validator("models")
    @classmethod
    def _known(cls, grid: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, list[Any]]]:
        check_grid(grid)
        return grid

    def references(self):
        return [("features", self.features, ("extract",))]


@dataclass(frozen=True)
class RegressionData:
    """What a task gives a regress stage: labelled items split in two, and the items to predict."""

    train: dict[str, float]  # item id -> target, to fit on
    val: dict[str, float]  # item id -> target, to choose the candidate on
    predict: list[str]  # item ids to predict, in the predictions' order
    split: str  # the name of what is predicted


def _features(path, ids: list[str], stage: str, where: str) -> np.ndarray:
    x = read_features(path, ids)
    if x.ndim != 2:
        raise ConfigError(f"{where}: stage {stage!r} stores tokens {x.shape[1:]} per image; a regressor needs one "
                          "vector per image (set its pool: mean or head)")
    return x.astype(np.float64)


@register_stage("regress", RegressConfig)
def run(ctx) -> dict:
    cfg = ctx.cfg
    data = ctx.task.regression_data(cfg, ctx.data_root, ctx.seed)
    where = f"stages.{ctx.name}.features"
    ref = Ref.parse(cfg.features, where)
    store = ctx.upstream_run(ref.stage, ref.member).output(STORE)

    def labelled(items: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        return _features(store, list(items), ref.stage, where), np.array(list(items.values()), np.float64)

    model, best, trials = select(labelled(data.train), labelled(data.val), cfg.models, ctx.task.regression_score)
    values = model.predict(_features(store, data.predict, ref.stage, where)).astype(np.float32)
    preds = Predictions(np.array(data.predict), values, "values", data.split)
    selection = write_json(ctx.run.path / "selection.json",
                           {"chosen": best.label, "val_items": len(data.val), "train_items": len(data.train),
                            "trials": [{"model": t.label, "val_score": t.score} for t in trials]})
    files = [save_predictions(ctx.run.path / "predictions.npz", preds), selection,
             *ctx.task.write_predictions(preds, cfg, ctx.run.path)]
    ctx.run.record_outputs(files)
    ctx.info(f"{best.label} chosen on {len(data.val)} validation items (score {best.score:.4f}); "
             f"{len(values)} {data.split} items predicted")
    return {"val_score": best.score, "model": best.label, "items": len(values), "split": data.split}
