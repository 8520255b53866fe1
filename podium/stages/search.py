"""``search``: an Optuna study over a train config's parameters.

Storage is SQLite in the run store (``runs/<recipe>/<stage>/optuna.db``) or any database URL, so many
machines can share one study. The study's name covers the trial config and the search space but not
``n_trials``: raising ``n_trials`` continues the study, and a killed run resumes it (its unfinished
trials are marked failed). The best parameters land in the manifest; a train stage applies them with
``params_from: <this stage>``.
"""

from __future__ import annotations

from typing import Any, Literal

import optuna
from lightning.pytorch.callbacks import Callback
from pydantic import Field, field_validator, model_validator

from podium.engine.seeding import derive_seed
from podium.recipe import StageConfig, Strict, stage_model, validate
from podium.stages import register_stage
from podium.stages.train import fit, with_params
from podium.store import StageRun, content_hash, write_json


class Param(Strict):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Param:
        if self.type == "categorical" and not self.choices:
            raise ValueError("a categorical parameter needs choices: [...]")
        if self.type != "categorical" and (self.low is None or self.high is None or self.low > self.high):
            raise ValueError(f"a {self.type} parameter needs low <= high")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class SearchConfig(StageConfig):
    kind: Literal["search"] = "search"
    trial: dict[str, Any]
    space: dict[str, Param]
    n_trials: int = Field(10, ge=1)
    direction: Literal["maximize", "minimize"] | None = None
    storage: str | None = None
    pruner: Literal["median", "none"] = "median"

    @field_validator("trial")
    @classmethod
    def _self_contained(cls, trial: dict[str, Any]) -> dict[str, Any]:
        """A trial trains from scratch on the recipe's data: references to other stages have no effect."""
        for key in ("init", "params_from", "members"):
            if trial.get(key) is not None:
                raise ValueError(f"{key} is not supported in a search trial (found {trial[key]!r}); "
                                 "trials train from scratch")
        return trial

    def nested(self) -> list[tuple[str, str, dict]]:
        return [("trial", "train", self.trial)]


class OptunaPruning(Callback):
    """Reports each validation to the trial and stops it when the pruner says so."""

    def __init__(self, trial: optuna.Trial, monitor: str):
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.trial.report(float(trainer.callback_metrics[self.monitor]), step=trainer.global_step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {trainer.global_step}")


def _study(ctx, cfg: SearchConfig) -> optuna.Study:
    identity = content_hash({"trial": cfg.trial, "space": {k: v.model_dump() for k, v in cfg.space.items()},
                             "seed": ctx.seed})
    storage = cfg.storage or f"sqlite:///{(ctx.run.path.parent / 'optuna.db').resolve()}"
    direction = cfg.direction or ("maximize" if ctx.task.monitor_mode == "max" else "minimize")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2) if cfg.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=f"{ctx.recipe.name}.{ctx.name}.{identity}", storage=storage,
                                direction=direction, load_if_exists=True, pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=derive_seed(ctx.seed, "search")))
    if cfg.storage is None:
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return study


@register_stage("search", SearchConfig)
def run(ctx) -> dict:
    cfg: SearchConfig = ctx.cfg
    base = validate(stage_model("train", ctx.node.task, ctx.name),
                    {**cfg.trial, "kind": "train", "task": ctx.node.task}, f"stages.{ctx.name}.trial")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(ctx, cfg)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial: optuna.Trial) -> float:
        params = {name: p.suggest(trial, name) for name, p in cfg.space.items()}
        trial_cfg = with_params(base, params, f"stages.{ctx.name}.space")
        monitor = trial_cfg.trainer.monitor or ctx.task.monitor
        run = StageRun(ctx.run.path / "trials" / f"{trial.number:04d}")
        ctx.info(f"trial {trial.number}: {params}")
        metrics = fit(trial_cfg, ctx.task, run, derive_seed(ctx.seed, "trial", trial.number), ctx.data_root,
                      ctx.info, ctx.warn, callbacks=[OptunaPruning(trial, monitor)])
        return metrics[f"best_{monitor}"]

    remaining = cfg.n_trials - len(study.get_trials(deepcopy=False, states=finished))
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=())
    trials = study.get_trials(deepcopy=False, states=finished)
    ctx.run.update_manifest(best_params=study.best_params, best_value=study.best_value,
                            study=study.study_name, trials=len(trials))
    path = write_json(ctx.run.path / "best.json", {"params": study.best_params, "value": study.best_value,
                                                    "trials": [{"number": t.number, "state": t.state.name,
                                                                "value": t.value, "params": t.params}
                                                               for t in trials]})
    ctx.run.record_outputs([path])
    ctx.info(f"best of {len(trials)} trials: {study.best_value:.4f} with {study.best_params}")
    return {"best_value": study.best_value, "trials": len(trials)}
