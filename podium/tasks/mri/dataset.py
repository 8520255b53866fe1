"""Training and validation slices of the SNU layout, read one HDF5 hyperslab at a time (never a volume).

An item is what VarNet and the SSIM loss take: masked k-space in fastMRI's real view, the column mask,
the ``image_label`` target, the file's ``attrs['max']`` (the loss's and the metric's data range), and
identifiers. The mask is chosen per item: the challenge's fixed pattern of the file's acceleration
(the baseline and the "Hacker"), the mask stored in the file, or a robust "Helper" mask whose draw
depends only on the sample seed of the ``(index, sample_seed)`` key, so any item can be recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from podium.errors import DataError
from podium.tasks.mri.data import MriReader, MriVolume, slice_index
from podium.tasks.mri.masks import HelperMaskSampler, fixed_pattern

MaskKind = Literal["fixed", "file", "helper"]


def masked_kspace(kspace: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(coils, H, W) complex k-space and a (W,) mask -> (coils, H, W, 2) masked real view, (1, 1, W, 1) mask.

    Multiplying by the mask zeroes the unsampled columns of fully sampled training k-space; on
    leaderboard k-space (stored undersampled) it changes nothing.
    """
    mask = np.asarray(mask, dtype=np.float32)
    masked = torch.view_as_real(torch.from_numpy(kspace * mask.astype(np.complex64)))
    return masked, torch.from_numpy(mask).reshape(1, 1, -1, 1)


class SliceDataset(torch.utils.data.Dataset):
    """Every slice of ``volumes`` (which must have targets); items are fetched by ``(index, sample_seed)``.

    ``mask``: ``fixed`` uses the challenge pattern of the file's acceleration, ``file`` the stored mask,
    ``helper`` draws from ``helper`` with the sample seed (a new mask per epoch and slice).
    """

    def __init__(self, volumes: Sequence[MriVolume], mask: MaskKind = "fixed", helper: HelperMaskSampler | None = None):
        if mask == "helper" and helper is None:
            raise ValueError("mask 'helper' needs a HelperMaskSampler")
        for volume in volumes:
            if volume.target_path is None:
                raise DataError(f"{volume.kspace_path}: no target image file, so it cannot be trained on")
            if volume.anatomy is None:
                raise DataError(f"{volume.kspace_path}: file name must start with brain_ or knee_ "
                                "(the leaderboard metric's foreground threshold depends on it)")
        self.volumes = list(volumes)
        self.mask = mask
        self.helper = helper
        self.index = slice_index(self.volumes)
        self.reader = MriReader()

    def __len__(self) -> int:
        return len(self.index)

    def line_mask(self, volume: MriVolume, sample_seed: int) -> np.ndarray:
        """The (W,) column mask of one item."""
        if self.mask == "file":
            return self.reader.mask(volume)
        if self.mask == "helper":
            return self.helper(volume.width, sample_seed, acceleration=volume.acceleration)
        return fixed_pattern(volume.width, volume.acceleration)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, sample_seed = key
        v, s = self.index[index]
        volume = self.volumes[v]
        kspace, mask = masked_kspace(self.reader.kspace(volume, s), self.line_mask(volume, sample_seed))
        return {
            "masked_kspace": kspace,
            "mask": mask,
            "target": torch.from_numpy(self.reader.target(volume, s)),
            "max_value": torch.tensor(self.reader.max_value(volume), dtype=torch.float32),
            "anatomy": volume.anatomy,
            "fname": volume.name,
            "slice": s,
        }
