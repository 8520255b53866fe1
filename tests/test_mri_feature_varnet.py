"""Feature VarNets: fastMRI's names and sizes, GeekSeek's 67.6 M LSKA stack, attention blocks, checkpointing."""

from __future__ import annotations

import pytest
import torch

from podium.tasks.mri.fft import as_complex, center_crop, ifft2c, rss
from podium.tasks.mri.models import create_model, model_names
from podium.tasks.mri.models.feature_varnet import LSKA, LSKA_KERNELS, AttentionPE, Unet2d

FEATURE_MODELS = ["fi_varnet", "if_varnet", "feature_varnet_sh_w", "feature_varnet_n_sh_w", "feature_varnet"]
TINY = {
    "fi_varnet": dict(num_cascades=2, chans=6, pools=2, sens_chans=4, sens_pools=2, acceleration=4),
    "if_varnet": dict(num_cascades=2, chans=6, pools=2, sens_chans=4, sens_pools=2, acceleration=4),
    "feature_varnet_sh_w": dict(num_cascades=3, chans=6, pools=2, sens_chans=4, sens_pools=2),
    "feature_varnet_n_sh_w": dict(num_cascades=3, chans=6, pools=2, sens_chans=4, sens_pools=2),
    "feature_varnet": dict(cascade_counts=[1, 2, 1], feature_chans=6, unet_chans=4, image_chans=4, pools=2,
                           sens_chans=4, sens_pools=2, crop_size=None),
}


def params(name: str, **kwargs) -> int:
    with torch.device("meta"):  # sizes without allocating 187 M parameters
        return sum(p.numel() for p in create_model(name, **kwargs).parameters())


def undersampled(batch: int = 1, coils: int = 3, height: int = 32, width: int = 24, acc: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    kspace = torch.randn(batch, coils, height, width, 2, generator=g) * 1e-4
    mask = torch.zeros(batch, 1, 1, width, 1, dtype=torch.bool)
    mask[..., ::acc, :] = True
    mask[..., width // 2 - 2 : width // 2 + 2, :] = True
    return kspace * mask, mask


def test_registry_has_every_feature_model():
    assert set(FEATURE_MODELS) <= set(model_names())


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_forward_on_toy_kspace_gives_an_rss_image_per_slice(name):
    torch.manual_seed(0)
    model = create_model(name, **TINY[name]).eval()
    kspace, mask = undersampled(batch=2)
    with torch.no_grad():
        out = model(kspace, mask)
        single = model(kspace[:1], mask[:1])
    assert out.shape == (2, 32, 24) and torch.isfinite(out).all() and (out >= 0).all()
    torch.testing.assert_close(out[:1], single, rtol=0, atol=1e-5 * float(single.max()))  # per-sample


def test_parameter_counts_match_fastmri_and_geekseek():
    # fastMRI's FIVarNet, instantiated upstream (specs/mri-teams-2025.md section 1): 123.19 M at the class
    # defaults, 187.12 M with chans 32 as its training script uses; GeekSeek's stack: 67.63 M.
    assert params("fi_varnet") == 123_193_654
    assert params("fi_varnet", chans=32) == 187_123_828
    assert params("if_varnet", chans=32) == 187_123_828
    assert round(params("feature_varnet") / 1e6, 1) == 67.6
    assert params("feature_varnet") == 67_625_464


def test_feature_varnet_parts_have_the_spec_sizes():
    """GeekSeek's parts (spec section 2): sens 0.48 M, feature cascades 59.78 M (the shared encoder and
    decoder once), an LSKA block 3.23 M and a plain one 4.37 M (each with the coder and its extra conv),
    an image cascade 2.45 M."""
    with torch.device("meta"):
        model = create_model("feature_varnet")
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert round(size(model.sens_net) / 1e6, 2) == 0.48
    assert round(size(model.feat_cascades) / 1e6, 2) == 59.78
    assert round(size(model.feat_cascades[0]) / 1e6, 2) == 3.23
    assert round(size(model.feat_cascades[6]) / 1e6, 2) == 4.37
    assert round(size(model.image_cascades[0]) / 1e6, 2) == 2.45
    extra = [i for i, block in enumerate(model.feat_cascades) if block.use_image_conv]
    assert extra == [0, 3, 6, 9, 12] and len(model.feat_cascades) == 15 and len(model.image_cascades) == 3


def test_state_dict_uses_fastmri_names():
    """The keys fastMRI's FIVarNet state dict has: the shared encoder under every cascade, the recursive
    U-Net levels, the unused ``zero`` buffers and the image cascades' classic U-Net."""
    keys = set(create_model("fi_varnet", **TINY["fi_varnet"]).state_dict())
    for key in ["encoder.encoder.0.weight", "decoder.decoder.bias", "cascades.1.encoder.encoder.0.weight",
                "cascades.0.zero", "cascades.0.dc_weight", "cascades.0.attention_layer.dilated_conv.weight",
                "cascades.0.attention_layer.proj_out.bias", "cascades.0.output_conv.3.weight",
                "cascades.0.feature_processor.layer.left_block.layers.0.weight",
                "cascades.0.feature_processor.layer.child.child.left_block.layers.4.weight",
                "cascades.0.feature_processor.layer.child.upsample.layers.0.weight",
                "cascades.0.feature_processor.final_conv.0.weight",
                "image_cascades.1.model.unet.up_conv.1.1.bias", "sens_net.norm_unet.unet.conv.layers.0.weight"]:
        assert key in keys, key
    assert "cascades.1.output_conv.0.weight" not in keys  # the extra conv is on cascades 0, 3, 6, ...
    assert len(keys) == 108  # as many as fastMRI's FIVarNet(2, chans 6, pools 2, sens 4 / 2) has


@pytest.mark.parametrize("name", ["fi_varnet", "feature_varnet"])
def test_fully_sampled_with_zeroed_regularisers_returns_the_input_image(name):
    """An image cascade with eta 1 under a full mask replaces k-space by the measured one, so with zeroed
    U-Nets the output is the input's RSS, whatever the feature cascades did before."""
    torch.manual_seed(0)
    model = create_model(name, **TINY[name]).eval()
    for block in model.image_cascades:
        block.model.register_forward_hook(lambda module, inputs, output: torch.zeros_like(output))
    kspace, _ = undersampled(batch=2, seed=3)
    kspace = torch.randn_like(kspace) * 1e-4
    mask = torch.ones(2, 1, 1, 24, 1, dtype=torch.bool)
    with torch.no_grad():
        got = model(kspace, mask)
    expected = rss(ifft2c(as_complex(kspace)), dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-10)


def test_output_crop_and_feature_crop():
    torch.manual_seed(0)
    model = create_model("feature_varnet", **{**TINY["feature_varnet"], "crop_size": (20, 16)}).eval()
    kspace, mask = undersampled()
    with torch.no_grad():
        full = create_model("feature_varnet", **TINY["feature_varnet"])
        full.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(kspace, mask), center_crop(full.eval()(kspace, mask), (20, 16)))
        cropped = model(kspace, mask, crop_size=(17, 13))  # fastMRI's feature crop: the U-Nets see 17 x 13
    assert cropped.shape == (1, 20, 16) and not torch.allclose(cropped, model(kspace, mask))


@pytest.mark.parametrize("name", ["fi_varnet", "feature_varnet"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(name):
    kspace, mask = undersampled(seed=5)

    def grads(checkpointing: bool):
        torch.manual_seed(0)
        model = create_model(name, **TINY[name])
        model.set_grad_checkpointing(checkpointing)
        loss = model(kspace, mask).square().mean() * 1e8
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (loss_a, a), (loss_b, b) = grads(False), grads(True)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-6, atol=0)
    assert a.keys() == b.keys() and len(a) > 20
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-9, msg=n)


@pytest.mark.parametrize("k_size", sorted(LSKA_KERNELS))
def test_lska_kernel_table_follows_the_decomposition(k_size):
    """Lau et al.: a k x k kernel = a (2d-1)-wide local depthwise conv and a floor(k/d)-wide one dilated by d;
    the padding keeps the size."""
    a, b, d = LSKA_KERNELS[k_size]
    assert d == (2 if k_size < 23 else 3) and a == 2 * d - 1 and b == k_size // d
    lska = LSKA(4, k_size)
    assert lska.conv0h.kernel_size == (1, a) and lska.conv0v.kernel_size == (a, 1)
    assert lska.conv_spatial_h.kernel_size == (1, b) and lska.conv_spatial_h.dilation[1] == d
    assert lska.conv_spatial_v.kernel_size == (b, 1) and lska.conv_spatial_v.dilation[0] == d
    x = torch.randn(1, 4, 19, 23)
    assert lska(x).shape == x.shape
    with pytest.raises(ValueError, match="LSKA kernel size 9"):
        LSKA(4, 9)


def test_lska_gate_is_between_zero_and_one():
    lska = LSKA(2, 7)
    with torch.no_grad():
        lska.conv1.bias.fill_(100.0)  # saturated gate: the input passes unchanged
        x = torch.randn(1, 2, 9, 9)
        torch.testing.assert_close(lska(x), x)
        lska.conv1.bias.fill_(-100.0)
        assert lska(x).abs().max() < 1e-9


def test_lska_unet_replaces_the_two_deepest_encoder_stages_and_the_bottleneck():
    unet = Unet2d(6, 6, chans=4, num_pool_layers=4, lska_kernel=7)
    level, kinds = unet.layer, []
    while level is not None:
        kinds.append(type(level.left_block).__name__)
        level = level.child
    assert kinds == ["ConvBlock", "ConvBlock", "LSKAConvBlock", "LSKAConvBlock", "LSKAConvBlock"]
    assert unet(torch.randn(1, 6, 21, 18)).shape == (1, 6, 21, 18)  # reflect-padded to 32 x 32 and cut back


def test_attention_groups_the_aliasing_replicas():
    """With identity q/k/v and zero projection weights but one bias, the layer adds a constant; and the
    blocks of ``accel`` tokens are the columns W/accel apart."""
    layer = AttentionPE(2)
    x = torch.arange(2 * 3 * 8, dtype=torch.float).reshape(1, 2, 3, 8)
    blocks = layer.to_blocks(x, 4)
    assert blocks.shape == (3 * 2, 2, 4)
    torch.testing.assert_close(blocks[0, 0], x[0, 0, 0, [0, 2, 4, 6]])
    torch.testing.assert_close(layer.from_blocks(blocks, x.shape, 4), x)
    odd = torch.randn(1, 2, 3, 7)
    torch.testing.assert_close(layer.from_blocks(layer.to_blocks(odd, 4), odd.shape, 4), odd)
    with torch.no_grad():
        layer.proj_out.weight.zero_()
        layer.proj_out.bias.fill_(0.5)
    torch.testing.assert_close(layer(x, 4), x + 0.5)


def test_positional_encoding_is_fastmris_sine_code():
    enc = AttentionPE.positional_encoding(5, 6, torch.device("cpu"))
    row, col = 3, 5
    assert enc[row, col].item() == pytest.approx(torch.sin(torch.tensor(row / 10000 ** (2 * (col // 2) / 6))).item())
