"""Undersampling masks: fastMRI's families, the SNU challenge's fixed pattern and the robust Helper sampler.

Masks are computed on the fly from a seed, never cached on disk: the seed write-ups lost training runs to
mask cache files that "got corrupted". Every mask here is a 1-D float32 array over the k-space columns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from fastmri.data.subsample import (
    EquispacedMaskFractionFunc,
    EquiSpacedMaskFunc,
    MagicMaskFractionFunc,
    MagicMaskFunc,
    MaskFunc,
    RandomMaskFunc,
)

from podium.errors import ConfigError

MASK_FAMILIES: dict[str, type[MaskFunc]] = {
    "random": RandomMaskFunc,
    "equispaced": EquiSpacedMaskFunc,
    "equispaced_fraction": EquispacedMaskFractionFunc,
    "magic": MagicMaskFunc,
    "magic_fraction": MagicMaskFractionFunc,
}
FIXED_CENTER_FRACTION = 0.08
ACC4_MIN_FRACTION = 0.24
SCHEDULES = ("constant", "ramp", "exp")


def fastmri_mask_func(
    family: str,
    center_fractions: Sequence[float],
    accelerations: Sequence[int],
    *,
    allow_any_combination: bool = False,
    seed: int | None = None,
) -> MaskFunc:
    """A ``fastmri.data.subsample`` mask function by family name (the package's own semantics)."""
    if family not in MASK_FAMILIES:
        raise ConfigError(f"mask family: got {family!r}, expected one of {sorted(MASK_FAMILIES)}")
    return MASK_FAMILIES[family](
        list(center_fractions), list(accelerations), allow_any_combination=allow_any_combination, seed=seed
    )


def volume_seed(fname: str | os.PathLike) -> tuple[int, ...]:
    """fastMRI's validation seed: every slice of a volume gets the same mask, whatever the order."""
    return tuple(map(ord, Path(fname).name))


def sample_line_mask(
    mask_func: MaskFunc,
    width: int,
    *,
    seed: int | tuple[int, ...] | None = None,
    offset: int | None = None,
) -> tuple[np.ndarray, int]:
    """Draw one column mask of ``width`` lines from a fastMRI mask function -> (mask, num_low_frequencies)."""
    mask, num_low = mask_func((1, 1, width, 2), offset=offset, seed=seed)
    return mask.numpy().reshape(width).astype(np.float32), int(num_low)


def centre_block(width: int, fraction: float = FIXED_CENTER_FRACTION) -> np.ndarray:
    """The challenge's fully sampled centre: ``round(fraction W)`` lines from ``(W - (round(fraction W) - 1)) // 2``."""
    num_center = round(fraction * width)
    start = (width - (num_center - 1)) // 2
    mask = np.zeros(width, dtype=np.float32)
    mask[start : start + num_center] = 1
    return mask


def fixed_pattern(width: int, acceleration: int) -> np.ndarray:
    """The pattern of every public SNU challenge file (the one the Hacker model trains on).

    A centre block of ``round(0.08 W)`` lines starting at ``(W - (round(0.08 W) - 1)) // 2``, plus every
    ``acc``-th line starting at ``(W // 2) % acc``.
    """
    if acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    mask = centre_block(width)
    mask[(width // 2) % acceleration :: acceleration] = 1
    return mask


def acceleration_from_mask(mask: np.ndarray) -> int:
    """The challenge's read-back rule: sampled fraction > 0.24 -> 4, else 8."""
    fraction = np.count_nonzero(np.asarray(mask)) / np.asarray(mask).size
    return 4 if fraction > ACC4_MIN_FRACTION else 8


def is_fixed_pattern(mask: np.ndarray) -> bool:
    """True when ``mask`` is exactly the challenge's fixed pattern for its width and acceleration.

    This is the router's test: such slices go to the Hacker experts, all others to the Helper experts.
    """
    line = np.asarray(mask).reshape(-1) != 0
    expected = fixed_pattern(line.size, acceleration_from_mask(line)) != 0
    return bool(np.array_equal(line, expected))


def schedule_probability(
    epoch: int, *, schedule: str, p_max: float, delay: int = 0, max_epochs: int = 1, exp_decay: float = 5.0
) -> float:
    """MRAugment's schedule: 0 before ``delay``, then ``constant`` p_max, a linear ``ramp`` or ``exp``."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule: got {schedule!r}, expected one of {list(SCHEDULES)}")
    if epoch < delay:
        return 0.0
    if schedule == "constant":
        return p_max
    span = max(max_epochs - delay, 1)
    if schedule == "ramp":
        return min((epoch - delay) / span, 1.0) * p_max
    c = exp_decay / span
    return p_max / (1 - math.exp(-span * c)) * (1 - math.exp(-(epoch - delay) * c))


class HelperMaskSampler:
    """Masks for the robust "Helper" model (team sMaRtIfy's mask_augment.py): off the fixed pattern.

    With probability ``p(epoch)`` (a schedule, :func:`schedule_probability`) a robust mask is drawn,
    otherwise the fixed pattern is used. A robust mask keeps the fixed pattern's centre block and adds,
    with probability ``equispaced_share``, every ``acc``-th line from a random start other than the fixed
    pattern's (so a robust mask never equals the fixed one and the broker can tell them apart), else each
    line independently with probability 1/acc. Its density stays on the side of the challenge's 0.24
    threshold that reads back as its acceleration (fastMRI's random family, which aims at 1/acc lines in
    all, would read an acc-4 mask as acc 8 about half the time). Each draw depends only on ``seed``.
    """

    def __init__(
        self,
        accelerations: Sequence[int] = (4, 8),
        center_fraction: float = FIXED_CENTER_FRACTION,
        equispaced_share: float = 0.5,
        schedule: str = "constant",
        p_max: float = 1.0,
        delay: int = 0,
        max_epochs: int = 1,
        exp_decay: float = 5.0,
    ):
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule: got {schedule!r}, expected one of {list(SCHEDULES)}")
        if not accelerations or min(accelerations) < 2:
            raise ConfigError(f"accelerations: got {list(accelerations)}, expected integers >= 2")
        self.accelerations = tuple(accelerations)
        self.center_fraction = center_fraction
        self.equispaced_share = equispaced_share
        self.schedule = schedule
        self.p_max = p_max
        self.delay = delay
        self.max_epochs = max_epochs
        self.exp_decay = exp_decay

    def robust_probability(self, epoch: int) -> float:
        """Probability of a robust (non-fixed) mask at ``epoch``."""
        return schedule_probability(
            epoch,
            schedule=self.schedule,
            p_max=self.p_max,
            delay=self.delay,
            max_epochs=self.max_epochs,
            exp_decay=self.exp_decay,
        )

    def __call__(self, width: int, seed: int, epoch: int = 0, acceleration: int | None = None) -> np.ndarray:
        """One (W,) mask for a sample seed (e.g. from ``EpochSampler``); ``acceleration`` None draws one."""
        rng = np.random.default_rng(seed)
        acc = int(rng.choice(self.accelerations)) if acceleration is None else acceleration
        if acc < 2:
            raise ValueError(f"acceleration must be >= 2, got {acc}")
        if rng.random() >= self.robust_probability(epoch):
            return fixed_pattern(width, acc)
        mask = centre_block(width, self.center_fraction)
        if rng.random() < self.equispaced_share:
            starts = [s for s in range(acc) if s != (width // 2) % acc]
            mask[int(rng.choice(starts)) :: acc] = 1
        else:
            mask[rng.random(width) < 1 / acc] = 1
        return mask


class MaskAugmenter:
    """GeekSeek's mask augmentation: with probability p(epoch) (a schedule, :func:`schedule_probability`)
    an item's mask is replaced by a fresh one of the same acceleration, its family drawn from
    ``families`` by weight and its centre fraction from U[``center_fraction``]. Each draw depends only
    on the item's seed and epoch. ``MaskAugmentConfig`` validates the arguments."""

    def __init__(self, families: dict[str, float], center_fraction: tuple[float, float] = (0.07, 0.10),
                 schedule: str = "ramp", p_max: float = 0.0, delay: int = 0, exp_decay: float = 5.0,
                 max_epochs: int | None = None):
        self.names = list(families)
        weights = np.array([families[n] for n in self.names], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.center_fraction = center_fraction
        self.schedule, self.p_max, self.delay, self.exp_decay = schedule, p_max, delay, exp_decay
        self.max_epochs = max_epochs

    def probability(self, epoch: int, max_epochs: int) -> float:
        return schedule_probability(epoch, schedule=self.schedule, p_max=self.p_max, delay=self.delay,
                                    max_epochs=self.max_epochs or max_epochs, exp_decay=self.exp_decay)

    def draw(self, width: int, acceleration: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """(mask, family) of one fresh mask."""
        family = self.names[int(rng.choice(len(self.names), p=self.weights))]
        fraction = float(rng.uniform(*self.center_fraction))
        words = tuple(int(w) for w in rng.integers(0, 2**32, size=2))
        return sample_line_mask(fastmri_mask_func(family, [fraction], [acceleration]), width, seed=words)[0], family

    def __call__(self, mask: np.ndarray, acceleration: int, seed: int, epoch: int, max_epochs: int) -> np.ndarray:
        p = self.probability(epoch, max_epochs)
        if p <= 0:
            return mask
        rng = np.random.default_rng([seed, 0x6D61736B])  # "mask": a stream of its own beside the item's others
        if rng.random() >= p:
            return mask
        return self.draw(len(mask), acceleration, rng)[0]
