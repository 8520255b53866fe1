"""Training and validation slices of the SNU layout, read one HDF5 hyperslab at a time (never a volume).

An item is what the models and the losses take: masked k-space in fastMRI's real view, the column
mask, the ``image_label`` target, the file's ``attrs['max']`` (the loss's and the metric's data range),
the leaderboard's foreground mask when the loss wants it, and identifiers.

Everything random about an item comes from its :class:`~podium.engine.seeding.SampleKey` (a seed that
depends on run seed, epoch and item only, and the epoch for schedules), so any item can be recomputed
and a resumed run sees the same data as an uninterrupted one. In order:

1. MRAugment (``augment``): with probability p(epoch) per transform, the same random flip / rotation /
   scaling / shear / translation of every coil image; the target becomes the RSS of the augmented
   coil images, so k-space and target stay consistent.
2. The mask: the challenge's fixed pattern of the item's acceleration (the baseline, the "Hacker"),
   the file's stored mask, or a robust "Helper" mask; then mask augmentation (``mask_augment``) may
   replace it, with probability p(epoch), by a fresh mask of another family at the same acceleration.
3. The acceleration: the file's, one per copy of the slice (``duplicate``: GeekSeek's acc4 + acc8
   copies), or drawn per item from ``accelerations`` (sMaRtIfy's Hacker on fully sampled k-space).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from podium.engine.seeding import SampleKey, derive_seed
from podium.errors import DataError
from podium.metrics.ssim import foreground_mask
from podium.tasks.mri.augment import AugmentConfig, augment_kspace
from podium.tasks.mri.data import MriReader, MriVolume, slice_index
from podium.tasks.mri.masks import HelperMaskSampler, MaskAugmenter, fixed_pattern

MaskKind = Literal["fixed", "file", "helper"]


def masked_kspace(kspace: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(coils, H, W) complex k-space and a (W,) mask -> (coils, H, W, 2) masked real view, (1, 1, W, 1) mask.

    Multiplying by the mask zeroes the unsampled columns of fully sampled training k-space; on
    leaderboard k-space (stored undersampled) it changes nothing.
    """
    mask = np.asarray(mask, dtype=np.float32)
    masked = torch.view_as_real(torch.from_numpy(kspace * mask.astype(np.complex64)))
    return masked, torch.from_numpy(mask).reshape(1, 1, -1, 1)


@dataclass(frozen=True)
class Augmentation:
    """The epoch-dependent parts of a training dataset; ``max_epochs`` is the schedules' default T."""

    augment: AugmentConfig | None = None
    mask_augment: MaskAugmenter | None = None
    max_epochs: int = 1


class SliceDataset(torch.utils.data.Dataset):
    """Every slice of ``volumes`` (which must have targets), once per acceleration in ``duplicate`` (or
    once); items are fetched by :class:`SampleKey` (or a bare index).

    ``mask``: ``fixed`` uses the challenge pattern of the item's acceleration, ``file`` the stored mask,
    ``helper`` draws from ``helper`` with the sample seed and epoch. An item's acceleration is its
    copy's (``duplicate``), drawn from ``accelerations`` by the sample seed, or the file's.
    ``foreground`` adds the leaderboard's foreground mask of the (augmented) target as ``foreground``;
    ``area_weight`` adds ``area_weight``: sqrt(its foreground area / the largest of its volume's slices).
    """

    def __init__(self, volumes: Sequence[MriVolume], mask: MaskKind = "fixed", helper: HelperMaskSampler | None = None,
                 augmentation: Augmentation = Augmentation(), duplicate: Sequence[int] = (),
                 foreground: bool = False, area_weight: bool = False, accelerations: Sequence[int] = ()):
        if mask == "helper" and helper is None:
            raise ValueError("mask 'helper' needs a HelperMaskSampler")
        if duplicate and mask == "file":
            raise ValueError("duplicate lists slices under other accelerations; the file's own mask has one")
        for volume in volumes:
            if volume.target_path is None:
                raise DataError(f"{volume.kspace_path}: no target image file, so it cannot be trained on")
            if volume.anatomy is None:
                raise DataError(f"{volume.kspace_path}: file name must start with brain_ or knee_ "
                                "(the leaderboard metric's foreground threshold depends on it)")
        self.volumes = list(volumes)
        self.mask = mask
        self.helper = helper
        self.augmentation = augmentation
        self.foreground = foreground or area_weight
        self.area_weight = area_weight
        self.accelerations = tuple(accelerations)
        slices = slice_index(self.volumes)
        self.index = [(v, s, acc) for v, s in slices for acc in (duplicate or [self.volumes[v].acceleration])]
        self.reader = MriReader()
        self._largest_area: dict[int, float] = {}

    def largest_area(self, v: int) -> float:
        """The largest foreground area (pixels) among volume ``v``'s un-augmented slices, computed once
        per process: the leaderboard's morphology on every target slice."""
        if v not in self._largest_area:
            volume = self.volumes[v]
            areas = [float(foreground_mask(torch.from_numpy(self.reader.target(volume, s)), volume.anatomy).sum())
                     for s in range(volume.num_slices)]
            self._largest_area[v] = max(max(areas), 1.0)
        return self._largest_area[v]

    def __len__(self) -> int:
        return len(self.index)

    def line_mask(self, volume: MriVolume, acceleration: int, key: SampleKey) -> np.ndarray:
        """The (W,) column mask of one item, before mask augmentation."""
        if self.mask == "file":
            return self.reader.mask(volume)
        if self.mask == "helper":
            return self.helper(volume.width, key.seed, epoch=key.epoch, acceleration=acceleration)
        return fixed_pattern(volume.width, acceleration)

    def __getitem__(self, key: SampleKey | int) -> dict[str, Any]:
        key = SampleKey(*key) if isinstance(key, tuple) else SampleKey(key, derive_seed("mri-item", key))
        v, s, acc = self.index[key.index]
        volume = self.volumes[v]
        if self.accelerations:
            acc = self.accelerations[np.random.default_rng([key.seed, 0x616363]).integers(len(self.accelerations))]
        kspace = self.reader.kspace(volume, s)
        target = self.reader.target(volume, s)
        aug = self.augmentation
        if aug.augment is not None:
            p = aug.augment.probability(key.epoch, aug.max_epochs)
            if p > 0:
                rng = np.random.default_rng(derive_seed(key.seed, "mraugment"))
                augmented, label = augment_kspace(torch.from_numpy(kspace), target.shape, p, rng, aug.augment)
                kspace, target = augmented.numpy(), label.numpy()
        mask = self.line_mask(volume, acc, key)
        if aug.mask_augment is not None:
            mask = aug.mask_augment(mask, acc, key.seed, key.epoch, aug.max_epochs)
        masked, mask = masked_kspace(kspace, mask)
        item = {
            "masked_kspace": masked,
            "mask": mask,
            "target": torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)),
            "max_value": torch.tensor(self.reader.max_value(volume), dtype=torch.float32),
            "anatomy": volume.anatomy,
            "acceleration": int(acc),
            "fname": volume.name,
            "slice": s,
        }
        if self.foreground:
            item["foreground"] = foreground_mask(item["target"], volume.anatomy)
        if self.area_weight:
            item["area_weight"] = torch.tensor(math.sqrt(float(item["foreground"].sum()) / self.largest_area(v)))
        return item
