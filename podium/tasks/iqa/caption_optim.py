"""ExpansionNet v2's optimizer and learning-rate schedule (iqa-verified.md 1.5 and 0.5).

The original trains with Liu et al.'s RAdam (``degenerated_to_sgd=False``) at base rate 1, the rate itself
coming from ``custom_warmup_anneal`` through a per-iteration ``LambdaLR``. ``torch.optim.RAdam`` differs in
the first steps: while the variance of the adaptive rate is intractable (rho_t < 5, the first five steps
with beta2 0.98) it takes momentum-SGD steps ``lr * m_hat`` whose size is the raw gradient's, where the
original does not move the weights at all. :class:`RAdam` here is the original's rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

RECTIFIABLE = 5.0  # below this rho_t the original leaves the weights where they are


def rectification(step: int, beta1: float, beta2: float) -> float | None:
    """RAdam's step-size factor r_t sqrt(1 - beta2^t) / (1 - beta1^t) at step ``step`` (1-based);
    None while rho_t < 5 (no update)."""
    rho_inf = 2 / (1 - beta2) - 1
    beta2_t = beta2**step
    rho_t = rho_inf - 2 * step * beta2_t / (1 - beta2_t)
    if rho_t < RECTIFIABLE:
        return None
    ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    return math.sqrt((1 - beta2_t) * ratio) / (1 - beta1**step)


class RAdam(torch.optim.Optimizer):
    """Rectified Adam as ExpansionNet v2 uses it: no weight decay, and no update while rho_t < 5.

    The moments are updated from the first step, as in the original, so step 6 onwards equals
    ``torch.optim.RAdam`` given the same gradients. Parameters are updated with foreach kernels, one
    call per group and step count (all parameters share it unless some started late).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1.0,
                 betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-9):
        if lr < 0 or eps < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid RAdam settings lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_step: dict[int, list[Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                by_step.setdefault(state["step"], []).append(p)
            for step, params in by_step.items():
                self._update(params, step, group)
        return loss

    def _update(self, params: list[Tensor], step: int, group: dict) -> None:
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params]
        exp_avg = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sq = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        torch._foreach_mul_(exp_avg, beta1)
        torch._foreach_add_(exp_avg, grads, alpha=1 - beta1)
        factor = rectification(step, beta1, beta2)
        if factor is None:
            return
        denominator = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_add_(denominator, group["eps"])
        torch._foreach_addcdiv_(params, exp_avg, denominator, value=-group["lr"] * factor)


def custom_warmup_anneal(step: int, *, lr: float, warmup: int, anneal_coeff: float, anneal_every_epoch: float,
                         steps_per_epoch: int, min_lr: float) -> float:
    """The learning rate at optimizer step ``step`` (0-based): hyperbolic warm-up ``lr / max(W - step, 1)``,
    times ``anneal_coeff`` per ``anneal_every_epoch`` epochs, floored at ``min_lr`` once warm-up is over.

    The original's formula, with ``it`` and ``batches_per_epoch`` counting optimizer steps (see
    ``captioning``: the original counts micro-batches).
    """
    annealed = lr / max(warmup - step, 1) * anneal_coeff ** (step // (steps_per_epoch * anneal_every_epoch))
    return max(min_lr if step >= warmup else 0.0, annealed)
