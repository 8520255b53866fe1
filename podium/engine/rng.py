"""RNG states in every checkpoint, so a resumed run draws the same dropout masks as an uninterrupted one.

Lightning restores model, optimiser and loop state but not the global generators
(Lightning-AI/pytorch-lightning#17543, #18098). States are stored as tensors and plain lists so that
checkpoints load with ``torch.load(weights_only=True)``. Data order needs no state here: podium's
``EpochSampler`` derives each epoch's order and each sample's augmentation seed from (seed, epoch).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def capture_rng() -> dict[str, Any]:
    version, py_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(py_state), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGStateCallback(Callback):
    """Saves every rank's global RNG states with each checkpoint and puts each rank's back on restore.

    Under DDP only rank 0 writes the checkpoint, so the states of all ranks are gathered into it.
    """

    def __init__(self) -> None:
        self.trainer = None

    @property
    def state_key(self) -> str:
        return "RNGState"

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        state = capture_rng()
        if self.trainer is None or self.trainer.world_size == 1:
            return {"ranks": [state]}
        import torch.distributed as dist

        states: list[Any] = [None] * self.trainer.world_size
        dist.all_gather_object(states, state)
        return {"ranks": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Each rank takes its own states back; a warm start from a run with fewer processes
        (``init_state: full``) gives the extra ranks rank 0's."""
        states = state_dict.get("ranks", [state_dict])  # checkpoints before podium 0.2 held one state
        rank = self.trainer.global_rank if self.trainer is not None else 0
        restore_rng(states[rank] if rank < len(states) else states[0])
