"""Team sMaRtIfy's collected system ("HackingSystem"): a broker, an anatomy router and experts.

Each slice goes to the expert of its (group, anatomy, acceleration):

- group: ``fixed`` (the Hacker experts, trained on the challenge's fixed pattern) when the slice's mask
  is exactly that pattern, else ``robust`` (the Helper experts); with one group, every slice goes to it;
- anatomy: the router's decision for the whole volume (its slices' ``image_grappa`` logits summed);
- acceleration: read from the mask density (> 0.24 sampled -> 4, else 8).

The experts are pure reconstruction networks; the system is a pure ``nn.Module`` whose state dict holds
them under ``experts.<group>_<anatomy>_acc<N>`` and the router under ``router``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from podium.errors import ConfigError
from podium.tasks.mri.masks import acceleration_from_mask, is_fixed_pattern
from podium.tasks.mri.router import route_volume

GROUPS = {"fixed": "fixed", "helper": "robust"}  # mask.kind an expert trained with -> its group


def expert_class(cfg: Any, where: str) -> tuple[str, str, int]:
    """(group, anatomy, acceleration) an expert's train config restricts it to; all three must be set."""
    group = GROUPS.get(cfg.mask.kind)
    accelerations = [cfg.data.acceleration] if cfg.data.acceleration else cfg.mask.accelerations
    if group is None or cfg.data.anatomy is None or len(accelerations) != 1:
        raise ConfigError(f"{where}: an expert must train on one class: mask.kind fixed or helper (found "
                          f"{cfg.mask.kind!r}), data.anatomy (found {cfg.data.anatomy!r}) and one acceleration "
                          f"through data.acceleration or mask.accelerations (found {accelerations})")
    return group, cfg.data.anatomy, int(accelerations[0])


def expert_key(group: str, anatomy: str, acceleration: int) -> str:
    return f"{group}_{anatomy}_acc{acceleration}"


class ExpertSystem(nn.Module):
    """Routes every slice to one expert; ``route`` decides a volume's anatomy with the router."""

    def __init__(self, experts: dict[str, nn.Module], router: nn.Module | None = None):
        super().__init__()
        self.experts = nn.ModuleDict(experts)
        self.router = router
        self.groups = sorted({k.split("_")[0] for k in experts})
        self.anatomies = sorted({k.split("_")[1] for k in experts})
        if len(self.anatomies) > 1 and router is None:
            raise ConfigError(f"collect: the experts cover {', '.join(self.anatomies)}: a router must choose")

    def route(self, images: Tensor) -> tuple[str, list[float]]:
        """(anatomy, summed logits) of a volume from its (S, H, W) ``image_grappa`` slices."""
        if self.router is None:
            return self.anatomies[0], []
        return route_volume(self.router, images)

    def expert_for(self, mask: Tensor, anatomy: str) -> str:
        """The expert a slice with this (…, W, …) column mask goes to; a class without one is an error."""
        line = mask.reshape(-1).detach().cpu().numpy()
        group = self.groups[0] if len(self.groups) == 1 else ("fixed" if is_fixed_pattern(line) else "robust")
        key = expert_key(group, anatomy, acceleration_from_mask(line))
        if key not in self.experts:
            raise ConfigError(f"collect: no expert for {key} (experts: {', '.join(self.experts)})")
        return key

    def forward(self, masked_kspace: Tensor, mask: Tensor, anatomy: str | None = None) -> Tensor:
        anatomy = anatomy or self.anatomies[0]
        keys = [self.expert_for(mask[i], anatomy) for i in range(len(mask))]
        out: Tensor | None = None
        for key in dict.fromkeys(keys):
            rows = torch.tensor([i for i, k in enumerate(keys) if k == key], device=masked_kspace.device)
            part = self.experts[key](masked_kspace[rows], mask[rows])
            if out is None:
                out = part.new_zeros((len(keys), *part.shape[1:]))
            out[rows] = part
        return out
