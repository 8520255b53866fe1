"""The dirty-MNIST network: any timm backbone with one input channel and 26 sigmoid outputs."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from pydantic import Field

from podium.errors import DataError
from podium.recipe import Strict

NUM_LETTERS = 26


class ModelConfig(Strict):
    name: str = "tf_efficientnetv2_s.in21k"
    in_chans: int = 1
    drop_rate: float = Field(0.5, ge=0, lt=1)
    drop_path_rate: float = Field(0.2, ge=0, lt=1)
    pretrained_file: str | None = None


def build_model(cfg: ModelConfig, grad_checkpointing: bool = False) -> torch.nn.Module:
    """timm adapts the stem to ``in_chans`` and drops a mismatched head when loading a local file.

    Weights are never downloaded: without ``pretrained_file`` the model starts from scratch.
    """
    kwargs = dict(in_chans=cfg.in_chans, num_classes=NUM_LETTERS, drop_rate=cfg.drop_rate,
                  drop_path_rate=cfg.drop_path_rate)
    if cfg.pretrained_file:
        if not Path(cfg.pretrained_file).is_file():
            raise DataError(f"model.pretrained_file: {cfg.pretrained_file}: no such file")
        model = timm.create_model(cfg.name, pretrained=True,
                                  pretrained_cfg_overlay={"file": str(cfg.pretrained_file)}, **kwargs)
    else:
        model = timm.create_model(cfg.name, pretrained=False, **kwargs)
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model
