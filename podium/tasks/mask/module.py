"""LightningModule for mask classification: CE or contrastive loss, AdamW, warm-up then cosine, macro F1.

The seed's recipe: AdamW lr 1e-5, weight decay 0.1, 500 linear warm-up steps then cosine to 0, all per
step; gradient clipping comes from the recipe's ``trainer.gradient_clip_val`` (the seed used 1.0).
Validation logs ``val_f1`` (macro F1 over the whole validation set, the leaderboard metric: a mean of
per-batch F1s would be a different number), ``val_acc`` and ``val_loss``.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from podium.engine.schedules import adamw_warmup_cosine
from podium.metrics.classification import multiclass_scores
from podium.recipe import Strict
from podium.tasks.mask.data import NUM_CLASSES
from podium.tasks.mask.model import build_model


class OptimConfig(Strict):
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(500, ge=0)


class LossConfig(Strict):
    """``ce``; ``contrastive`` (the seed's option); ``ce+contrastive`` (their sum).

    Predictions are the argmax of the logits whatever the loss: contrastive alone only clusters the
    logits by class and does not tie logit k to class k, so ``ce+contrastive`` is the safer variant.
    """

    name: Literal["ce", "contrastive", "ce+contrastive"] = "ce"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    pos_margin: float = Field(1.0, ge=0, le=2)
    neg_margin: float = Field(1.0, ge=0, le=2)


def _mean_nonzero(losses: Tensor) -> Tensor:
    """Mean over the pairs that still contribute (0 when none do), without a host sync."""
    return losses.sum() / (losses > 0).sum().clamp_min(1)


def contrastive_loss(embeddings: Tensor, labels: Tensor, pos_margin: float = 1.0, neg_margin: float = 1.0) -> Tensor:
    """Pair contrastive loss on L2-normalised embeddings (here: the logits), as the seed used it.

    The semantics of pytorch-metric-learning's ``ContrastiveLoss`` with its default distance (Euclidean
    between unit vectors, so d in [0, 2]): every ordered pair (i, j), i != j, of the batch; positives
    (same class) cost ``relu(d - pos_margin)``, negatives ``relu(neg_margin - d)``; each kind is
    averaged over its pairs with a non-zero cost and the two means are summed. With the seed's margins
    (1, 1) one boundary at d = 1 (cosine 0.5) separates "same class" from "other class".
    """
    z = F.normalize(embeddings.float(), dim=1)
    # |a - b|^2 = 2 - 2 a.b for unit vectors; the clamp keeps sqrt's gradient finite at d = 0
    dist = (2 - 2 * z @ z.T).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    other = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return (_mean_nonzero(torch.relu(dist - pos_margin)[same & other])
            + _mean_nonzero(torch.relu(neg_margin - dist)[~same]))


class MaskModule(L.LightningModule):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = build_model(cfg.model, cfg.data.image_size, cfg.trainer.grad_checkpointing)
        if cfg.trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._val_outputs: list[tuple[Tensor, Tensor]] = []

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        c = self.cfg.loss
        terms = []
        if c.name in ("ce", "ce+contrastive"):
            terms.append(F.cross_entropy(logits, labels, label_smoothing=c.label_smoothing))
        if c.name in ("contrastive", "ce+contrastive"):
            terms.append(contrastive_loss(logits, labels, c.pos_margin, c.neg_margin))
        return sum(terms)

    def training_step(self, batch, _):
        images, labels = batch
        loss = self.loss(self(images), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def validation_step(self, batch, _):
        images, labels = batch
        logits = self(images)
        self.log("val_loss", F.cross_entropy(logits, labels), batch_size=len(images))
        self._val_outputs.append((logits.argmax(1), labels))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        # every rank sees the whole validation set (engine.trainer.DataModule): no gathering needed
        preds = torch.cat([p for p, _ in self._val_outputs])
        labels = torch.cat([y for _, y in self._val_outputs])
        self._val_outputs.clear()
        scores = multiclass_scores(preds.cpu().numpy(), labels.cpu().numpy(), NUM_CLASSES)
        self.log("val_f1", scores["macro_f1"])
        self.log("val_acc", scores["accuracy"])

    def configure_optimizers(self):
        o = self.cfg.optim
        return adamw_warmup_cosine(self, o.lr, o.weight_decay, o.warmup_steps, o.betas)
