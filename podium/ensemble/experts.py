"""Mixtures of experts as one checkpoint: the parts' provenance beside the weights, and epoch selection.

A collected checkpoint holds ``state_dict`` (the task's assembled module) and ``collected``: for the router
and every expert, the stage, member, checkpoint file, its sha256 and the train config that built it, so
``predict`` rebuilds the same module from the checkpoint alone, and anyone can see what went into it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from podium.store import atomic_path

COLLECTED = "collected"


def select_epoch(epochs: Sequence[int], score: Callable[[int], float]) -> tuple[int, dict[int, float]]:
    """The epoch of ``epochs`` with the highest ``score`` (the earliest on a tie), and every score."""
    scores = {int(e): float(score(int(e))) for e in epochs}
    best = max(scores, key=lambda e: (scores[e], -e))
    return best, scores


def save_collected(path: Path, module: torch.nn.Module, spec: dict[str, Any]) -> Path:
    """Write the assembled module's weights with its parts' ``spec`` (plain data: loads with weights_only)."""
    with atomic_path(path) as tmp:
        torch.save({"state_dict": module.state_dict(), COLLECTED: spec}, tmp)
    return path
