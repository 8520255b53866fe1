"""The IQA images as a backbone sees them: RGB, resized to a square, ImageNet mean and std.

As the original extractor and the seed did (iqa-verified 1.8, 2.4, 2.5): ``Resize((s, s))`` without
keeping the aspect (bilinear, PIL's antialiasing), ``ToTensor``, ImageNet normalisation; unlike the
original, a non-RGB image is converted, never replaced by a black one (``data.load_rgb``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision.transforms import v2

from podium.tasks.iqa.data import IqaLayout, load_rgb


def image_transform(size: int) -> v2.Compose:
    """PIL RGB image -> normalised float tensor (3, size, size)."""
    return v2.Compose([v2.Resize((size, size)), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)])


class ImageFiles(torch.utils.data.Dataset):
    """Image files as normalised tensors, in the given order."""

    def __init__(self, paths: Sequence[Path], size: int):
        self.paths = list(paths)
        self.transform = image_transform(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_rgb(self.paths[index]))


def split_images(layout: IqaLayout, split: str) -> tuple[list[str], list[Path]]:
    """(img_names, paths): train.csv's images sorted by name, test.csv's in file order, or both in turn."""
    images = ([*layout.train()] if split in ("train", "all") else []) + (
        [*layout.test()] if split in ("test", "all") else [])
    return [i.name for i in images], [i.path for i in images]
