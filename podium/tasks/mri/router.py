"""``mri_router``: the anatomy classifier that routes leaderboard volumes to brain or knee experts.

Team sMaRtIfy's "awesome classifier": a ResNet50 with one input channel on ``image_grappa`` slices (the
image file's GRAPPA reconstruction, not normalised), two logits [brain, knee] trained with BCE on one-hot
targets plus 1e-6 x the squared L2 norm of the weights, AdamW 2e-4 (weight decay 1e-4) with cosine
annealing (T_max 10, down to 1 % of the rate), batch 16, 100 epochs, trained on ``val`` and validated on
``train``, the lowest validation loss kept. A volume's anatomy is the argmax of its slices' summed logits
(:func:`route_volume`); its acceleration is not classified but read from the mask density.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from podium.engine.backbones import LocalWeights, TimmName, create_timm_model
from podium.engine.trainer import TrainerConfig
from podium.recipe import Strict
from podium.registry import Task, register_task
from podium.stages.train import TrainConfig
from podium.tasks.mri.data import MriReader, scan_snu, slice_index

ANATOMIES = ("brain", "knee")
INPUT_KEY = "image_grappa"


class RouterModel(Strict):
    """A timm classifier with one input channel; weights from ``pretrained_file`` or from scratch.
    ``normalize`` divides each slice by its maximum first (the team fed raw intensities, ~1e-4, which
    BatchNorm's running statistics absorb only after many steps)."""

    name: TimmName = "resnet50"
    pretrained_file: LocalWeights = None
    normalize: bool = False


class RouterData(Strict):
    """The team trained on ``val`` (its 863 slices) and validated on ``train``."""

    train_on: list[Literal["train", "val"]] = ["val"]
    validate_on: Literal["train", "val"] | None = "train"


class RouterOptim(Strict):
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    t_max: int = Field(10, ge=1)  # CosineAnnealingLR's half period, in epochs
    eta_min_factor: float = Field(0.01, ge=0, le=1)
    l2: float = Field(1e-6, ge=0)  # x the sum of squared weights (the team's "Lasso")


class RouterTrainer(TrainerConfig):
    batch_size: int = Field(16, ge=1)
    max_epochs: int = Field(100, ge=1)


class RouterTrain(TrainConfig):
    trainer: RouterTrainer = RouterTrainer()
    model: RouterModel = RouterModel()
    data: RouterData = RouterData()
    optim: RouterOptim = RouterOptim()


class Classifier(torch.nn.Module):
    """The timm network, after the optional per-slice scaling: what the router stores and runs."""

    def __init__(self, cfg: RouterModel, grad_checkpointing: bool = False):
        super().__init__()
        self.normalize = cfg.normalize
        self.net = create_timm_model(cfg.name, cfg.pretrained_file, grad_checkpointing=grad_checkpointing,
                                     in_chans=1, num_classes=2)

    def forward(self, images: Tensor) -> Tensor:
        if self.normalize:
            images = images / images.amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(images.dtype).tiny)
        return self.net(images)


class GrappaSlices(torch.utils.data.Dataset):
    """Every ``image_grappa`` slice of ``volumes`` -> (1, H, W) image, one-hot [brain, knee], volume index."""

    def __init__(self, volumes: list):
        self.volumes = volumes
        self.index = slice_index(volumes)
        self.reader = MriReader()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        v, s = self.index[key[0] if isinstance(key, tuple) else key]
        volume = self.volumes[v]
        image = torch.from_numpy(np.ascontiguousarray(self.reader.target(volume, s, INPUT_KEY)))[None]
        return {"image": image, "target": torch.eye(2)[ANATOMIES.index(volume.anatomy)], "volume": v}


def route_volume(classifier: torch.nn.Module, images: Tensor, batch_size: int = 16) -> tuple[str, list[float]]:
    """(anatomy, summed logits) of one volume's (S, H, W) ``image_grappa`` slices."""
    logits = torch.zeros(2)
    with torch.inference_mode():
        for first in range(0, len(images), batch_size):
            batch = images[first : first + batch_size, None].float()
            logits += classifier(batch.to(next(classifier.parameters()).device)).float().cpu().sum(0)
    return ANATOMIES[int(logits.argmax())], logits.tolist()


class RouterModule(L.LightningModule):
    """BCE on one-hot anatomy plus the L2 term; slice accuracy and per-volume accuracy (summed logits)."""

    def __init__(self, cfg: RouterTrain):
        super().__init__()
        self.cfg = cfg
        self.model = Classifier(cfg.model, cfg.trainer.grad_checkpointing)
        self._volume_logits: dict[int, Tensor] = {}
        self._volume_truth: dict[int, int] = {}

    def _loss(self, logits: Tensor, target: Tensor) -> Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        return bce + self.cfg.optim.l2 * sum(p.square().sum() for p in self.model.parameters())

    def training_step(self, batch: dict[str, Any], _) -> Tensor:
        logits = self.model(batch["image"])
        loss = self._loss(logits, batch["target"])
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch: dict[str, Any], _) -> None:
        logits = self.model(batch["image"])
        size = len(logits)
        self.log("val_loss", self._loss(logits, batch["target"]), batch_size=size)
        truth = batch["target"].argmax(1)
        self.log("val_acc", (logits.argmax(1) == truth).float().mean(), batch_size=size)
        for v, row, t in zip(batch["volume"].tolist(), logits.detach().float().cpu(), truth.tolist(), strict=True):
            self._volume_logits[v] = self._volume_logits.get(v, torch.zeros(2)) + row
            self._volume_truth[v] = t

    def on_validation_epoch_end(self) -> None:
        if self._volume_logits:
            right = [int(self._volume_logits[v].argmax()) == t for v, t in sorted(self._volume_truth.items())]
            self.log("val_volume_acc", sum(right) / len(right))
        self._volume_logits, self._volume_truth = {}, {}

    def configure_optimizers(self):
        o = self.cfg.optim
        opt = torch.optim.AdamW(self.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=o.t_max, eta_min=o.eta_min_factor * o.lr)
        return [opt], [sched]


@register_task
class MriRouterTask(Task):
    name = "mri_router"
    version = "1"
    configs = {"train": RouterTrain}
    monitor = "val_loss"
    monitor_mode = "min"

    def datasets(self, cfg: RouterTrain, data_root: Path, seed: int) -> tuple[GrappaSlices, GrappaSlices | None]:
        train = [v for split in cfg.data.train_on for v in scan_snu(Path(data_root) / split)]
        if cfg.data.validate_on is None:
            return GrappaSlices(train), None
        return GrappaSlices(train), GrappaSlices(scan_snu(Path(data_root) / cfg.data.validate_on))

    def module(self, cfg: RouterTrain) -> RouterModule:
        return RouterModule(cfg)
