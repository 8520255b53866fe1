"""LightningModule for dirty MNIST: BCE with logits, Adam, cosine to lr * 0.01 over all steps."""

from __future__ import annotations

import lightning as L
import torch
from pydantic import Field

from podium.recipe import Strict
from podium.tasks.multilabel.model import build_model


class OptimConfig(Strict):
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    final_lr_fraction: float = Field(0.01, ge=0, le=1)


class MultilabelModule(L.LightningModule):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = build_model(cfg.model, cfg.trainer.grad_checkpointing)
        if cfg.trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch, _):
        images, labels = batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self(images), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def validation_step(self, batch, _):
        images, labels = batch
        logits = self(images)
        hits = ((logits > 0).float() == labels).float()
        self.log("val_loss", torch.nn.functional.binary_cross_entropy_with_logits(logits, labels),
                 batch_size=len(images))
        self.log("val_acc", hits.mean(), batch_size=len(images))
        self.log("val_exact", hits.min(dim=1).values.mean(), batch_size=len(images))

    def configure_optimizers(self):
        o = self.cfg.optim
        opt = torch.optim.Adam(self.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
                               fused=self.device.type == "cuda")
        steps = max(1, self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=o.lr * o.final_lr_fraction)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
