"""LightningModule around the pure reconstruction network: the configured loss with each slice's
``attrs['max']`` as data range, the configured optimizer, and the leaderboard SSIM as validation metric.

``val_ssim`` is the leaderboard's own per-slice SSIM (foreground mask by anatomy, 7x7 uniform window,
data range ``attrs['max']``), averaged over slices, so the checkpoint picked as best is the one the
leaderboard would rank best; ``val_loss`` is the training loss on the same slices.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from podium.metrics.ssim import leaderboard_ssim
from podium.tasks.mri.losses import ReconstructionLoss
from podium.tasks.mri.models import create_model


class MriModule(L.LightningModule):
    """Trains ``self.model`` (masked k-space, mask -> cropped image) against ``image_label``."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.model = create_model(cfg.model.name, **cfg.model.kwargs())
        if cfg.trainer.grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        self.loss = ReconstructionLoss(cfg.loss.ssim, cfg.loss.l1)

    def forward(self, masked_kspace: Tensor, mask: Tensor) -> Tensor:
        return self.model(masked_kspace, mask)

    def _output(self, batch: dict[str, Any]) -> Tensor:
        output = self(batch["masked_kspace"], batch["mask"])
        if output.shape != batch["target"].shape:
            raise ValueError(f"model output {tuple(output.shape)} does not match the target "
                             f"{tuple(batch['target'].shape)}: set model.crop_size to the image size")
        return output

    def _loss(self, output: Tensor, batch: dict[str, Any]) -> Tensor:
        return self.loss(output, batch["target"], batch["max_value"], batch.get("foreground"), batch.get("area_weight"))

    def training_step(self, batch: dict[str, Any], _) -> Tensor:
        output = self._output(batch)
        loss = self._loss(output, batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(output))
        return loss

    def validation_step(self, batch: dict[str, Any], _) -> None:
        output = self._output(batch)
        size = len(output)
        self.log("val_loss", self._loss(output, batch), batch_size=size)
        ssim = torch.stack([
            leaderboard_ssim(output[i], batch["target"][i], batch["max_value"][i], batch["anatomy"][i])
            for i in range(size)
        ])
        self.log("val_ssim", ssim.mean(), batch_size=size)

    def configure_optimizers(self):
        o = self.cfg.optim
        if o.name == "nadam":
            opt = torch.optim.NAdam(self.parameters(), lr=o.lr, weight_decay=o.weight_decay,
                                    momentum_decay=o.momentum_decay)
        else:
            cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
            opt = cls(self.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        return [opt], [torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: o.factor(epoch))]
