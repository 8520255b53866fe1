"""E2E VarNet against fastMRI's reference, its identity under full sampling, the SSIM loss, the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from podium.errors import ConfigError
from podium.tasks.mri.fft import as_complex, center_crop, fft2c, ifft2c, rss
from podium.tasks.mri.losses import SSIMLoss
from podium.tasks.mri.models import create_model, model_names
from podium.tasks.mri.models.varnet import VarNet, center_band

TINY = {"num_cascades": 2, "sens_chans": 4, "sens_pools": 2, "chans": 4, "pools": 2}
COILS = 4


def _kspace(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, COILS, height, width, 2, generator=torch.Generator().manual_seed(seed))


def _randomise(model: torch.nn.Module) -> None:
    """Non-default eta and non-zero 1x1 biases, so every parameter matters to the comparison."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("dc_weight") or name.endswith(".bias"):
                p.uniform_(0.2, 0.8)


def test_fft_round_trip_is_orthonormal_and_views_agree() -> None:
    x = torch.randn(2, 3, 8, 6, 2, dtype=torch.float64)
    z = as_complex(x)
    torch.testing.assert_close(ifft2c(fft2c(z)), z)
    torch.testing.assert_close(as_complex(fft2c(x)), fft2c(z))
    torch.testing.assert_close(rss(fft2c(z).flatten(-2), dim=-1), rss(z.flatten(-2), dim=-1))  # Parseval
    assert fft2c(torch.ones(1, 4, 4, dtype=torch.complex64))[0, 2, 2].real == pytest.approx(4.0)  # DC at H//2


def test_center_crop_matches_fastmri_offsets_and_rejects_too_large() -> None:
    transforms = pytest.importorskip("fastmri.data.transforms")
    x = torch.arange(7 * 9.0).reshape(7, 9)
    torch.testing.assert_close(center_crop(x, (4, 4)), transforms.center_crop(x, (4, 4)))
    with pytest.raises(ValueError, match="7 x 9 to 8 x 8"):
        center_crop(x, 8)


@pytest.mark.parametrize(("height", "width"), [(32, 24), (30, 21)])
def test_matches_fastmri_varnet_with_the_same_weights(height: int, width: int) -> None:
    fastmri_models = pytest.importorskip("fastmri.models")
    from fastmri.data.subsample import EquiSpacedMaskFunc
    from fastmri.data.transforms import apply_mask
    from fastmri.data.transforms import center_crop as fastmri_crop

    torch.manual_seed(0)
    reference = fastmri_models.VarNet(**TINY).eval()
    _randomise(reference)
    model = VarNet(**TINY, crop_size=(16, 16)).eval()
    ref_state, state = reference.state_dict(), model.state_dict()
    assert list(state) == list(ref_state)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in ref_state.items()}
    model.load_state_dict(ref_state)

    masked, mask, num_low = apply_mask(_kspace(2, height, width)[0], EquiSpacedMaskFunc([0.25], [4]), seed=3)
    masked = torch.stack([masked, 2 * masked])
    mask = mask.bool()[None].expand(2, -1, -1, -1, -1)
    assert 0 < mask.sum() < width
    with torch.no_grad():
        for low in (None, num_low):
            expected = fastmri_crop(reference(masked, mask, low), (16, 16))
            got = model(masked, mask, low)
            assert got.shape == (2, 16, 16)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_center_band_detects_the_symmetric_fully_sampled_run() -> None:
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 5:11] = True  # centre 8: 3 lines left, 3 right -> 6 lines from 5
    mask[1, 7:12] = True  # 1 line left, 4 right -> 2 lines from 7
    start, count = center_band(mask)
    assert start.tolist() == [5, 7] and count.tolist() == [6, 2]
    start, count = center_band(torch.ones(1, 16, dtype=torch.bool))
    assert start.tolist() == [0] and count.tolist() == [16]
    start, count = center_band(mask, num_low_frequencies=4)
    assert start.tolist() == [6, 6] and count.tolist() == [4, 4]


def test_fully_sampled_with_zero_regulariser_returns_the_input_image() -> None:
    torch.manual_seed(0)
    model = VarNet(**TINY, crop_size=(20, 16)).eval()
    _randomise(model)
    for cascade in model.cascades:
        cascade.model.register_forward_hook(lambda module, inputs, output: torch.zeros_like(output))
    kspace = _kspace(2, 32, 24, seed=1)
    mask = torch.ones(2, 1, 1, 24, 1, dtype=torch.bool)
    with torch.no_grad():
        got = model(kspace, mask)
    expected = center_crop(rss(ifft2c(as_complex(kspace)), dim=1), (20, 16))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_gradients_reach_every_parameter() -> None:
    model = VarNet(**TINY, crop_size=16)
    _randomise(model)
    mask = torch.zeros(1, 1, 1, 24, 1, dtype=torch.bool)
    mask[..., ::3, :] = True
    mask[..., 10:14, :] = True
    model(_kspace(1, 32, 24) * mask, mask).mean().backward()
    # The first cascade starts at k = k0, so its data-consistency term, and eta's gradient, is zero.
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == ["cascades.0.dc_weight"]


def _skimage_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """The slow reference: skimage's full map, cropped by 3 px each side (valid windows), in float64."""
    _, full = structural_similarity(
        x.astype(np.float64), y.astype(np.float64), win_size=7, use_sample_covariance=True,
        data_range=data_range, full=True,
    )
    return float(full[3:-3, 3:-3].mean())


def test_ssim_loss_is_zero_for_identical_images() -> None:
    x = torch.rand(3, 1, 20, 18)
    assert SSIMLoss()(x, x, torch.ones(3)).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_loss_matches_skimage_with_each_samples_data_range() -> None:
    rng = np.random.default_rng(0)
    target = rng.random((2, 24, 20)).astype(np.float32) * np.array([1.0, 50.0], np.float32)[:, None, None]
    output = (target + rng.normal(0, 0.1, target.shape) * target.max(axis=(1, 2), keepdims=True)).astype(np.float32)
    data_range = target.max(axis=(1, 2))
    expected = 1 - np.mean([_skimage_ssim(o, t, r) for o, t, r in zip(output, target, data_range, strict=True)])

    loss = SSIMLoss()
    got = loss(torch.from_numpy(output), torch.from_numpy(target), torch.from_numpy(data_range))
    assert got.item() == pytest.approx(expected, abs=1e-5)
    got_4d = loss(torch.from_numpy(output)[:, None], torch.from_numpy(target)[:, None], torch.from_numpy(data_range))
    assert got_4d.item() == pytest.approx(expected, abs=1e-5)
    swapped = loss(torch.from_numpy(output), torch.from_numpy(target), torch.from_numpy(data_range[::-1].copy()))
    assert abs(swapped.item() - expected) > 1e-3


def test_registry_builds_varnet_and_names_the_models_on_a_typo() -> None:
    model = create_model("varnet", **TINY, crop_size=8)
    assert isinstance(model, VarNet) and len(model.cascades) == 2
    assert "varnet" in model_names()
    with pytest.raises(ConfigError, match=r"unknown MRI model 'varnett' \(models: .*varnet"):
        create_model("varnett")
