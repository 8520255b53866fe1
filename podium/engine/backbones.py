"""timm backbones built offline: weights come from a local file or nowhere, and bad names fail early."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import timm
import torch
from pydantic import AfterValidator

from podium.errors import ConfigError, DataError


def _timm_name(name: str) -> str:
    if not timm.is_model(name):
        raise ValueError(f"{name!r} is not a timm model (e.g. test_resnet or test_vit for tiny runs)")
    return name


def _local_file(path: str | None) -> str | None:
    if path is not None and not Path(path).is_file():
        raise ValueError(f"{path}: no such file (weights are never downloaded: give a local file)")
    return path


# config field types checked when the recipe loads, not when the stage starts
TimmName = Annotated[str, AfterValidator(_timm_name)]
LocalWeights = Annotated[str | None, AfterValidator(_local_file)]


def create_timm_model(
    name: str, pretrained_file: str | None = None, grad_checkpointing: bool = False, **kwargs
) -> torch.nn.Module:
    """``timm.create_model(name, **kwargs)`` with its weights from ``pretrained_file`` if given.

    Nothing is downloaded: without a file the model starts from scratch. timm adapts a loaded file to
    the model (stem to ``in_chans``, position embeddings to ``img_size``) and drops a mismatched head.
    ``None`` values in ``kwargs`` mean the model's own default.
    """
    if not timm.is_model(name):
        raise ConfigError(f"model.name: {name!r} is not a timm model (e.g. test_resnet or test_vit for tiny runs)")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if pretrained_file:
        if not Path(pretrained_file).is_file():
            raise DataError(f"model.pretrained_file: {pretrained_file}: no such file")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_file)})
    try:
        model = timm.create_model(name, **kwargs)
    except TypeError as e:  # an argument this family lacks, e.g. output_stride on a ViT
        raise ConfigError(f"model: timm cannot build {name!r} with {sorted(kwargs)} ({e})") from None
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def backbone_tokens(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(batch, tokens, dim)`` from a timm backbone's ``forward_features``, final norm included.

    Swin's NHWC grid and a CNN's NCHW map are flattened row-major (Swin-L at 384 px: 12 x 12 -> 144
    tokens of 1536, in the order ExpansionNet's own Swin gives them); a ViT's sequence is kept as is.
    """
    x = model.forward_features(images)
    if x.ndim == 4:
        x = x.flatten(1, 2) if getattr(model, "output_fmt", "NCHW") == "NHWC" else x.flatten(2).transpose(1, 2)
    return x
