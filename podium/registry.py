"""The registries of stage kinds and tasks: the ground floor the recipe loader and the runner look up.

Stage kinds (generic verbs: train, predict, ensemble, ...) and tasks (domain plugins: data formats,
models, metrics) register here by name, as timm registers models. This module imports no stage and no
task: the built-in ones register when ``podium.builtins`` is imported (every recipe loads it first, as a
plugin), a user's own through the recipe's ``plugins:`` list. Tasks import heavy libraries, so a
built-in task is only *declared* up front and its module is imported when a recipe first asks for it.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podium.errors import ConfigError

if TYPE_CHECKING:  # the report imports the registry, never the other way round
    from podium.report.items import ReportItem, RunView

# kinds whose stages leave model checkpoints that `model: stage@best` can point at
CHECKPOINT_KINDS = ("train", "soup", "collect")


@dataclass(frozen=True)
class StageKind:
    """A kind is a pydantic config class plus ``run(ctx) -> metrics``. Kinds never import a task's
    internals: they call the task plugin's documented methods (see :class:`Task`)."""

    name: str
    config: type
    run: Callable[[Any], dict[str, Any]]
    version: int
    uses_data: bool
    shared: bool  # several processes may run it at once (it coordinates them itself): no stage lock


_KINDS: dict[str, StageKind] = {}


def register_stage(name: str, config: type, version: int = 1, uses_data: bool = True, shared: bool = False):
    """Decorator for a kind's ``run(ctx)``; bump ``version`` when outputs change, to invalidate old runs."""

    def wrap(fn: Callable[[Any], dict[str, Any]]):
        _KINDS[name] = StageKind(name, config, fn, version, uses_data, shared)
        return fn

    return wrap


def stage_kinds() -> dict[str, StageKind]:
    return _KINDS


def stage_kind(name: str) -> StageKind:
    if name not in _KINDS:
        raise ConfigError(f"unknown stage kind {name!r} (kinds: {', '.join(sorted(_KINDS))})")
    return _KINDS[name]


class Task:
    """What a stage kind may ask of a task. Unimplemented methods say which stage needed them.

    A task subclasses this, overrides the methods its recipes use and registers an instance with
    ``@register_task``.
    """

    name: str = ""
    version: str = "1"
    # stage kind -> pydantic config class extending that kind's generic config with task sections
    configs: dict[str, type] = {}
    # metric the `train` stage selects the best checkpoint by, and whether higher is better
    monitor: str = "val_loss"
    monitor_mode: str = "min"

    def stage_config(self, kind: str) -> type | None:
        return self.configs.get(kind)

    def _missing(self, what: str):
        raise ConfigError(f"task {self.name!r} does not support {what}")

    def synth(self, cfg: Any, out_dir: Path, seed: int) -> None:
        """Write the synthetic data set in the competition's layout. It must be deterministic per file,
        and should write only the files that are missing: the runner repairs a damaged file by deleting
        it and calling ``synth`` again (a task that rewrites everything is correct, only slower)."""
        self._missing("synth stages")

    def check_data(self, root: Path) -> list[Path]:
        """Validate a real data root (clear errors for missing files); return every file of the data set
        (the synth stage records their sizes and checksums once, and the stage hash covers their names
        and sizes)."""
        self._missing("data.root")

    def datasets(self, cfg: Any, data_root: Path, seed: int) -> tuple[Any, Any]:
        """(train, validation) datasets; items are fetched with ``SampleKey(index, sample_seed, epoch)`` keys."""
        self._missing("train stages")

    def module(self, cfg: Any) -> Any:
        """The LightningModule for a train config; its pure nn.Module is ``.model``."""
        self._missing("train stages")

    def bind(self, cfg: Any, data_root: Path | None, seed: int, inputs: dict[str, Any]) -> Any:
        """A train or predict config made ready to run, before the stage builds anything from it.

        ``inputs`` holds what the config's own stage references name (those beyond the kind's ``init``,
        ``params_from`` and ``model``): a checkpoint kind's verified checkpoint file, any other stage's
        ``StageRun``. A task whose configs reference no extra stages and need nothing from the data
        returns ``cfg``; a bound train config whose fields changed is what the manifest records (so
        predict, soup and extract rebuild the same model from it)."""
        return cfg

    def predict(self, model: Any, train_cfg: Any, cfg: Any, data_root: Path, out_dir: Path) -> Any:
        """Run a model over a split; return ``Predictions`` (per-item arrays), or the list of files it
        wrote under ``out_dir`` when predictions are files (MRI reconstructions)."""
        self._missing("predict stages")

    def write_predictions(self, preds: Any, cfg: Any, out_dir: Path) -> list[Path]:
        """Write predictions in the competition's own format (besides podium's npz)."""
        return []

    def evaluate(self, preds: Any, data_root: Path, cfg: Any, out_dir: Path) -> dict[str, float]:
        """Score predictions (``Predictions``, or a predict stage's verified ``StageRun`` when its outputs
        are files) with the leaderboard's exact metric; the first key is the headline."""
        self._missing("evaluate stages")

    def leaderboard_notes(self, scores: dict[str, dict]) -> list[str]:
        """Lines an evaluate stage prints under its table: how the competition ranks teams from these scores."""
        return []

    def heldout_score(self, model: Any, train_cfg: Any, data_root: Path) -> float:
        """The leaderboard metric of a bare model on the held-out split (soups rank and grow by it)."""
        self._missing("soup stages")

    def submit(self, preds: Any, data_root: Path, cfg: Any, out_path: Path) -> Path:
        """Write the submission file."""
        self._missing("submit stages")

    def extract_items(self, cfg: Any, data_root: Path, split: str) -> tuple[list[str], Any]:
        """(item ids, dataset) of a split for an extract stage: the dataset's item ``i`` is the image of
        ``ids[i]`` as a ``(3, H, W)`` float tensor, preprocessed the task's way at ``cfg.image_size``. The
        ids name the feature store's datasets (``{id}_features``), so they are unique and never hold '/'."""
        self._missing("extract stages")

    def trained_backbone(self, model: Any, train_cfg: Any) -> Any:
        """The image backbone inside a trained model (an extract stage with ``model: stage@...``): a timm
        model whose ``forward_features`` gives the tokens the task's features are made of."""
        self._missing("extract stages with model:")

    def regression_data(self, cfg: Any, data_root: Path, seed: int) -> Any:
        """A regress stage's ``RegressionData``: the labelled items' targets split into train and
        validation the task's way (``cfg.val_fraction``, ``seed``), and the ids of ``cfg.split`` to predict."""
        self._missing("regress stages")

    def regression_score(self, predictions: Any, targets: Any) -> float:
        """The leaderboard metric of predicted values against targets, higher is better: a regress stage
        chooses its regressor by it."""
        self._missing("regress stages")

    def report_items(self, view: RunView) -> list[ReportItem]:
        """What this task's models produce, for the run report: image grids, bars, heatmaps, strip plots
        and the leaderboard's baseline (``podium.report.items``), from the finished stages of ``view``.
        Shared helpers draw them, so a task never plots; a task that shows nothing returns []."""
        return []

    def collect(self, router: Any, experts: list[tuple[Any, Any]]) -> Any:
        """One ``nn.Module`` from a router (or None) and ``(model, train config)`` experts; the experts'
        configs say which items each one serves (MRI: anatomy, acceleration, mask group)."""
        self._missing("collect stages")

    def expert_score(self, model: Any, train_cfg: Any, data_root: Path, split: str) -> float:
        """The leaderboard metric of one expert on the items of ``split`` it serves (a collect stage picks
        each expert's epoch by it)."""
        self._missing("expert selection (collect: select)")


class ModelRegistry:
    """A task's networks by name, as timm's registry: a recipe says ``model: {name: ..., ...}``.

    ``@models.register("name")`` goes on a class or factory in one of ``modules`` (submodules of
    ``package``), which are imported on the first lookup so that naming a model never imports them all.
    """

    def __init__(self, label: str, package: str, modules: tuple[str, ...]):
        self.label, self.package, self.modules = label, package, modules
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories:
                raise ValueError(f"{self.label} model {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        """Every registered name (the built-in modules imported first)."""
        for module in self.modules:
            importlib.import_module(f"{self.package}.{module}")
        return sorted(self._factories)

    def create(self, name: str, **kwargs: Any) -> Any:
        """The model registered as ``name``, built with ``kwargs``."""
        names = self.names()
        if name not in names:
            raise ConfigError(f"unknown {self.label} model {name!r} (models: {', '.join(names)})")
        return self._factories[name](**kwargs)


_TASKS: dict[str, Task] = {}
_DECLARED: dict[str, str] = {}  # task name -> module that registers it when imported


def register_task(cls: type[Task]) -> type[Task]:
    _TASKS[cls.name] = cls()
    return cls


def declare_task(name: str, module: str) -> None:
    """Name a task whose module is imported (and registers it) the first time a recipe asks for it."""
    _DECLARED[name] = module


def get_task(name: str, path: str = "task") -> Task:
    if name not in _TASKS and name in _DECLARED:
        try:
            importlib.import_module(_DECLARED[name])
        except ImportError as e:
            raise ConfigError(f"{path}: task {name!r} cannot be loaded ({e})") from None
    if name not in _TASKS:
        known = sorted({*_DECLARED, *_TASKS})
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{path}: unknown task {name!r}{hint} (tasks: {', '.join(known)})")
    return _TASKS[name]
