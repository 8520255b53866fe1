"""Test-time augmentation: average a model's activated outputs over transformed copies of the input.

A mode is a tuple of *views* (functions image batch -> image batch). Outputs are per-image (class
logits), so no inverse transform is applied to them. Add a mode with ``@register_tta("name")``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from rich.progress import track
from torch import Tensor

from podium.errors import PodiumError

View = Callable[[Tensor], Tensor]
TTA_MODES: dict[str, Callable[[], tuple[View, ...]]] = {}


def register_tta(name: str) -> Callable[[Callable[[], tuple[View, ...]]], Callable[[], tuple[View, ...]]]:
    """Register a function returning a mode's views under ``name``."""

    def decorator(views: Callable[[], tuple[View, ...]]) -> Callable[[], tuple[View, ...]]:
        if name in TTA_MODES:
            raise ValueError(f"TTA mode {name!r} is already registered")
        TTA_MODES[name] = views
        return views

    return decorator


def _rot90(k: int) -> View:
    return lambda images: torch.rot90(images, k, dims=(-2, -1))


@register_tta("none")
def _none() -> tuple[View, ...]:
    return (lambda images: images,)


@register_tta("rot90")
def _rot90_views() -> tuple[View, ...]:
    """k = 0..3 quarter turns over the last two (spatial) dims, the dirty-MNIST seed's TTA."""
    return tuple(_rot90(k) for k in range(4))


@register_tta("hflip")
def _hflip_views() -> tuple[View, ...]:
    return (lambda images: images, lambda images: torch.flip(images, dims=(-1,)))


def _activate(outputs: Tensor, activation: str | None) -> Tensor:
    if activation is None:
        return outputs
    if activation == "sigmoid":
        return torch.sigmoid(outputs)
    if activation == "softmax":
        if outputs.ndim < 2:
            raise PodiumError(
                f"tta: softmax needs (batch, classes, ...) outputs, got shape {tuple(outputs.shape)}"
            )
        return torch.softmax(outputs, dim=1)
    raise PodiumError(f"tta: unknown activation {activation!r}, expected 'sigmoid', 'softmax' or None")


def tta_predict(
    forward: Callable[[Tensor], Tensor],
    images: Tensor,
    mode: str = "none",
    activation: str | None = None,
) -> Tensor:
    """Mean over the mode's views of ``activation(forward(view(images)))``.

    Activated before averaging (mean of probabilities, as the seeds do). The sum is taken in float64
    and cast back to the outputs' dtype (at least float32), so float32 views that agree give exactly
    the single-view result. Grad mode is the caller's: wrap in ``torch.inference_mode()`` to predict.
    """
    if mode not in TTA_MODES:
        raise PodiumError(f"tta: unknown mode {mode!r}, expected one of {sorted(TTA_MODES)}")
    if images.ndim < 2:
        raise PodiumError(f"tta: images need at least 2 (spatial) dims, got shape {tuple(images.shape)}")
    first, *others = TTA_MODES[mode]()
    outputs = _activate(forward(first(images)), activation)
    dtype = torch.promote_types(outputs.dtype, torch.float32)
    total = outputs.to(torch.float64, copy=True)
    for view in others:
        total += _activate(forward(view(images)), activation).double()
    return (total / (1 + len(others))).to(dtype)


def predict_dataset(model: torch.nn.Module, dataset, batch_size: int, num_workers: int = 0, mode: str = "none",
                    activation: str | None = None, label: str = "predict") -> np.ndarray:
    """float32 outputs of ``model`` (eval mode, on the GPU when there is one) over a dataset of
    ``(image, anything)`` items, in dataset order, averaged over the TTA mode's views, with a progress bar."""
    if len(dataset) == 0:
        raise PodiumError(f"{label}: the dataset to predict is empty")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.eval().to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    out = []
    with torch.inference_mode():
        for images, _ in track(loader, description=label, transient=True):
            out.append(tta_predict(model, images.to(device), mode, activation).float().cpu())
    return torch.cat(out).numpy()
