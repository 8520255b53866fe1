"""Test-time augmentation on toy models whose outputs are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from podium.ensemble.tta import TTA_MODES, register_tta, tta_predict
from podium.errors import PodiumError

LN3 = math.log(3.0)
LN9 = math.log(9.0)


def corners() -> torch.Tensor:
    # One 1-channel 2x2 image [[a, b], [c, d]] with sigmoid(a, b, c, d) = 0.5, 0.75, 0.25, 0.9.
    return torch.tensor([[[[0.0, LN3], [-LN3, LN9]]]], dtype=torch.float64)


def top_left(images: torch.Tensor) -> torch.Tensor:
    """A deliberately non-invariant model: its one logit is the top-left pixel."""
    return images[:, 0, 0, 0].reshape(-1, 1)


def test_rot90_invariant_model_gives_identical_probabilities():
    # Global sum pooling of integer pixels is exact in any order, hence invariant to rotation.
    images = torch.randint(0, 256, (3, 1, 8, 8), generator=torch.Generator().manual_seed(0)).float()
    weights = torch.tensor([[0.01, -0.02, 0.003]])

    def pooled(x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(-2, -1)) * weights

    single = torch.softmax(pooled(images), dim=1)
    for activation in ("softmax", "sigmoid"):
        expected = single if activation == "softmax" else torch.sigmoid(pooled(images))
        out = tta_predict(pooled, images, mode="rot90", activation=activation)
        assert out.dtype == torch.float32
        assert torch.equal(out, expected)


def test_rot90_averages_the_four_quarter_turns():
    # torch.rot90 turns [[a, b], [c, d]] into [[b, d], [a, c]], [[d, c], [b, a]], [[c, a], [d, b]]:
    # the top-left pixel visits a, b, d, c -> mean sigmoid (0.5 + 0.75 + 0.9 + 0.25) / 4 = 0.6.
    out = tta_predict(top_left, corners(), mode="rot90", activation="sigmoid")
    assert out.dtype == torch.float64
    assert out.item() == pytest.approx(0.6, abs=1e-15)


def test_hflip_averages_identity_and_horizontal_flip():
    # hflip turns [[a, b], [c, d]] into [[b, a], [d, c]]: top-left a then b -> (0.5 + 0.75) / 2.
    # (A vertical flip would give (0.5 + 0.25) / 2 = 0.375.)
    out = tta_predict(top_left, corners(), mode="hflip", activation="sigmoid")
    assert out.item() == pytest.approx(0.625, abs=1e-15)


def test_activation_is_applied_before_averaging():
    # Raw logits a, b, d, c average to (0 + ln 3 + ln 9 - ln 3) / 4 = ln 9 / 4 without activation.
    raw = tta_predict(top_left, corners(), mode="rot90", activation=None)
    assert raw.item() == pytest.approx(LN9 / 4, abs=1e-15)
    assert tta_predict(top_left, corners(), mode="none", activation=None).item() == 0.0


def test_softmax_tta_over_two_classes():
    # Logits [p, -p] for the top-left pixel p; softmax class 0 = sigmoid(2p).
    # hflip views: p = 0 -> 0.5; p = ln 3 -> sigmoid(ln 9) = 0.9; mean 0.7.
    def two_class(images: torch.Tensor) -> torch.Tensor:
        p = top_left(images)
        return torch.cat([p, -p], dim=1)

    out = tta_predict(two_class, corners(), mode="hflip", activation="softmax")
    torch.testing.assert_close(out, torch.tensor([[0.7, 0.3]], dtype=torch.float64), rtol=0, atol=1e-15)


def test_unknown_mode_and_activation_are_refused():
    with pytest.raises(PodiumError, match="unknown mode 'vflip'"):
        tta_predict(top_left, corners(), mode="vflip")
    with pytest.raises(PodiumError, match="unknown activation 'relu'"):
        tta_predict(top_left, corners(), mode="none", activation="relu")


def test_registry_holds_the_modes_and_refuses_duplicates():
    assert {"none", "rot90", "hflip"} <= set(TTA_MODES)
    assert len(TTA_MODES["rot90"]()) == 4
    with pytest.raises(ValueError, match="already registered"):
        register_tta("rot90")(lambda: ())


def test_predict_dataset_keeps_order_across_batches_and_refuses_empty():
    from podium.ensemble.tta import predict_dataset


    images = torch.arange(5 * 4 * 4, dtype=torch.float32).reshape(5, 1, 4, 4) / 80
    dataset = [(img, i) for i, img in enumerate(images)]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    got = predict_dataset(model, dataset, batch_size=2, mode="hflip", activation="softmax")
    with torch.no_grad():
        expected = (torch.softmax(model(images), 1) + torch.softmax(model(images.flip(-1)), 1)) / 2
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-6)
    with pytest.raises(PodiumError, match="empty"):
        predict_dataset(model, [], batch_size=2)
