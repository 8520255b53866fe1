"""Masks: the challenge's fixed pattern to the line, acceleration read-back, seeds, the Helper sampler."""

from __future__ import annotations

import numpy as np
import pytest
from fastmri.data.subsample import EquiSpacedMaskFunc, RandomMaskFunc

from podium.errors import ConfigError
from podium.tasks.mri.masks import (
    HelperMaskSampler,
    MaskAugmenter,
    acceleration_from_mask,
    fastmri_mask_func,
    fixed_pattern,
    is_fixed_pattern,
    sample_line_mask,
    schedule_probability,
    volume_seed,
)

# (width, acc): (first centre line, last centre line, first equispaced line, lines sampled in total)
# 368: round(29.44) = 29 centre lines from (368 - 28) // 2 = 170; 184 % 4 = 184 % 8 = 0.
# 396: round(31.68) = 32 centre lines from (396 - 31) // 2 = 182; 198 % 4 = 2, 198 % 8 = 6.
FIXED = {
    (368, 4): (170, 198, 0, 114),
    (368, 8): (170, 198, 0, 72),
    (396, 4): (182, 213, 2, 123),
    (396, 8): (182, 213, 6, 77),
}


@pytest.mark.parametrize(("width", "acc"), sorted(FIXED))
def test_fixed_pattern_lines(width: int, acc: int) -> None:
    first, last, start, total = FIXED[(width, acc)]
    expected = set(range(first, last + 1)) | set(range(start, width, acc))
    mask = fixed_pattern(width, acc)
    assert mask.dtype == np.float32 and mask.shape == (width,)
    assert set(np.flatnonzero(mask).tolist()) == expected
    assert len(expected) == total


def test_fixed_pattern_explicit_lines_368_acc8() -> None:
    mask = fixed_pattern(368, 8)
    outside = [i for i in np.flatnonzero(mask).tolist() if not 170 <= i <= 198]
    assert outside[:5] == [0, 8, 16, 24, 32] and outside[-3:] == [344, 352, 360]
    assert np.flatnonzero(mask[170:199]).size == 29


@pytest.mark.parametrize(("width", "acc"), sorted(FIXED))
def test_fixed_pattern_is_fastmri_equispaced_at_the_challenge_offset(width: int, acc: int) -> None:
    mask, num_low = sample_line_mask(EquiSpacedMaskFunc([0.08], [acc]), width, offset=(width // 2) % acc)
    np.testing.assert_array_equal(mask, fixed_pattern(width, acc))
    assert num_low == FIXED[(width, acc)][1] - FIXED[(width, acc)][0] + 1


@pytest.mark.parametrize(("width", "acc"), sorted(FIXED))
def test_acceleration_read_back(width: int, acc: int) -> None:
    mask = fixed_pattern(width, acc)
    assert acceleration_from_mask(mask) == acc
    assert acceleration_from_mask(mask.astype(bool)) == acc
    assert is_fixed_pattern(mask)
    assert not is_fixed_pattern(np.roll(mask, 1))


def test_acceleration_threshold_is_strictly_above_024() -> None:
    mask = np.zeros(100)
    mask[:24] = 1
    assert acceleration_from_mask(mask) == 8
    mask[24] = 1
    assert acceleration_from_mask(mask) == 4


def test_volume_seed_is_the_file_name_codes() -> None:
    assert volume_seed("Data/val/kspace/brain_acc4_1.h5") == (
        98, 114, 97, 105, 110, 95, 97, 99, 99, 52, 95, 49, 46, 104, 53,
    )  # fmt: skip


def test_volume_seed_gives_every_slice_the_same_mask() -> None:
    """Two mask functions in different states agree for one file and disagree across files."""
    first = RandomMaskFunc([0.08], [4], seed=1)
    second = RandomMaskFunc([0.08], [4], seed=2)
    sample_line_mask(second, 396)
    a, _ = sample_line_mask(first, 396, seed=volume_seed("brain_acc4_7.h5"))
    b, _ = sample_line_mask(second, 396, seed=volume_seed("brain_acc4_7.h5"))
    c, _ = sample_line_mask(first, 396, seed=volume_seed("brain_acc4_8.h5"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("family", ["random", "equispaced", "equispaced_fraction", "magic", "magic_fraction"])
def test_fastmri_families_build_centre_and_seeded_masks(family: str) -> None:
    func = fastmri_mask_func(family, [0.08], [4])
    mask, num_low = sample_line_mask(func, 368, seed=(1, 2, 3))
    again, _ = sample_line_mask(fastmri_mask_func(family, [0.08], [4]), 368, seed=(1, 2, 3))
    np.testing.assert_array_equal(mask, again)
    assert num_low == 29
    assert mask[170:199].all()


def test_unknown_family_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'poisson'"):
        fastmri_mask_func("poisson", [0.08], [4])


def test_schedule_probability_values() -> None:
    assert schedule_probability(1, schedule="ramp", p_max=0.5, delay=2, max_epochs=12) == 0.0
    assert schedule_probability(7, schedule="ramp", p_max=0.5, delay=2, max_epochs=12) == 0.25
    assert schedule_probability(3, schedule="constant", p_max=0.7) == 0.7
    exp = schedule_probability(2, schedule="exp", p_max=1.0, max_epochs=10, exp_decay=5.0)
    assert exp == pytest.approx(0.6364086465588308, abs=1e-12)
    assert schedule_probability(10, schedule="exp", p_max=1.0, max_epochs=10) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="'cosine'"):
        schedule_probability(0, schedule="cosine", p_max=1.0)


def _is_equispaced(mask: np.ndarray, acc: int, first: int, last: int) -> int | None:
    """The start of mask's equispaced lines outside the centre block [first, last], or None."""
    outside = [i for i in np.flatnonzero(mask).tolist() if not first <= i <= last]
    start = outside[0]
    expected = [i for i in range(start, mask.size, acc) if not first <= i <= last]
    return start if start < acc and outside == expected else None


def test_helper_sampler_draws_outside_the_fixed_pattern() -> None:
    sampler = HelperMaskSampler()
    masks = [sampler(396, seed, acceleration=8) for seed in range(200)]
    np.testing.assert_array_equal(masks[17], sampler(396, 17, acceleration=8))
    assert not any(is_fixed_pattern(m) for m in masks)
    assert all(m[182:214].all() for m in masks)
    starts = [_is_equispaced(m, 8, 182, 213) for m in masks]
    equispaced = [s for s in starts if s is not None]
    assert 70 <= len(equispaced) <= 130
    assert sorted(set(equispaced)) == [0, 1, 2, 3, 4, 5, 7]


def test_helper_schedule_zero_gives_the_fixed_pattern() -> None:
    sampler = HelperMaskSampler(schedule="ramp", delay=5, max_epochs=10)
    for seed in range(10):
        mask = sampler(368, seed, epoch=3)
        assert is_fixed_pattern(mask)
        assert acceleration_from_mask(mask) in (4, 8)
    assert not is_fixed_pattern(sampler(368, 0, epoch=10, acceleration=4))


GEEKSEEK_FAMILIES = {"equispaced": 0.25, "equispaced_fraction": 0.25, "random": 0.25, "magic": 0.125,
                     "magic_fraction": 0.125}


def test_mask_augmentation_draws_only_the_listed_families_at_the_items_acceleration():
    augmenter = MaskAugmenter({"random": 3.0, "magic": 1.0, "equispaced": 0.0}, (0.07, 0.10), p_max=1.0)
    rng = np.random.default_rng(0)
    families = []
    for acc in (4, 8):
        fractions: dict[str, list[float]] = {}
        for _ in range(400):
            mask, family = augmenter.draw(396, acc, rng)
            families.append(family)
            fractions.setdefault(family, []).append(float(mask.mean()))
            assert mask.shape == (396,) and set(np.unique(mask)) <= {0.0, 1.0}
        for family, values in fractions.items():  # 1/acc of the lines, plus some of the 7-10 % centre
            assert 1 / acc - 0.01 <= np.mean(values) <= 1 / acc + 0.10, (family, acc, np.mean(values))
    counts = {f: families.count(f) for f in ("random", "magic", "equispaced")}
    assert counts["equispaced"] == 0 and 0.70 < counts["random"] / len(families) < 0.80


def test_mask_augmentation_follows_its_schedule_and_the_items_seed():
    augmenter = MaskAugmenter(GEEKSEEK_FAMILIES, schedule="ramp", p_max=0.7, delay=5)
    fixed = fixed_pattern(396, 4)
    # before the delay nothing changes; the ramp reaches p_max at epoch T
    assert all(np.array_equal(augmenter(fixed, 4, seed, 4, 50), fixed) for seed in range(50))
    assert augmenter.probability(5, 50) == 0 and augmenter.probability(50, 50) == pytest.approx(0.7)
    assert augmenter.probability(20, 50) == pytest.approx(0.7 * 15 / 45)
    replaced = [not np.array_equal(augmenter(fixed, 4, seed, 50, 50), fixed) for seed in range(400)]
    assert 0.63 < np.mean(replaced) < 0.77
    again = [not np.array_equal(augmenter(fixed, 4, seed, 50, 50), fixed) for seed in range(400)]
    assert replaced == again  # a pure function of (seed, epoch)
