"""Registry of the MRI task's networks: a recipe names one (``model: {name: varnet, ...}``), as timm does.

Add a model with ``@register_model("name")`` on its class (or factory) in a module listed in ``BUILTIN``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from podium.errors import ConfigError

BUILTIN: tuple[str, ...] = ("varnet", "feature_varnet", "promptmr_plus")
_MODELS: dict[str, Callable[..., nn.Module]] = {}
Factory = TypeVar("Factory", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[Factory], Factory]:
    """Register a class or function building an ``nn.Module`` under ``name``."""

    def decorator(factory: Factory) -> Factory:
        if name in _MODELS:
            raise ValueError(f"MRI model {name!r} is already registered")
        _MODELS[name] = factory
        return factory

    return decorator


def model_names() -> list[str]:
    """Names of all registered models (imports the built-in model modules first)."""
    for module in BUILTIN:
        importlib.import_module(f"{__name__}.{module}")
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs`` as its constructor arguments."""
    names = model_names()
    if name not in names:
        raise ConfigError(f"unknown MRI model {name!r} (models: {', '.join(names)})")
    return _MODELS[name](**kwargs)
