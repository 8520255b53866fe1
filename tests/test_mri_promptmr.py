"""PromptMR+ (team sMaRtIfy): shapes, the team's sizes and state-dict names, checkpointing, gradients."""

from __future__ import annotations

import pytest
import torch

from podium.tasks.mri import MriTrain
from podium.tasks.mri.models import create_model, model_names

TINY = dict(num_cascades=2, n_feat0=4, feature_dim=(6, 8, 10), prompt_dim=(2, 4, 4), sens_n_feat0=4,
            sens_feature_dim=(4, 6, 8), sens_prompt_dim=(2, 2, 2), prompt_size=(4, 2, 2), n_enc_cab=(1, 1, 1),
            n_dec_cab=(1, 1, 1), n_bottleneck_cab=1, n_history=2)


def undersampled(batch: int = 1, coils: int = 3, height: int = 32, width: int = 24, acc: int = 4, seed: int = 0):
    """Random k-space under an equispaced mask with round(0.08 W) fully sampled centre columns."""
    g = torch.Generator().manual_seed(seed)
    kspace = torch.randn(batch, coils, height, width, 2, generator=g) * 1e-4
    mask = torch.zeros(batch, 1, 1, width, 1, dtype=torch.bool)
    mask[..., (width // 2) % acc :: acc, :] = True
    acs = round(0.08 * width)
    start = (width - acs + 1) // 2
    mask[..., start : start + acs, :] = True
    return kspace * mask, mask


def tiny(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("promptmr_plus", **{**TINY, "crop_size": None, **kwargs})


def default_model() -> torch.nn.Module:
    with torch.device("meta"):  # names and sizes without allocating
        return create_model("promptmr_plus")


def test_registry_has_promptmr_plus():
    assert "promptmr_plus" in model_names()


@pytest.mark.parametrize(("batch", "coils", "height", "width", "crop", "shape"), [
    (1, 3, 32, 24, None, (32, 24)),
    (2, 4, 36, 28, 20, (20, 20)),
    (2, 4, 36, 28, (40, 32), (40, 32)),  # smaller than the crop: zero-padded, as the team's center_crop
])
def test_forward_gives_a_nonnegative_image_per_slice(batch, coils, height, width, crop, shape):
    model = tiny(crop_size=crop).eval()
    kspace, mask = undersampled(batch, coils, height, width)
    with torch.no_grad():
        out = model(kspace, mask)
        single = model(kspace[:1], mask[:1])
    assert out.shape == (batch, *shape) and torch.isfinite(out).all() and (out >= 0).all()
    torch.testing.assert_close(out[:1], single, rtol=0, atol=1e-5 * float(single.max()))  # per-sample


def test_padding_to_a_larger_crop_leaves_zero_borders():
    model = tiny(crop_size=(40, 32)).eval()
    kspace, mask = undersampled(1, 3, 36, 28)
    with torch.no_grad():
        out = model(kspace, mask)
    assert (out[:, :2] == 0).all() and (out[:, -2:] == 0).all() and (out[..., :2] == 0).all()
    assert (out[:, 2:-2, 2:-2] > 0).any()


def test_adjacent_slices_give_the_centre_slice():
    model = tiny(num_adj_slices=3).eval()
    kspace, mask = undersampled(1, 3 * 2, 32, 24)
    with torch.no_grad():
        assert model(kspace, mask).shape == (1, 32, 24)


def test_adaptive_input_needs_three_buffers():
    with pytest.raises(ValueError, match="n_buffer"):
        create_model("promptmr_plus", n_buffer=2)


def test_parameter_count_is_the_teams():
    # Computed from the team's own class (utils/model/promptmr_plus.py, train.py defaults, num_adj_slices=1):
    # 6,014,207 parameters (the spec's 6.01 M), of which 88,128 are the fixed prompts and 28 the dummy tensors.
    model = default_model()
    assert sum(p.numel() for p in model.parameters()) == 6_014_207
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 6.0
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 6_014_207 - 88_128 - 28


def test_state_dict_names_are_the_teams():
    state = default_model().state_dict()
    assert len(state) == 1643  # the team's class: duplicates (sens_net_ckp, the shared PReLU) included
    expected_shapes = {
        "cascades.0.model.unet.prompt_level3.prompt_param": (1, 3, 24, 4, 4),
        "cascades.0.model.unet.prompt_level1.prompt_param": (1, 3, 8, 16, 16),
        "cascades.0.model.unet.prompt_level2.linear_layer.weight": (3, 32),
        "cascades.0.model.unet.feat_extract.weight": (8, 10, 3, 3),  # 2 channels x (image + 4 buffers)
        "cascades.0.model.unet.dec_level3.momentum.0.weight": (40, 160, 1, 1),  # current + 3 history
        "cascades.0.model.unet.enc_level1.encoder.0.CA.conv_du.0.weight": (4, 8, 1, 1),  # reduction 2
        "cascades.0.model.unet.dec_level1.up.module.module.1.weight": (8, 24, 1, 1),
        "cascades.0.model.unet.dec_level1.up._dummy_tensor": (1,),
        "cascades.0.dc_weight": (1,),
        "cascades.7.model.unet.conv_last.weight": (10, 8, 5, 5),
        "sens_net.norm_unet.unet.feat_extract.weight": (8, 2, 3, 3),
        "sens_net.norm_unet.unet.prompt_level3.prompt_param": (1, 3, 12, 4, 4),
        "sens_net_ckp._dummy_tensor": (1,),
        "sens_net_ckp.module.module.norm_unet.unet.conv_last.weight": (2, 8, 5, 5),
    }
    assert {name: tuple(state[name].shape) for name in expected_shapes} == expected_shapes
    assert "sens_net.norm_unet.unet.dec_level3.momentum.0.weight" not in state  # no history in the sens net


def test_prelu_is_shared_as_in_the_teams_model():
    model = tiny()
    state = model.state_dict(keep_vars=True)
    shared = state["cascades.0.model.unet.bottleneck.0.body.1.weight"]
    assert state["cascades.1.model.unet.dec_level2.fuse.0.body.1.weight"] is shared
    assert state["sens_net.norm_unet.unet.enc_level2.encoder.0.body.1.weight"] is shared
    assert state["cascades.0.model.unet.enc_level1.encoder.0.body.1.weight"] is not shared  # first CAB: its own


def _loss_and_grads(model: torch.nn.Module, kspace: torch.Tensor, mask: torch.Tensor):
    model.zero_grad()
    loss = model(kspace, mask).square().mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_grad_checkpointing_gives_the_same_loss_and_gradients():
    model = tiny(num_cascades=3)
    kspace, mask = undersampled(2, 3, 32, 24)
    loss, grads = _loss_and_grads(model, kspace, mask)
    model.set_grad_checkpointing(True)
    loss_ckpt, grads_ckpt = _loss_and_grads(model, kspace, mask)
    torch.testing.assert_close(loss_ckpt, loss, rtol=1e-4, atol=0)
    assert grads_ckpt.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-4, atol=1e-4 * float(grad.abs().max()))


def test_gradients_reach_every_trainable_parameter():
    model = tiny()
    kspace, mask = undersampled(1, 3, 32, 24)
    model(kspace, mask).mean().backward()
    # Frozen by design: the fixed random prompts (learnable_prompt=False, as the team) and the dummies kept
    # only for the team's state-dict layout. Everything else, history and adaptive-input layers included.
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.endswith(("prompt_param", "_dummy_tensor")) for n in frozen)
    trainable = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert [n for n, grad in trainable.items() if grad is None] == []
    # A channel-attention gate's ReLU acts on one pooled vector per sample, so with a few hidden units it can be
    # all off at initialisation and leave that gate's two 1x1 convs a zero gradient; everything else moves.
    zero = [n for n, grad in trainable.items() if not grad.abs().sum() > 0 and ".CA.conv_du." not in n]
    assert zero == []


def test_a_recipe_config_builds_the_teams_model():
    cfg = MriTrain(model={"name": "promptmr_plus"})
    with torch.device("meta"):
        model = create_model(cfg.model.name, **cfg.model.kwargs())
    assert sum(p.numel() for p in model.parameters()) == 6_014_207
