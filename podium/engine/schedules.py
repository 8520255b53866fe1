"""Learning-rate schedules per optimizer step, shared by the tasks that fine-tune timm models."""

from __future__ import annotations

import functools
import math

import lightning as L
import torch


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR factor: linear warm-up to 1 over ``warmup`` steps ((step + 1) / warmup), then cosine to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def adamw_warmup_cosine(module: L.LightningModule, lr: float, weight_decay: float, warmup_steps: int,
                        betas: tuple[float, float] = (0.9, 0.999)) -> dict:
    """``configure_optimizers``' answer: AdamW over the module's parameters (fused on CUDA), the rate
    stepped per optimizer step by :func:`warmup_cosine` over the whole fit."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr, betas=betas, weight_decay=weight_decay,
                            fused=module.device.type == "cuda")
    total = max(1, module.trainer.estimated_stepping_batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(warmup_cosine, warmup=warmup_steps, total=total))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
