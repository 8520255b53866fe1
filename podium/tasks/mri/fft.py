"""Centred orthonormal 2-D FFTs and the coil-combination helpers of multicoil MRI.

fastMRI's conventions: the k-space centre sits at (H // 2, W // 2) and ``norm="ortho"`` keeps energies
equal in both domains, so images and k-space from fastMRI files, checkpoints and code interoperate.
Tensors are complex (..., H, W) or fastMRI's real view (..., H, W, 2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

DIMS = (-2, -1)


def as_complex(x: Tensor) -> Tensor:
    """fastMRI's real view (..., 2) -> complex (...); copies only when the view is not contiguous."""
    return torch.view_as_complex(x.contiguous())


def as_real(x: Tensor) -> Tensor:
    """Complex (...) -> fastMRI's real view (..., 2), sharing memory."""
    return torch.view_as_real(x)


def _centred(transform: Callable[..., Tensor], x: Tensor, dims: tuple[int, ...]) -> Tensor:
    if not x.is_complex():
        return as_real(_centred(transform, as_complex(x), dims))
    x = torch.fft.ifftshift(x, dim=dims)
    x = transform(x, dim=dims, norm="ortho")
    return torch.fft.fftshift(x, dim=dims)


def fft2c(x: Tensor, dims: tuple[int, ...] = DIMS) -> Tensor:
    """Image -> k-space over the last two (spatial) dims, centred and orthonormal (``dims``: others)."""
    return _centred(torch.fft.fftn, x, dims)


def ifft2c(x: Tensor, dims: tuple[int, ...] = DIMS) -> Tensor:
    """k-space -> image over the last two (spatial) dims, centred and orthonormal (``dims``: others)."""
    return _centred(torch.fft.ifftn, x, dims)


def rss(x: Tensor, dim: int = 1, keepdim: bool = False) -> Tensor:
    """Root sum of squares over the coil dim: the standard coil combination (complex or magnitudes)."""
    power = x.real**2 + x.imag**2 if x.is_complex() else x**2
    return power.sum(dim, keepdim=keepdim).sqrt()


def center_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Centre crop of the last two dims; the offset ``(n - size) // 2`` is fastMRI's (and the challenge's)."""
    height, width = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if not (0 < height <= h and 0 < width <= w):
        raise ValueError(f"cannot centre-crop an image of {h} x {w} to {height} x {width}")
    top, left = (h - height) // 2, (w - width) // 2
    return x[..., top : top + height, left : left + width]


def crop_or_pad(x: Tensor, shape: tuple[int, int]) -> Tensor:
    """Centre crop (fastMRI's offset) or centred zero padding of the last two dims to ``shape``, per axis."""
    pads = []
    for size, target in zip(reversed(x.shape[-2:]), reversed(tuple(shape)), strict=True):
        before = (target - size) // 2 if target >= size else -((size - target) // 2)
        pads += [before, target - size - before]
    return F.pad(x, pads)
