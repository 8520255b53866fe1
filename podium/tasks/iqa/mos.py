"""``iqa_mos``: a fine-tuned timm regressor of MOS, the second MOS option next to frozen features + regressors.

The seed team regressed MOS on frozen pooled features (``extract`` + ``regress`` stages). Fine-tuning the
whole backbone on the ratings is the other common choice in IQA (it learns the distortions themselves
rather than reading them off ImageNet features): a timm network with one output, on the images as the
extractors see them (RGB, resized square, ImageNet normalisation), a random horizontal flip while
training and the mirror as TTA when predicting (``tta: hflip``).

The network predicts standardised MOS, ``(mos - mean) / std`` of the training split; the two statistics
are bound from the data when the stage starts and recorded in its config, so a checkpoint predicts MOS
in the rating scale alone and averages with the regress stages' MOS in an ``ensemble``. The loss is MSE
(or L1) on the standardised ratings; AdamW with linear warm-up and a cosine per step; validation logs the
leaderboard's ``val_score`` = (max(PLCC, 0) + max(SRCC, 0)) / 2 over the whole validation split, which
picks ``@best``. The split is ``data.split_train_val``'s, the one the regress stages and the captioner use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PrivateAttr
from torch import Tensor

from podium.engine.backbones import LocalWeights, TimmName, create_timm_model
from podium.engine.schedules import adamw_warmup_cosine
from podium.ensemble.predictions import Predictions
from podium.ensemble.tta import predict_dataset
from podium.errors import ConfigError
from podium.metrics.regression import mos_score
from podium.recipe import Strict
from podium.registry import Task, register_task
from podium.stages.predict import PredictConfig
from podium.stages.train import TrainConfig
from podium.tasks.iqa.data import IqaLayout, TestImage, TrainImage, load_rgb, split_train_val, write_mos_csv
from podium.tasks.iqa.features import image_transform


class MosModel(Strict):
    """A timm network with one output; ``kwargs`` go to ``timm.create_model`` (a tiny Swin for tests)."""

    name: TimmName = "swin_large_patch4_window12_384"
    pretrained_file: LocalWeights = None
    kwargs: dict[str, Any] = {}
    drop_rate: float = Field(0.0, ge=0, lt=1)  # dropout before the head


class MosTarget(Strict):
    """Mean and standard deviation of the training split's MOS: bound when the stage starts."""

    mean: float | None = None
    std: float | None = Field(None, gt=0)


class MosOptim(Strict):
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(100, ge=0)
    loss: Literal["mse", "l1"] = "mse"


class MosTrain(TrainConfig):
    model: MosModel = MosModel()
    image_size: int = Field(384, ge=16)
    hflip: bool = True  # a random horizontal flip of training images
    val_fraction: float = Field(0.1, gt=0, lt=1)
    optim: MosOptim = MosOptim()
    target: MosTarget = MosTarget()


class MosPredict(PredictConfig):
    split: Literal["val", "test"] = "test"
    tta: Literal["none", "hflip"] = "hflip"

    _split_seed: int = PrivateAttr(0)

    @property
    def split_seed(self) -> int:
        """The stage's seed, bound when it starts: it draws the validation split as training drew it."""
        return self._split_seed


class MosRegressor(torch.nn.Module):
    """The timm network and the fixed affine map from its standardised output to MOS."""

    def __init__(self, cfg: MosTrain):
        super().__init__()
        if cfg.target.mean is None or cfg.target.std is None:
            raise ConfigError("target: unbound; an iqa_mos train stage records the training split's MOS mean and "
                              "std when it starts (build the regressor from a trained stage's manifest config)")
        m = cfg.model
        self.net = create_timm_model(m.name, m.pretrained_file, cfg.trainer.grad_checkpointing, num_classes=1,
                                     drop_rate=m.drop_rate, **m.kwargs)
        self.register_buffer("mean", torch.tensor(cfg.target.mean), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.target.std), persistent=False)

    def standardised(self, images: Tensor) -> Tensor:
        return self.net(images).squeeze(-1)

    def forward(self, images: Tensor) -> Tensor:
        """MOS of each image."""
        return self.standardised(images) * self.std + self.mean


class MosImages(torch.utils.data.Dataset):
    """(image, MOS) of each image, flipped at random by the item's seed when ``hflip``; MOS is 0 for
    test images (unknown)."""

    def __init__(self, images: Sequence[TrainImage | TestImage], size: int, hflip: bool = False):
        self.images = list(images)
        self.transform = image_transform(size)
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple) -> tuple[Tensor, float]:
        index, seed = key[:2] if isinstance(key, tuple) else (key, None)
        image = self.images[index]
        pixels = self.transform(load_rgb(image.path))
        if self.hflip and seed is not None and torch.rand(1, generator=torch.Generator().manual_seed(seed)) < 0.5:
            pixels = pixels.flip(-1)
        return pixels, float(getattr(image, "mos", 0.0))


class MosModule(L.LightningModule):
    def __init__(self, cfg: MosTrain):
        super().__init__()
        self.cfg = cfg
        self.model = MosRegressor(cfg)
        if cfg.trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._val: list[tuple[Tensor, Tensor]] = []

    def _loss(self, images: Tensor, mos: Tensor) -> tuple[Tensor, Tensor]:
        z = self.model.standardised(images)
        target = (mos.to(z.dtype) - self.model.mean) / self.model.std
        loss = F.mse_loss(z, target) if self.cfg.optim.loss == "mse" else F.l1_loss(z, target)
        return loss, z * self.model.std + self.model.mean

    def training_step(self, batch, _) -> Tensor:
        loss, _ = self._loss(*batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[1]))
        return loss

    def validation_step(self, batch, _) -> None:
        images, mos = batch
        loss, predicted = self._loss(images, mos)
        self.log("val_loss", loss, batch_size=len(mos))
        self._val.append((predicted.detach().float().cpu(), mos.float().cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        # every rank scores the whole validation split (engine.trainer.DataModule): nothing to gather
        predicted, truth = (torch.cat(t).numpy() for t in zip(*self._val, strict=True))
        self._val.clear()
        scores = mos_score(predicted, truth)
        self.log("val_score", scores["score"])
        self.log("val_plcc", scores["plcc"])
        self.log("val_srcc", scores["srcc"])

    def configure_optimizers(self):
        o = self.cfg.optim
        return adamw_warmup_cosine(self, o.lr, o.weight_decay, o.warmup_steps)


@register_task
class IqaMosTask(Task):
    name = "iqa_mos"
    version = "1"
    configs = {"train": MosTrain, "predict": MosPredict}
    monitor = "val_score"
    monitor_mode = "max"

    def bind(self, cfg: Any, data_root: Path | None, seed: int, inputs: dict) -> Any:
        """A train stage records the training split's MOS mean and std (population) in its config; a
        predict stage keeps its seed to draw the validation split."""
        if isinstance(cfg, MosPredict):
            out = cfg.model_copy()
            out._split_seed = seed
            return out
        if cfg.target.mean is not None:
            return cfg
        train, _ = split_train_val(IqaLayout(data_root).train(), cfg.val_fraction, seed)
        mos = np.array([i.mos for i in train], np.float64)
        std = float(mos.std())
        if not std > 0:
            raise ConfigError(f"{data_root}/train.csv: every training image has MOS {mos[0]}; a regressor needs "
                              "ratings that vary")
        return cfg.model_copy(update={"target": MosTarget(mean=float(mos.mean()), std=std)})

    def datasets(self, cfg: MosTrain, data_root: Path, seed: int) -> tuple[MosImages, MosImages]:
        train, val = split_train_val(IqaLayout(data_root).train(), cfg.val_fraction, seed)
        return MosImages(train, cfg.image_size, cfg.hflip), MosImages(val, cfg.image_size)

    def module(self, cfg: MosTrain) -> MosModule:
        return MosModule(cfg)

    def predict(self, model: torch.nn.Module, train_cfg: MosTrain, cfg: MosPredict, data_root: Path,
                out_dir: Path) -> Predictions:
        """MOS of test.csv's images in its order, or of the training run's validation images (sorted by
        name), averaged over the image and its mirror with ``tta: hflip``; on the GPU when there is one."""
        layout = IqaLayout(data_root)
        images = (split_train_val(layout.train(), train_cfg.val_fraction, cfg.split_seed)[1]
                  if cfg.split == "val" else layout.test())
        mos = predict_dataset(model, MosImages(images, train_cfg.image_size), cfg.batch_size, cfg.num_workers,
                              cfg.tta, label=f"MOS of {len(images)} {cfg.split} images")
        return Predictions(np.array([i.name for i in images]), mos.astype(np.float64), "values", cfg.split)

    def write_predictions(self, preds: Predictions, cfg: MosPredict, out_dir: Path) -> list[Path]:
        return [write_mos_csv(preds.ids.tolist(), preds.scores.tolist(), out_dir)]

    def trained_backbone(self, model: torch.nn.Module, train_cfg: MosTrain) -> torch.nn.Module:
        """The fine-tuned timm network (an extract stage reads its ``forward_features``)."""
        return model.net
