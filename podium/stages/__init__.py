"""Stage kinds: generic verbs (train, predict, ensemble, ...) registered by name, as timm registers models.

A kind is a pydantic config class plus ``run(ctx) -> metrics``. Kinds never import a task's internals:
they call the task plugin's documented methods (see ``podium.tasks.Task``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podium.errors import ConfigError

# kinds whose stages leave model checkpoints that `model: stage@best` can point at
CHECKPOINT_KINDS = ("train", "soup", "collect")
_BUILTIN = ("synth", "train", "predict", "ensemble", "evaluate", "submit", "soup", "search")


@dataclass(frozen=True)
class StageKind:
    name: str
    config: type
    run: Callable[[Any], dict[str, Any]]
    version: int
    uses_data: bool
    shared: bool  # several processes may run it at once (it coordinates them itself): no stage lock


_REGISTRY: dict[str, StageKind] = {}


def register_stage(name: str, config: type, version: int = 1, uses_data: bool = True, shared: bool = False):
    """Decorator for a kind's ``run(ctx)``; bump ``version`` when outputs change, to invalidate old runs."""

    def wrap(fn: Callable[[Any], dict[str, Any]]):
        _REGISTRY[name] = StageKind(name, config, fn, version, uses_data, shared)
        return fn

    return wrap


def stage_kinds() -> dict[str, StageKind]:
    """All registered kinds (imports the built-in stage modules on first call)."""
    for mod in _BUILTIN:
        importlib.import_module(f"podium.stages.{mod}")
    return _REGISTRY


def stage_kind(name: str) -> StageKind:
    kinds = stage_kinds()
    if name not in kinds:
        raise ConfigError(f"unknown stage kind {name!r} (kinds: {', '.join(sorted(kinds))})")
    return kinds[name]
