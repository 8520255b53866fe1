"""MRAugment (Fabian et al., ICML 2021): physics-aware data augmentation of multi-coil k-space.

Augmenting the coil *images* and recomputing k-space and target from them keeps the pair consistent: the
network sees a new, plausible acquisition whose undersampling (applied later, by the dataset) and whose
RSS target both follow the transformed anatomy. Every coil gets the same transform, so coil-sensitivity
relations are preserved.

Pipeline of :func:`augment_kspace`: ``im = ifft2c(kspace)`` -> :func:`apply_transform` on the real and
imaginary parts of every coil as channels -> ``target = RSS(im)`` centre-cropped or zero-padded to the
target shape -> ``fft2c(im)``.

Transform order (MRAugment's): the pixel-preserving transforms first, exactly on the pixel grid (fliph,
flipv, rot90, integer translation with reflect padding), then the interpolating ones (rotation, shear,
scaling) as ONE combined affine, so the image is resampled once. The affine runs on a reflect-padded
image (padding from the affine's corners, so no zero fill reaches the crop) and is centre-cropped back;
optionally on an image upsampled by ``upsample_factor`` to limit aliasing.

Randomness: only from the numpy ``Generator`` the caller passes (seeded per seed, epoch and sample), in the
order documented in :func:`draw_transform`, so one generator state always gives one transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat
from torch import Tensor

from podium.recipe import Strict
from podium.tasks.mri.fft import center_crop, crop_or_pad, fft2c, ifft2c, rss
from podium.tasks.mri.masks import schedule_probability

Interpolation = Literal["bilinear", "bicubic"]
# pixels a kernel reads beyond the sampled point: the margin the reflect padding adds around the affine
_KERNEL_REACH = {"bilinear": 1, "bicubic": 2}


class AugmentWeights(Strict):
    """Relative rate of each transform: it fires when ``u < weight * p`` (u ~ U[0, 1)), so 0 turns it off."""

    fliph: NonNegativeFloat = 1.0
    flipv: NonNegativeFloat = 1.0
    rot90: NonNegativeFloat = 1.0
    translation: NonNegativeFloat = 1.0
    rotation: NonNegativeFloat = 1.0
    shearing: NonNegativeFloat = 1.0
    scaling: NonNegativeFloat = 1.0


class AugmentConfig(Strict):
    """The ``augment:`` section of an MRI train stage; MRAugment's defaults (``p_max: 0`` = off).

    Axis names follow MRAugment: ``x`` is the first image axis (rows, height), ``y`` the second (columns).
    """

    schedule: Literal["constant", "ramp", "exp"] = "exp"
    p_max: float = Field(0.0, ge=0.0, le=1.0)
    delay: int = Field(0, ge=0)
    exp_decay: float = Field(5.0, gt=0.0)
    max_epochs: int | None = Field(None, ge=1)
    weights: AugmentWeights = AugmentWeights()
    max_translation_x: float = Field(0.125, ge=0.0, le=1.0)
    max_translation_y: float = Field(0.125, ge=0.0, le=1.0)
    # GeekSeek's Gaussian shift: when set, both shifts are round(N(0, std)) pixels instead of the uniform fractions
    translation_std_px: float | None = Field(None, ge=0.0)
    max_rotation: float = Field(180.0, ge=0.0, le=180.0)
    max_shearing_x: float = Field(15.0, ge=0.0, lt=90.0)
    max_shearing_y: float = Field(15.0, ge=0.0, lt=90.0)
    max_scaling: float = Field(0.25, ge=0.0, lt=1.0)
    interpolation: Interpolation = "bilinear"
    upsample: bool = False
    upsample_factor: int = Field(2, ge=1)
    upsample_interpolation: Interpolation = "bilinear"

    def probability(self, epoch: int, max_epochs: int) -> float:
        """p(epoch) of the schedule; ``max_epochs`` (the trainer's) is T unless this config sets its own."""
        return schedule_probability(
            epoch,
            schedule=self.schedule,
            p_max=self.p_max,
            delay=self.delay,
            max_epochs=self.max_epochs or max_epochs,
            exp_decay=self.exp_decay,
        )


# Team GeekSeek's MRAugmenter (SNU FastMRI 2025, configs/aug/mraugment.yaml), as a recipe's ``augment:``.
# Its "shift std 5 px" is a Gaussian shift, kept as such (translation_std_px) rather than turned into a
# uniform fraction of the image, which would change with every image size. max_epochs stays None: the
# train stage's trainer.max_epochs (50 in GeekSeek's run, the value its schedule used).
GEEKSEEK: dict = {
    "schedule": "ramp",
    "p_max": 0.7,
    "delay": 5,
    "weights": {
        "fliph": 0.5,
        "flipv": 0.5,
        "rot90": 0.0,
        "translation": 0.2,
        "rotation": 0.25,
        "shearing": 0.5,
        "scaling": 0.5,
    },
    "translation_std_px": 5.0,
    "max_rotation": 15.0,
    "max_shearing_x": 10.0,
    "max_shearing_y": 10.0,
    "max_scaling": 0.15,
    "interpolation": "bilinear",
}


@dataclass(frozen=True)
class Transform:
    """One drawn augmentation: ``None`` / ``False`` = did not fire.

    rot90: counter-clockwise quarter turns k (``torch.rot90`` / ``np.rot90`` over the image axes).
    shift: integer (rows, cols) translation; positive moves the content down / right.
    angle: degrees, positive = clockwise as displayed (row 0 at the top), torchvision ``TF.affine``'s sign.
    shear: (x, y) degrees, ``TF.affine``'s shear; scale: > 1 enlarges the anatomy.
    """

    fliph: bool = False
    flipv: bool = False
    rot90: int | None = None
    shift: tuple[int, int] | None = None
    angle: float | None = None
    shear: tuple[float, float] | None = None
    scale: float | None = None

    @property
    def fired(self) -> tuple[str, ...]:
        """Field names of the transforms that fired, in application order."""
        names = ("fliph", "flipv", "rot90", "shift", "angle", "shear", "scale")
        return tuple(name for name in names if getattr(self, name) not in (None, False))

    @property
    def has_affine(self) -> bool:
        return self.angle is not None or self.shear is not None or self.scale is not None


def draw_transform(rng: np.random.Generator, p: float, cfg: AugmentConfig, shape: tuple[int, int]) -> Transform:
    """Draw one transform for an image of ``shape`` (H, W); ``p == 0`` draws nothing from ``rng``.

    Draw order, one ``u = rng.uniform()`` per transform, its parameters right after it when it fires:
    fliph; flipv; rot90 (k = ``rng.integers(1, 4)``); translation (x then y); rotation; shearing (x then
    y); scaling. Parameters: t_x = trunc(U(±max_translation_x)·H) rows, t_y = trunc(U(±max_translation_y)·W)
    columns (or round(N(0, translation_std_px)) each), both clamped to the image so reflect padding
    applies; angle U(±max_rotation); shear U(±max_shearing_x), U(±max_shearing_y); scale U(1 ± max_scaling).

    A quarter turn of a non-square image would change its shape (and which k-space lines a mask keeps),
    so there an odd k becomes k = 2 (half turn); k is still drawn, so the stream does not depend on shape.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augmentation probability must be in [0, 1], got {p}")
    if p == 0.0:
        return Transform()
    height, width = shape
    w = cfg.weights

    def fires(weight: float) -> bool:
        return bool(rng.uniform() < weight * p)

    def uniform(limit: float) -> float:
        return float(rng.uniform(-limit, limit))

    fliph = fires(w.fliph)
    flipv = fires(w.flipv)
    rot90 = None
    if fires(w.rot90):
        rot90 = int(rng.integers(1, 4))
        if height != width and rot90 % 2:
            rot90 = 2
    shift = None
    if fires(w.translation):
        if cfg.translation_std_px is None:
            t_x, t_y = int(uniform(cfg.max_translation_x) * height), int(uniform(cfg.max_translation_y) * width)
        else:
            t_x, t_y = (round(float(rng.normal(0.0, cfg.translation_std_px))) for _ in range(2))
        shift = (int(np.clip(t_x, 1 - height, height - 1)), int(np.clip(t_y, 1 - width, width - 1)))
    angle = uniform(cfg.max_rotation) if fires(w.rotation) else None
    shear = (uniform(cfg.max_shearing_x), uniform(cfg.max_shearing_y)) if fires(w.shearing) else None
    scale = 1.0 + uniform(cfg.max_scaling) if fires(w.scaling) else None
    return Transform(fliph, flipv, rot90, shift, angle, shear, scale)


def translate(images: Tensor, shift: tuple[int, int]) -> Tensor:
    """Integer shift of a real (N, H, W) stack by (rows, cols); the uncovered border is reflect-padded."""
    dy, dx = shift
    h, w = images.shape[-2:]
    padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), mode="reflect")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + h, left : left + w]


def affine_matrix(angle: float, shear: tuple[float, float], scale: float) -> Tensor:
    """Forward 2x2 map (float64) in centred pixel coordinates (x right, y down): ``scale·R·SHy·SHx``.

    The composition is torchvision ``TF.affine``'s, so angles and shears mean what they mean there:
    R = [[cos a, -sin a], [sin a, cos a]] (clockwise on screen for a > 0), SHx = [[1, -tan sx], [0, 1]],
    SHy = [[1, 0], [-tan sy, 1]].
    """
    a, sx, sy = (math.radians(v) for v in (angle, *shear))
    rotation = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    shear_x = torch.tensor([[1.0, -math.tan(sx)], [0.0, 1.0]], dtype=torch.float64)
    shear_y = torch.tensor([[1.0, 0.0], [-math.tan(sy), 1.0]], dtype=torch.float64)
    return scale * rotation @ shear_y @ shear_x


def warp(images: Tensor, matrix: Tensor, interpolation: Interpolation = "bilinear") -> Tensor:
    """Apply the forward ``matrix`` about the image centre to a real (N, H, W) stack; zeros outside.

    ``affine_grid`` / ``grid_sample`` with ``align_corners=False`` put the centre at ((W-1)/2, (H-1)/2) as
    ``TF.affine`` does (which has no bicubic mode for tensors, hence this). Normalised coordinates are
    2x/W and 2y/H, so the sampling matrix is ``S · matrix⁻¹ · S⁻¹`` with S = diag(2/W, 2/H).
    """
    h, w = images.shape[-2:]
    to_unit = torch.diag(torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64))
    theta = to_unit @ torch.linalg.inv(matrix) @ torch.linalg.inv(to_unit)
    theta = F.pad(theta, (0, 1)).to(images.dtype)[None]
    grid = F.affine_grid(theta, [1, images.shape[0], h, w], align_corners=False)
    return F.grid_sample(images[None], grid, mode=interpolation, padding_mode="zeros", align_corners=False)[0]


def affine(
    images: Tensor, angle: float, shear: tuple[float, float], scale: float, interpolation: Interpolation = "bilinear"
) -> Tensor:
    """Rotation + shear + scaling of a real (N, H, W) stack in one resampling, without zero fill.

    The source of every output pixel is ``matrix⁻¹ · corner`` at the extremes, so padding each side by how
    far those corners (plus the kernel's reach) fall outside the image keeps the output inside reflected
    anatomy. Reflect padding is limited to size - 1 per side; beyond that (extreme shears) zeros appear.
    """
    h, w = images.shape[-2:]
    matrix = affine_matrix(angle, shear, scale)
    corners = torch.tensor([[sx * (w - 1) / 2, sy * (h - 1) / 2] for sx in (-1, 1) for sy in (-1, 1)]).double()
    reach = (corners @ torch.linalg.inv(matrix).T).abs().amax(0)
    margin = _KERNEL_REACH[interpolation]
    pad_x = min(max(math.ceil(reach[0].item() - (w - 1) / 2) + margin, 0), w - 1)
    pad_y = min(max(math.ceil(reach[1].item() - (h - 1) / 2) + margin, 0), h - 1)
    padded = F.pad(images, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    return center_crop(warp(padded, matrix, interpolation), (h, w))


def apply_transform(images: Tensor, t: Transform, cfg: AugmentConfig) -> Tensor:
    """Apply ``t`` to a real (N, H, W) stack (every channel alike), in MRAugment's order; shape is kept."""
    if t.fliph:
        images = images.flip(-1)
    if t.flipv:
        images = images.flip(-2)
    if t.rot90 is not None:
        images = torch.rot90(images, t.rot90, dims=(-2, -1))
    if t.shift is not None:
        images = translate(images, t.shift)
    if not t.has_affine:
        return images
    size = images.shape[-2:]
    if cfg.upsample:
        images = F.interpolate(
            images[None], scale_factor=cfg.upsample_factor, mode=cfg.upsample_interpolation, align_corners=False
        )[0]
    scale = 1.0 if t.scale is None else t.scale
    images = affine(images, t.angle or 0.0, t.shear or (0.0, 0.0), scale, cfg.interpolation)
    if cfg.upsample:
        images = F.interpolate(
            images[None], size=size, mode=cfg.upsample_interpolation, align_corners=False, antialias=True
        )[0]
    return images


def augment_kspace(
    kspace: Tensor, target_shape: tuple[int, int], p: float, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[Tensor, Tensor]:
    """Augment one complex (coils, H, W) k-space slice -> (augmented k-space, float32 RSS target).

    The target is the RSS of the augmented coil images, centre-cropped or zero-padded to ``target_shape``.
    When no transform fires (always when ``p == 0``, which draws nothing) ``kspace`` itself is returned,
    not a round trip through the FFTs, so recipes without augmentation keep bit-identical inputs.
    """
    if kspace.ndim != 3 or not kspace.is_complex():
        raise ValueError(f"expected complex k-space (coils, H, W), got {tuple(kspace.shape)} {kspace.dtype}")
    coils, h, w = kspace.shape
    t = draw_transform(rng, p, cfg, (h, w))
    if not t.fired:
        return kspace, crop_or_pad(rss(ifft2c(kspace), dim=0), target_shape).float()
    channels = torch.view_as_real(ifft2c(kspace)).permute(0, 3, 1, 2).reshape(2 * coils, h, w)
    channels = apply_transform(channels, t, cfg)
    images = torch.view_as_complex(channels.reshape(coils, 2, h, w).permute(0, 2, 3, 1).contiguous())
    return fft2c(images), crop_or_pad(rss(images, dim=0), target_shape).float()
