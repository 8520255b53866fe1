"""The dirty-MNIST network: any timm backbone with one input channel and 26 sigmoid outputs."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from podium.engine.backbones import LocalWeights, TimmName, create_timm_model
from podium.errors import ConfigError
from podium.recipe import Strict

NUM_LETTERS = 26


class ModelConfig(Strict):
    name: TimmName = "tf_efficientnetv2_s.in21k"
    in_chans: int = 1
    drop_rate: float = Field(0.5, ge=0, lt=1)
    drop_path_rate: float = Field(0.2, ge=0, lt=1)
    pretrained_file: LocalWeights = None
    # pool: timm's own head (global pooling, then the classifier), as the write-up ran it.
    # class_max: the classifier at every feature-map position, then each letter's maximum (below).
    head: Literal["pool", "class_max"] = "pool"
    output_stride: Literal[8, 16, 32] = 32


class ClassMaxHead(torch.nn.Module):
    """Score each letter at every position of the feature map and keep its maximum over positions.

    A letter is a small object anywhere in the image, so "is it present" is "does some position look
    like it": a per-position letter detector, rather than one linear map of pooled features that has
    to separate 26 letters from a blend of 10..14 of them. It is what lets a network pretrained on
    single glyphs recognise them among a dozen others from its first step. The backbone keeps timm's
    classifier, so the state dict is timm's with a ``backbone.`` prefix.
    """

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        classifier = backbone.get_classifier()
        if not isinstance(classifier, torch.nn.Linear):
            raise ConfigError(f"model.head: class_max needs a linear classifier; "
                              f"{type(backbone).__name__} has {type(classifier).__name__}")
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(images)
        if features.ndim != 4:
            raise ConfigError(f"model.head: class_max needs [B, C, H, W] feature maps; "
                              f"{type(self.backbone).__name__} gives shape {tuple(features.shape)}")
        features = torch.nn.functional.dropout(features, getattr(self.backbone, "drop_rate", 0.0), self.training)
        classifier = self.backbone.get_classifier()
        maps = torch.einsum("bchw,kc->bkhw", features, classifier.weight)
        return maps.amax(dim=(2, 3)) + classifier.bias


def build_model(cfg: ModelConfig, grad_checkpointing: bool = False) -> torch.nn.Module:
    """A timm backbone with one input channel and 26 outputs, under ``cfg.head``."""
    model = create_timm_model(
        cfg.name, cfg.pretrained_file, grad_checkpointing, in_chans=cfg.in_chans, num_classes=NUM_LETTERS,
        drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate,
        output_stride=cfg.output_stride if cfg.output_stride != 32 else None,
    )
    return ClassMaxHead(model) if cfg.head == "class_max" else model
