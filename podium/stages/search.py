"""``search``: an Optuna study over a train config's parameters.

Storage is SQLite in the run store (``runs/<recipe>/<stage>/optuna.db``) or any database URL, so many
machines can share one study. The study's name covers the trial config and the search space but not
``n_trials``: raising ``n_trials`` continues the study, and a killed run resumes it (its unfinished
trials are marked failed). The best parameters land in the manifest; a train stage applies them with
``params_from: <this stage>``.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from typing import Any, Literal

import optuna
from lightning.pytorch.callbacks import Callback
from optuna.trial import TrialState
from pydantic import Field, field_validator, model_validator

from podium.engine.distributed import SINGLE, stage_processes
from podium.engine.seeding import derive_seed
from podium.recipe import StageConfig, Strict, stage_model, validate
from podium.registry import register_stage
from podium.stages.train import fit, with_params
from podium.store import StageRun, content_hash, write_json

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_S = 30  # a database storage's heartbeat; a trial silent for 3 beats is failed
POLL_S = 2.0  # how often a process that has nothing to run checks the others' trials


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

    def example(self) -> Any:
        """A value the space can take, to check at load time that the trial config accepts it."""
        if self.type == "categorical":
            return self.choices[0]
        return int(self.low) if self.type == "int" else self.low

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
    storage: str | None = None  # None: SQLite in the run store; "journal": a journal file there; or a URL
    pruner: Literal["median", "none"] = "median"

    unhashed = ("storage",)  # where the study lives does not change it

    @field_validator("trial")
    @classmethod
    def _self_contained(cls, trial: dict[str, Any]) -> dict[str, Any]:
        """A trial trains from scratch on the recipe's data: references to other stages have no effect."""
        for key in ("init", "params_from", "members"):
            if trial.get(key) is not None:
                raise ValueError(f"{key} is not supported in a search trial (found {trial[key]!r}); "
                                 "trials train from scratch")
        trainer = trial.get("trainer") or {}
        if stage_processes(trainer.get("devices", 1), trainer.get("num_nodes", 1), SINGLE) != 1:
            raise ValueError("a trial trains in one process (found trainer.devices="
                             f"{trainer.get('devices', 1)!r}, num_nodes={trainer.get('num_nodes', 1)!r}); "
                             "to use more devices, run the search stage in several processes at once")
        return trial

    def nested(self) -> list[tuple[str, str, dict]]:
        """The trial as a train config, and the trial with a value of every parameter of the space put in
        (its problems are reported under ``space.<parameter>``)."""
        from omegaconf import OmegaConf

        sample = OmegaConf.create(self.trial)
        for name, param in self.space.items():
            OmegaConf.update(sample, name, param.example(), merge=True, force_add=True)
        return [("trial", "train", self.trial), ("space", "train", OmegaConf.to_container(sample))]


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


def _storage(ctx, cfg: SearchConfig):
    """SQLite in the run store by default; Optuna's journal file for a store on a network file system
    (SQLite's locking is unreliable there); any database URL for machines that share no file system.
    Database storages keep a heartbeat, so a trial whose process died on another machine is failed."""
    if cfg.storage == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = (ctx.run.path.parent / "optuna.journal").resolve()
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    url = cfg.storage or f"sqlite:///{(ctx.run.path.parent / 'optuna.db').resolve()}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S)


def _study(ctx, cfg: SearchConfig) -> optuna.Study:
    """The stage's study, shared by every process that runs the stage. Each process samples with its own
    seed (its attempt number), so concurrent processes do not propose the same parameters."""
    identity = content_hash({"trial": cfg.trial, "space": {k: v.model_dump() for k, v in cfg.space.items()},
                             "seed": ctx.seed})
    direction = cfg.direction or ("maximize" if ctx.task.monitor_mode == "max" else "minimize")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2) if cfg.pruner == "median" else optuna.pruners.NopPruner()
    return optuna.create_study(study_name=f"{ctx.recipe.name}.{ctx.name}.{identity}", storage=_storage(ctx, cfg),
                               direction=direction, load_if_exists=True, pruner=pruner,
                               sampler=optuna.samplers.TPESampler(seed=derive_seed(ctx.seed, "search", ctx.attempt)))


def _fail_dead_trials(study: optuna.Study) -> None:
    """Trials left RUNNING by a process that died: on this machine its pid is gone; elsewhere the
    database storage's heartbeat expires."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner")  # unset for a moment after the trial is created: not yet known
        if owner and owner[0] == host and not _alive(owner[1]):
            study.tell(t.number, state=TrialState.FAIL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Surplus(Exception):
    """A trial started when the study already had ``n_trials`` others under way or finished."""


@register_stage("search", SearchConfig, shared=True)
def run(ctx) -> dict:
    """Trials until the study has ``n_trials`` finished ones, shared with any other process running this
    stage: a trial runs only if fewer than ``n_trials`` trials numbered before it are running or
    finished, so the total is never exceeded and no trial number is run twice."""
    cfg: SearchConfig = ctx.cfg
    base = validate(stage_model("train", ctx.node.task, ctx.name),
                    {**cfg.trial, "kind": "train", "task": ctx.node.task}, f"stages.{ctx.name}.trial")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with ctx.run.lock():  # two processes creating one SQLite schema at once collide
        study = _study(ctx, cfg)
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("owner", [socket.gethostname(), os.getpid()])  # one write: never half-known
        ahead = [t for t in study.get_trials(deepcopy=False, states=counted) if t.number < trial.number]
        if len(ahead) >= cfg.n_trials:
            raise _Surplus(f"trial {trial.number}: the study already has {cfg.n_trials} trials")
        params = {name: p.suggest(trial, name) for name, p in cfg.space.items()}
        trial_cfg = with_params(base, params, f"stages.{ctx.name}.space")
        monitor = trial_cfg.trainer.monitor or ctx.task.monitor
        run = StageRun(ctx.run.path / "trials" / f"{trial.number:04d}")
        ctx.info(f"trial {trial.number}: {params}")
        metrics = fit(trial_cfg, ctx.task, run, derive_seed(ctx.seed, "trial", trial.number), ctx.data_root,
                      ctx.info, ctx.warn, callbacks=[OptunaPruning(trial, monitor)])
        return metrics[f"best_{monitor}"]

    waiting = False
    while True:
        _fail_dead_trials(study)
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if finished >= cfg.n_trials:
            break
        if finished + running < cfg.n_trials:
            study.optimize(objective, n_trials=1, catch=(_Surplus,))
            continue
        if not waiting:
            ctx.info(f"waiting for {running} trial(s) running in other processes")
            waiting = True
        time.sleep(POLL_S)
    with ctx.run.lock():  # several processes may reach this point; the first one writes the result
        return _record_best(ctx, study)


def _record_best(ctx, study: optuna.Study) -> dict:
    trials = sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)
    ctx.run.update_manifest(best_params=study.best_params, best_value=study.best_value,
                            study=study.study_name, trials=len(trials))
    path = write_json(ctx.run.path / "best.json", {"params": study.best_params, "value": study.best_value,
                                                    "trials": [{"number": t.number, "state": t.state.name,
                                                                "value": t.value, "params": t.params}
                                                               for t in trials]})
    ctx.run.record_outputs([path])
    ctx.info(f"best of {len(trials)} trials: {study.best_value:.4f} with {study.best_params}")
    return {"best_value": study.best_value, "trials": len(trials)}
