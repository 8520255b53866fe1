"""The mask network: any timm backbone with an 18-class head (default ViT-B/32, the seed's soup model)."""

from __future__ import annotations

import torch
from pydantic import Field
from timm.models import get_pretrained_cfg

from podium.engine.backbones import LocalWeights, TimmName, create_timm_model
from podium.recipe import Strict
from podium.tasks.mask.data import NUM_CLASSES


class ModelConfig(Strict):
    name: TimmName = "vit_base_patch32_224.augreg_in21k"
    pretrained_file: LocalWeights = None  # a local weight file; weights are never downloaded
    drop_rate: float | None = Field(None, ge=0, lt=1)  # None: the model's default
    drop_path_rate: float | None = Field(None, ge=0, lt=1)


def build_model(cfg: ModelConfig, image_size: int, grad_checkpointing: bool = False) -> torch.nn.Module:
    """A timm model for ``image_size`` px inputs with 18 outputs.

    Models with a fixed input size (ViTs: ``fixed_input_size`` in their pretrained config) are built
    for ``image_size``, and timm resamples a loaded file's position embeddings to it; a local file's
    mismatched head (21k classes) is dropped.
    """
    kwargs = {"num_classes": NUM_CLASSES, "drop_rate": cfg.drop_rate, "drop_path_rate": cfg.drop_path_rate}
    pretrained_cfg = get_pretrained_cfg(cfg.name)
    if pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs["img_size"] = image_size
    return create_timm_model(cfg.name, cfg.pretrained_file, grad_checkpointing, **kwargs)
