"""MRAugment: each transform against numpy / torchvision references, schedules, rng discipline, targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from pydantic import ValidationError
from torchvision.transforms import InterpolationMode

from podium.tasks.mri.augment import (
    GEEKSEEK,
    AugmentConfig,
    Transform,
    affine,
    affine_matrix,
    apply_transform,
    augment_kspace,
    draw_transform,
    translate,
    warp,
)
from podium.tasks.mri.fft import crop_or_pad

CFG = AugmentConfig()
SCHEDULES = ("constant", "ramp", "exp")
NAMES = ("fliph", "flipv", "rot90", "translation", "rotation", "shearing", "scaling")


def only(name: str, **limits: float) -> AugmentConfig:
    """A config where only transform ``name`` can fire."""
    return AugmentConfig(weights={n: float(n == name) for n in NAMES}, **limits)


def stack(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def kspace_of(coils: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(coils, h, w, generator=g), torch.randn(coils, h, w, generator=g))


def centred_ifft(kspace: torch.Tensor) -> torch.Tensor:
    """Independent centred orthonormal inverse FFT over the last two dims."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=dims), norm="ortho"), dim=dims)


# --- pixel-preserving transforms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "reference"),
    [
        (Transform(fliph=True), lambda a: a[..., ::-1]),
        (Transform(flipv=True), lambda a: a[..., ::-1, :]),
        (Transform(rot90=1), lambda a: np.rot90(a, 1, axes=(-2, -1))),
        (Transform(rot90=2), lambda a: np.rot90(a, 2, axes=(-2, -1))),
        (Transform(rot90=3), lambda a: np.rot90(a, 3, axes=(-2, -1))),
        (Transform(fliph=True, flipv=True), lambda a: a[..., ::-1, ::-1]),
    ],
)
def test_pixel_preserving_transforms_match_numpy(t, reference):
    x = stack(2, 5, 5)
    np.testing.assert_array_equal(apply_transform(x, t, CFG).numpy(), reference(x.numpy()))


def test_translation_by_one_row_down_two_columns_left_reflects_the_border():
    a = np.arange(4 * 5, dtype=np.float32).reshape(1, 4, 5)
    # content moves down 1 row and left 2 columns; the rows / columns it uncovers are mirror images
    expected = np.pad(a, ((0, 0), (1, 0), (0, 2)), mode="reflect")[:, :4, 2:7]
    np.testing.assert_array_equal(translate(torch.from_numpy(a), (1, -2)).numpy(), expected)
    np.testing.assert_array_equal(expected[0, 1:, :3], a[0, :3, 2:])
    shifted = apply_transform(torch.from_numpy(a), Transform(shift=(1, -2)), CFG)
    np.testing.assert_array_equal(shifted.numpy(), expected)


# --- the affine ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_identity_affine_returns_the_input(interpolation):
    x = stack(3, 9, 12)
    out = affine(x, 0.0, (0.0, 0.0), 1.0, interpolation)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    t = Transform(angle=0.0, shear=(0.0, 0.0), scale=1.0)
    torch.testing.assert_close(apply_transform(x, t, CFG), x, atol=1e-5, rtol=0)


def test_positive_angle_turns_clockwise_like_numpy_rot90_k_minus_1():
    x = stack(2, 8, 8)
    out = apply_transform(x, Transform(angle=90.0), CFG)
    expected = np.rot90(x.numpy(), -1, axes=(-2, -1))  # clockwise quarter turn
    np.testing.assert_allclose(out.numpy()[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5)


@pytest.mark.parametrize(
    ("angle", "shear", "scale"), [(30.0, (0.0, 0.0), 1.0), (0.0, (12.0, -7.0), 1.0), (-40.0, (7.0, 5.0), 1.2)]
)
def test_warp_matches_torchvision_affine(angle, shear, scale):
    x = stack(3, 11, 14)
    expected = TF.affine(
        x, angle=angle, translate=[0, 0], scale=scale, shear=list(shear), interpolation=InterpolationMode.BILINEAR
    )
    torch.testing.assert_close(warp(x, affine_matrix(angle, shear, scale)), expected, atol=1e-5, rtol=0)


def test_affine_zoom_out_and_rotation_never_shows_zero_fill():
    # a strictly positive image: any output pixel sampled outside the reflect padding would be ~0
    x = stack(2, 20, 30) + 0.5
    out = affine(x, 45.0, (15.0, 15.0), 0.75)
    assert out.shape == x.shape
    assert out.min() > 0.49


def test_upsampled_affine_keeps_shape_and_a_smooth_image():
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(20.0), indexing="ij")
    blob = torch.exp(-((yy - 11.5) ** 2 + (xx - 9.5) ** 2) / 40)[None]
    cfg = AugmentConfig(upsample=True, upsample_factor=2)
    out = apply_transform(blob, Transform(angle=0.0), cfg)
    assert out.shape == blob.shape
    torch.testing.assert_close(out, blob, atol=2e-2, rtol=0)


# --- schedule --------------------------------------------------------------------------------------------


def test_schedules_follow_mraugments_formulas():
    p_max, delay, t_max, decay = 0.6, 4, 24, 5.0
    cfgs = {s: AugmentConfig(schedule=s, p_max=p_max, delay=delay, exp_decay=decay) for s in SCHEDULES}
    for epoch in range(0, 30):
        if epoch < delay:
            assert all(c.probability(epoch, t_max) == 0.0 for c in cfgs.values())
            continue
        c = decay / (t_max - delay)
        assert cfgs["constant"].probability(epoch, t_max) == pytest.approx(p_max)
        ramp = min((epoch - delay) / (t_max - delay), 1) * p_max
        assert cfgs["ramp"].probability(epoch, t_max) == pytest.approx(ramp)
        expected_exp = p_max / (1 - math.exp(-(t_max - delay) * c)) * (1 - math.exp(-(epoch - delay) * c))
        assert cfgs["exp"].probability(epoch, t_max) == pytest.approx(expected_exp)
    # the config's own T beats the trainer's
    own = AugmentConfig(schedule="ramp", p_max=1.0, max_epochs=10)
    assert own.probability(5, 100) == pytest.approx(0.5)


# --- randomness ------------------------------------------------------------------------------------------


def test_draw_order_is_the_documented_one():
    cfg = AugmentConfig(translation_std_px=None)
    h, w = 16, 16
    t = draw_transform(np.random.default_rng(7), 1.0, cfg, (h, w))
    r = np.random.default_rng(7)
    r.uniform(), r.uniform()  # fliph, flipv fire (weight 1, p 1)
    r.uniform()
    k = int(r.integers(1, 4))
    r.uniform()
    t_x, t_y = int(r.uniform(-0.125, 0.125) * h), int(r.uniform(-0.125, 0.125) * w)
    r.uniform()
    angle = r.uniform(-180, 180)
    r.uniform()
    shear = (r.uniform(-15, 15), r.uniform(-15, 15))
    r.uniform()
    scale = 1 + r.uniform(-0.25, 0.25)
    assert t == Transform(True, True, k, (t_x, t_y), angle, shear, scale)


def test_same_seed_same_output_different_seed_different_output():
    k = kspace_of(3, 16, 12)
    cfg = AugmentConfig(p_max=1.0)
    a = augment_kspace(k, (10, 10), 1.0, np.random.default_rng(3), cfg)
    b = augment_kspace(k, (10, 10), 1.0, np.random.default_rng(3), cfg)
    c = augment_kspace(k, (10, 10), 1.0, np.random.default_rng(4), cfg)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[0], c[0])


def test_p_zero_returns_the_input_and_leaves_the_rng_untouched():
    k = kspace_of(2, 8, 6)
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    out, target = augment_kspace(k, (6, 6), 0.0, rng, AugmentConfig(p_max=1.0))
    assert rng.bit_generator.state == before
    assert torch.equal(out, k)
    expected = centred_ifft(k).abs().pow(2).sum(0).sqrt()[1:7, :]
    torch.testing.assert_close(target, expected, atol=1e-5, rtol=1e-5)
    assert target.dtype == torch.float32


# --- outputs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target_shape", [(10, 8), (20, 14)])
def test_target_is_the_rss_of_the_augmented_coil_images(target_shape):
    k = kspace_of(4, 16, 12)
    out, target = augment_kspace(k, target_shape, 1.0, np.random.default_rng(11), AugmentConfig())
    assert out.shape == k.shape and out.dtype == k.dtype
    full = centred_ifft(out).abs().pow(2).sum(0).sqrt()
    th, tw = target_shape
    if th <= 16:  # centre crop at fastMRI's offset
        expected = full[(16 - th) // 2 : (16 - th) // 2 + th, (12 - tw) // 2 : (12 - tw) // 2 + tw]
    else:  # centred zero padding
        expected = torch.zeros(th, tw)
        expected[(th - 16) // 2 : (th - 16) // 2 + 16, (tw - 12) // 2 : (tw - 12) // 2 + 12] = full
    assert target.dtype == torch.float32
    torch.testing.assert_close(target, expected, atol=1e-4, rtol=1e-4)


def test_every_coil_gets_the_same_transform():
    image = kspace_of(1, 12, 12, seed=1)[0]
    factors = torch.tensor([1.0, 2 - 1j, 0.5j], dtype=torch.complex64)
    k = factors[:, None, None] * image
    cfg = AugmentConfig()
    for seed in range(3):
        out, _ = augment_kspace(k, (12, 12), 1.0, np.random.default_rng(seed), cfg)
        images = centred_ifft(out)
        torch.testing.assert_close(images, factors[:, None, None] * images[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["fliph", "flipv", "rot90", "translation", "rotation", "shearing", "scaling"])
def test_weight_zero_never_fires_weight_one_always_fires(name):
    field = {"translation": "shift", "rotation": "angle", "shearing": "shear", "scaling": "scale"}.get(name, name)
    rng = np.random.default_rng(0)
    without = AugmentConfig(weights={name: 0.0})  # every other transform keeps weight 1
    never = [draw_transform(rng, 1.0, without, (8, 8)) for _ in range(300)]
    assert all(field not in t.fired and len(t.fired) == 6 for t in never)
    always = [draw_transform(rng, 1.0, only(name), (8, 8)) for _ in range(300)]
    assert all(t.fired == (field,) for t in always)


def test_rate_follows_weight_times_p():
    rng = np.random.default_rng(1)
    fired = sum(draw_transform(rng, 0.5, only("fliph"), (8, 8)).fliph for _ in range(4000))
    assert fired / 4000 == pytest.approx(0.5, abs=0.03)  # weight 1 * p 0.5
    fired = sum(draw_transform(rng, 0.8, AugmentConfig(weights={"fliph": 0.25}), (8, 8)).fliph for _ in range(4000))
    assert fired / 4000 == pytest.approx(0.2, abs=0.03)


def test_rot90_on_a_non_square_image_is_a_half_turn_and_keeps_the_shape():
    rng = np.random.default_rng(2)
    draws = [draw_transform(rng, 1.0, only("rot90"), (8, 6)).rot90 for _ in range(100)]
    assert set(draws) == {2}
    square = {draw_transform(rng, 1.0, only("rot90"), (6, 6)).rot90 for _ in range(100)}
    assert square == {1, 2, 3}
    k = kspace_of(2, 8, 6)
    out, _ = augment_kspace(k, (8, 6), 1.0, np.random.default_rng(0), only("rot90"))
    assert out.shape == k.shape
    expected = np.rot90(centred_ifft(k).numpy(), 2, axes=(-2, -1))
    np.testing.assert_allclose(centred_ifft(out).numpy(), expected, atol=1e-5)


def test_translations_scale_with_height_for_x_and_width_for_y():
    cfg = only("translation", max_translation_x=0.5, max_translation_y=0.0)
    rng = np.random.default_rng(0)
    shifts = [draw_transform(rng, 1.0, cfg, (40, 10)).shift for _ in range(200)]
    assert all(dx == 0 for _, dx in shifts)
    assert max(abs(dy) for dy, _ in shifts) > 10  # only rows can move, by up to 0.5 * H = 20


def test_geekseek_configuration_validates():
    cfg = AugmentConfig.model_validate(GEEKSEEK)
    assert (cfg.schedule, cfg.p_max, cfg.delay) == ("ramp", 0.7, 5)
    assert cfg.weights.rot90 == 0.0 and cfg.weights.translation == 0.2 and cfg.max_scaling == 0.15
    assert cfg.probability(4, 50) == 0.0 and cfg.probability(50, 50) == pytest.approx(0.7)
    shifts = [draw_transform(np.random.default_rng(s), 1.0, cfg, (64, 64)).shift for s in range(400)]
    rows = np.array([s[0] for s in shifts if s is not None], dtype=float)
    assert rows.std() == pytest.approx(5.0, rel=0.3)


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValidationError):
        AugmentConfig(aug_strength=0.5)
    with pytest.raises(ValidationError):
        AugmentConfig(weights={"fliph": -1.0})
    with pytest.raises(ValidationError):
        AugmentConfig(p_max=1.5)
    with pytest.raises(ValueError, match="probability"):
        draw_transform(np.random.default_rng(0), 1.5, CFG, (8, 8))


def test_crop_or_pad_per_axis():
    x = torch.arange(5 * 6.0).reshape(5, 6)
    out = crop_or_pad(x, (3, 9))
    assert out.shape == (3, 9)
    torch.testing.assert_close(out[:, 1:7], x[1:4])
    assert out[:, [0, 7, 8]].abs().sum() == 0
