"""Feature VarNets (Giannakopoulos et al., Sci. Rep. 2024) and GeekSeek's LSKA cascades (FastMRI 2025).

A feature VarNet unrolls in a learned feature space instead of the 2-channel image: the coil-combined
image is normalised per channel, encoded to ``chans`` feature maps by one 5x5 conv, and every cascade
does data consistency through the decoder (features -> image -> k-space -> masked residual -> back)
and subtracts a U-Net's correction. ``fi_varnet`` follows the feature cascades with the classic image
cascades; ``feature_varnet`` is GeekSeek's flexible stack: LSKA-U-Net feature cascades, plain feature
cascades, then image cascades.

Module and parameter names follow fastMRI's ``fastmri_examples/feature_varnet`` (the encoder and
decoder are shared and appear under every cascade, as there), so its state dicts load with
``strict=True``; the forward takes fastMRI's tensors. Inside, k-space and images are complex tensors.
Unlike fastMRI's code these models accept batches of more than one slice (statistics per sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from podium.tasks.mri.fft import as_complex, center_crop, fft2c, ifft2c, rss
from podium.tasks.mri.models import register_model
from podium.tasks.mri.models.varnet import ConvBlock, NormUnet, SensitivityModel, TransposeConvBlock, VarNetBlock

# LSKA (Lau et al. 2023): kernel size -> (local depthwise kernel a, dilated depthwise kernel b, dilation d)
LSKA_KERNELS = {7: (3, 3, 2), 11: (3, 5, 2), 23: (5, 7, 3), 35: (5, 11, 3), 41: (5, 13, 3), 53: (5, 17, 3)}


def sens_reduce(kspace: Tensor, sens_maps: Tensor) -> Tensor:
    """Complex coil k-space (B, C, H, W) -> coil-combined image as (real, imag) channels (B, 2, H, W)."""
    image = (ifft2c(kspace) * sens_maps.conj()).sum(dim=1, keepdim=True)
    return torch.cat([image.real, image.imag], dim=1)


def sens_expand(image: Tensor, sens_maps: Tensor) -> Tensor:
    """(B, 2, H, W) image channels -> complex coil k-space (B, C, H, W)."""
    return fft2c(torch.complex(image[:, :1], image[:, 1:]) * sens_maps)


class FeatureImage(NamedTuple):
    """What the feature cascades pass along: the features and everything data consistency needs."""

    features: Tensor
    sens_maps: Tensor
    means: Tensor  # (B, 2, 1, 1) per-sample channel statistics of the input image
    variances: Tensor
    mask: Tensor  # (B, 1, 1, W) bool
    ref_kspace: Tensor
    crop_size: tuple[int, int] | None = None


class NormStats(nn.Module):
    """Per-sample, per-channel mean and biased variance over H x W (the encoder's normalisation)."""

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        flat = image.flatten(2)
        return flat.mean(dim=2)[..., None, None], flat.var(dim=2, unbiased=False)[..., None, None]


class FeatureEncoder(nn.Module):
    """Normalised image (B, 2, H, W) -> features (B, feature_chans, H, W): one 5x5 conv."""

    def __init__(self, in_chans: int, feature_chans: int = 32):
        super().__init__()
        self.feature_chans = feature_chans
        self.encoder = nn.Sequential(nn.Conv2d(in_chans, feature_chans, kernel_size=5, padding=2))

    def forward(self, image: Tensor, means: Tensor, variances: Tensor) -> Tensor:
        return self.encoder((image - means) * torch.rsqrt(variances))


class FeatureDecoder(nn.Module):
    """Features -> image channels at the input image's scale: one 5x5 conv, then un-normalised."""

    def __init__(self, feature_chans: int = 32, out_chans: int = 2):
        super().__init__()
        self.feature_chans = feature_chans
        self.decoder = nn.Conv2d(feature_chans, out_chans, kernel_size=5, padding=2)

    def forward(self, features: Tensor, means: Tensor, variances: Tensor) -> Tensor:
        return self.decoder(features) * torch.sqrt(variances) + means


class AttentionPE(nn.Module):
    """Acceleration-aware attention: each pixel attends to the ``accel`` pixels W/accel apart along the
    phase-encode axis (W), the positions uniform undersampling folds onto each other.

    q, k and v are 1x1 convs followed by one shared dilated 3x3 conv, on instance-normed features plus
    a sinusoidal position code over (H, W); softmax over the ``accel`` tokens; 1x1 projection; residual.
    """

    def __init__(self, in_chans: int):
        super().__init__()
        self.in_chans = in_chans
        self.norm = nn.InstanceNorm2d(in_chans)
        self.q = nn.Conv2d(in_chans, in_chans, kernel_size=1)
        self.k = nn.Conv2d(in_chans, in_chans, kernel_size=1)
        self.v = nn.Conv2d(in_chans, in_chans, kernel_size=1)
        self.proj_out = nn.Conv2d(in_chans, in_chans, kernel_size=1)
        self.dilated_conv = nn.Conv2d(in_chans, in_chans, kernel_size=3, padding=2, dilation=2)

    @staticmethod
    def positional_encoding(height: int, width: int, device: torch.device) -> Tensor:
        """sin(row / 10000^(2 floor(j/2) / W)) for column j: fastMRI keeps only the sine half of its code."""
        j = torch.arange(width, device=device)
        freqs = 1 / 10000 ** (2 * torch.div(j, 2, rounding_mode="floor") / width)
        return torch.sin(torch.arange(height, dtype=torch.float, device=device)[:, None] * freqs)

    @staticmethod
    def _pads(width: int, accel: int) -> tuple[int, int]:
        total = -width % accel
        return total - total // 2, total // 2  # (left, right)

    def to_blocks(self, x: Tensor, accel: int) -> Tensor:
        """(B, C, H, W) -> (B*H*W'/accel, C, accel): W reflect-padded to W', split into ``accel`` chunks;
        token t of a group is column m + t W'/accel."""
        left, right = self._pads(x.shape[-1], accel)
        x = F.pad(x, (left, right, 0, 0), mode="reflect")
        b, c, h, w = x.shape
        return x.reshape(b, c, h, accel, w // accel).permute(0, 2, 4, 1, 3).reshape(-1, c, accel)

    def from_blocks(self, x: Tensor, shape: torch.Size, accel: int) -> Tensor:
        b, c, h, w = shape
        left, right = self._pads(w, accel)
        padded = w + left + right
        x = x.reshape(b, h, padded // accel, c, accel).permute(0, 3, 1, 4, 2).reshape(b, c, h, padded)
        return x[..., left : padded - right]

    def forward(self, x: Tensor, accel: int) -> Tensor:
        h = self.norm(x) + self.positional_encoding(x.shape[2], x.shape[3], x.device)
        q, k, v = (self.to_blocks(self.dilated_conv(proj(h)), accel) for proj in (self.q, self.k, self.v))
        weights = torch.softmax(q.transpose(1, 2) @ k * x.shape[1] ** -0.5, dim=2)  # (groups, accel, accel)
        attended = v @ weights.transpose(1, 2)
        return x + self.proj_out(self.from_blocks(attended, x.shape, accel))


class LSKA(nn.Module):
    """Large separable kernel attention: depthwise 1xa, ax1, dilated 1xb, bx1, then a 1x1 conv gives
    the attention map that multiplies the input. GeekSeek gates the map to (0, 1) with
    ``0.5 (tanh(clamp(attn, -12, 12)) + 1)``; the original multiplies by it as it is."""

    def __init__(self, dim: int, k_size: int = 7):
        super().__init__()
        if k_size not in LSKA_KERNELS:
            raise ValueError(f"LSKA kernel size {k_size} not in {sorted(LSKA_KERNELS)}")
        a, b, d = LSKA_KERNELS[k_size]
        self.k_size = k_size
        self.conv0h = nn.Conv2d(dim, dim, (1, a), padding=(0, (a - 1) // 2), groups=dim)
        self.conv0v = nn.Conv2d(dim, dim, (a, 1), padding=((a - 1) // 2, 0), groups=dim)
        self.conv_spatial_h = nn.Conv2d(dim, dim, (1, b), padding=(0, d * (b - 1) // 2), groups=dim, dilation=d)
        self.conv_spatial_v = nn.Conv2d(dim, dim, (b, 1), padding=(d * (b - 1) // 2, 0), groups=dim, dilation=d)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        attn = self.conv1(self.conv_spatial_v(self.conv_spatial_h(self.conv0v(self.conv0h(x)))))
        return x * 0.5 * (torch.tanh(attn.clamp(-12, 12)) + 1)


class LSKAAttention(nn.Module):
    """``x + proj_2(LSKA(GELU(proj_1(x))))`` (the LSKA paper's attention module)."""

    def __init__(self, d_model: int, k_size: int = 7):
        super().__init__()
        self.proj_1 = nn.Conv2d(d_model, d_model, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = LSKA(d_model, k_size)
        self.proj_2 = nn.Conv2d(d_model, d_model, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))


class LSKAConvBlock(nn.Module):
    """One 3x3 conv (no bias), instance norm, LSKA attention, LeakyReLU 0.2: GeekSeek's deep encoder block."""

    def __init__(self, in_chans: int, out_chans: int, k_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False)
        self.norm = nn.InstanceNorm2d(out_chans)
        self.attn = LSKAAttention(out_chans, k_size)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.attn(self.norm(self.conv(x))))


class UnetLevel(nn.Module):
    """One level of the recursive U-Net: ``left_block``, then (unless innermost) pool, child, upsample,
    concatenate and ``right_block``."""

    def __init__(self, child: UnetLevel | None, in_planes: int, out_planes: int, left_block: nn.Module | None = None):
        super().__init__()
        self.out_planes = out_planes
        self.left_block = left_block or ConvBlock(in_planes, out_planes)
        self.child = child
        if child is not None:
            self.upsample = TransposeConvBlock(child.out_planes, out_planes)
            self.right_block = ConvBlock(2 * out_planes, out_planes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.left_block(x)
        if self.child is None:
            return x
        return self.right_block(torch.cat([x, self.upsample(self.child(F.avg_pool2d(x, 2)))], dim=1))


class Unet2d(nn.Module):
    """The feature U-Net: recursive levels, input reflect-padded (bottom, right) to a multiple of
    2^pools, a 1x1 output conv (no bias) with instance norm and LeakyReLU.

    ``lska_kernel`` replaces the left block of the levels at depth >= pools - 2 (the two deepest encoder
    stages and the bottleneck) by :class:`LSKAConvBlock`: GeekSeek's "LSKA-U-Net".
    """

    def __init__(self, in_chans: int, out_chans: int, chans: int = 32, num_pool_layers: int = 4,
                 lska_kernel: int | None = None):
        super().__init__()
        self.factor = 2**num_pool_layers
        layer = None
        for depth in range(num_pool_layers, -1, -1):
            in_planes = in_chans if depth == 0 else chans * 2 ** (depth - 1)
            out_planes = chans * 2**depth
            deep = lska_kernel is not None and depth >= num_pool_layers - 2
            left = LSKAConvBlock(in_planes, out_planes, lska_kernel) if deep else None
            layer = UnetLevel(layer, in_planes, out_planes, left)
        self.layer = layer
        self.final_conv = nn.Sequential(
            nn.Conv2d(chans, out_chans, kernel_size=1, bias=False), nn.InstanceNorm2d(out_chans), nn.LeakyReLU(0.2)
        )

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % self.factor, 0, -h % self.factor), mode="reflect")
        return self.final_conv(self.layer(x))[..., :h, :w]


def _uncrop_start(crop: int, full: int) -> int:
    """fastMRI's insertion offset: one more than the crop's ``(full - crop) // 2`` when the difference is odd."""
    return (full - crop) // 2 + (full - crop) % 2


class FeatureVarNetBlock(nn.Module):
    """``f <- IN(f); f - dc_weight E(R(M(E^-1 D(f) - k0))) - U(f)``, then the optional extra feature conv.

    ``attention_layer`` (FIVarNet) makes the U-Net see ``AttentionPE(f)`` instead of ``f``.
    """

    def __init__(self, encoder: FeatureEncoder, decoder: FeatureDecoder, feature_processor: nn.Module,
                 use_extra_feature_conv: bool = False, attention_layer: AttentionPE | None = None,
                 acceleration: int = 4):
        super().__init__()
        chans = encoder.feature_chans
        self.encoder = encoder
        self.decoder = decoder
        self.feature_processor = feature_processor
        self.attention_layer = attention_layer
        self.acceleration = acceleration
        self.use_image_conv = use_extra_feature_conv
        self.dc_weight = nn.Parameter(torch.ones(1))
        self.input_norm = nn.InstanceNorm2d(chans)
        if use_extra_feature_conv:
            self.output_norm = nn.InstanceNorm2d(chans)
            self.output_conv = nn.Sequential(
                nn.Conv2d(chans, chans, kernel_size=5, padding=2, bias=False), nn.InstanceNorm2d(chans),
                nn.LeakyReLU(0.2),
                nn.Conv2d(chans, chans, kernel_size=5, padding=2, bias=False), nn.InstanceNorm2d(chans),
                nn.LeakyReLU(0.2),
            )
        self.register_buffer("zero", torch.zeros(1, 1, 1, 1, 1))  # unused; in fastMRI's state dicts

    def dc_term(self, fi: FeatureImage, features: Tensor) -> Tensor:
        kspace = sens_expand(self.decoder(features, fi.means, fi.variances), fi.sens_maps)
        residual = torch.where(fi.mask, kspace - fi.ref_kspace, torch.zeros_like(kspace))
        return self.dc_weight * self.encoder(sens_reduce(residual, fi.sens_maps), fi.means, fi.variances)

    def regulariser(self, fi: FeatureImage, features: Tensor) -> Tensor:
        if fi.crop_size is None:
            return self.feature_processor(features)
        (ch, cw), (h, w) = fi.crop_size, features.shape[-2:]
        out = features.clone()
        top, left = _uncrop_start(ch, h), _uncrop_start(cw, w)
        out[..., top : top + ch, left : left + cw] = self.feature_processor(center_crop(features, (ch, cw)))
        return out

    def forward(self, fi: FeatureImage, features: Tensor) -> Tensor:
        features = self.input_norm(features)
        attended = features if self.attention_layer is None else self.attention_layer(features, self.acceleration)
        new = features - self.dc_term(fi, features) - self.regulariser(fi, attended)
        if self.use_image_conv:
            new = self.output_norm(new)
            new = new + self.output_conv(new)
        return new


class FeatureVarNetBase(nn.Module):
    """Shared machinery: sensitivities, encoding, feature cascades, decoding, image cascades, RSS.

    ``crop_size`` crops the output image (the challenge's 384 x 384); ``forward``'s ``crop_size`` is
    fastMRI's: the feature U-Nets run on that centre crop of the features.
    """

    def __init__(self, sens_chans: int, sens_pools: int, feature_chans: int, mask_center: bool,
                 kspace_mult_factor: float, crop_size: int | tuple[int, int] | None):
        super().__init__()
        self.kspace_mult_factor = kspace_mult_factor
        self.output_crop = crop_size
        self.grad_checkpointing = False
        self.sens_net = SensitivityModel(sens_chans, sens_pools, mask_center)
        self.encoder = FeatureEncoder(in_chans=2, feature_chans=feature_chans)
        self.decoder = FeatureDecoder(feature_chans=feature_chans, out_chans=2)
        self.decode_norm = nn.InstanceNorm2d(feature_chans)
        self.norm_fn = NormStats()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each cascade's activations in the backward pass (memory per cascade, not per model)."""
        self.grad_checkpointing = enable

    def _run(self, module: nn.Module, *args) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def feature_blocks(self) -> Sequence[FeatureVarNetBlock]:
        raise NotImplementedError

    def image_blocks(self) -> Sequence[VarNetBlock]:
        raise NotImplementedError

    def image_first(self) -> bool:
        return False

    def forward(self, masked_kspace: Tensor, mask: Tensor, num_low_frequencies: int | None = None,
                crop_size: tuple[int, int] | None = None) -> Tensor:
        """Real-view k-space (B, C, H, W, 2) and mask (B, 1, 1, W, 1) -> RSS image (B, H, W), cropped to
        the constructor's ``crop_size`` when one is set."""
        ref = as_complex(masked_kspace) * self.kspace_mult_factor
        mask = mask[..., 0].bool()
        sens_maps = self.sens_net(ref, mask, num_low_frequencies)
        kspace = ref
        if self.image_first():
            kspace = self._image_cascades(kspace, ref, mask, sens_maps)
        image = sens_reduce(kspace, sens_maps)
        if crop_size is not None and image.shape[-1] < crop_size[1]:  # fastMRI's "FLAIR 203" rule
            crop_size = (image.shape[-1], image.shape[-1])
        means, variances = self.norm_fn(image)
        fi = FeatureImage(self.encoder(image, means, variances), sens_maps, means, variances, mask, ref,
                          None if crop_size is None else tuple(crop_size))
        features = fi.features
        for block in self.feature_blocks():
            features = self._run(block, fi, features)
        kspace = sens_expand(self.decoder(self.decode_norm(features), means, variances), sens_maps)
        if not self.image_first():
            kspace = self._image_cascades(kspace, ref, mask, sens_maps)
        image = rss(ifft2c(kspace / self.kspace_mult_factor), dim=1)
        return image if self.output_crop is None else center_crop(image, self.output_crop)

    def _image_cascades(self, kspace: Tensor, ref: Tensor, mask: Tensor, sens_maps: Tensor) -> Tensor:
        for block in self.image_blocks():
            kspace = self._run(block, kspace, ref, mask, sens_maps)
        return kspace


def _extra_conv(num_cascades: int, image_conv_cascades: Sequence[int] | None) -> list[int]:
    return list(image_conv_cascades) if image_conv_cascades is not None else list(range(0, num_cascades, 3))


class _AttentionFeatureVarNet(FeatureVarNetBase):
    """FIVarNet / IFVarNet: ``num_cascades`` attention feature cascades and as many image cascades."""

    def __init__(self, num_cascades: int = 12, sens_chans: int = 8, sens_pools: int = 4, chans: int = 18,
                 pools: int = 4, acceleration: int = 4, mask_center: bool = True,
                 image_conv_cascades: Sequence[int] | None = None, kspace_mult_factor: float = 1e6,
                 crop_size: int | tuple[int, int] | None = None):
        super().__init__(sens_chans, sens_pools, chans, mask_center, kspace_mult_factor, crop_size)
        self.image_conv_cascades = _extra_conv(num_cascades, image_conv_cascades)
        self.cascades = nn.ModuleList([
            FeatureVarNetBlock(self.encoder, self.decoder, Unet2d(chans, chans, num_pool_layers=pools),
                               i in self.image_conv_cascades, AttentionPE(chans), acceleration)
            for i in range(num_cascades)
        ])
        self.image_cascades = nn.ModuleList([VarNetBlock(NormUnet(chans, pools)) for _ in range(num_cascades)])

    def feature_blocks(self) -> Sequence[FeatureVarNetBlock]:
        return self.cascades

    def image_blocks(self) -> Sequence[VarNetBlock]:
        return self.image_cascades


@register_model("fi_varnet")
class FIVarNet(_AttentionFeatureVarNet):
    """fastMRI's FIVarNet: attention feature cascades, then image cascades (the paper's best model).

    The feature U-Nets are 32 channels wide whatever ``chans`` is, as in fastMRI (it does not pass it).
    """


@register_model("if_varnet")
class IFVarNet(_AttentionFeatureVarNet):
    """fastMRI's IFVarNet: the image cascades first, then the attention feature cascades."""

    def image_first(self) -> bool:
        return True


class _PlainFeatureVarNet(FeatureVarNetBase):
    """Feature cascades only; ``shared`` False gives each cascade its own encoder and decoder."""

    shared = True

    def __init__(self, num_cascades: int = 12, sens_chans: int = 8, sens_pools: int = 4, chans: int = 18,
                 pools: int = 4, mask_center: bool = True, image_conv_cascades: Sequence[int] | None = None,
                 kspace_mult_factor: float = 1e6, crop_size: int | tuple[int, int] | None = None):
        super().__init__(sens_chans, sens_pools, chans, mask_center, kspace_mult_factor, crop_size)
        self.image_conv_cascades = _extra_conv(num_cascades, image_conv_cascades)

        def coder() -> tuple[FeatureEncoder, FeatureDecoder]:
            return (self.encoder, self.decoder) if self.shared else (FeatureEncoder(2, chans), FeatureDecoder(chans))

        self.cascades = nn.ModuleList([
            FeatureVarNetBlock(*coder(), Unet2d(chans, chans, num_pool_layers=pools), i in self.image_conv_cascades)
            for i in range(num_cascades)
        ])

    def feature_blocks(self) -> Sequence[FeatureVarNetBlock]:
        return self.cascades

    def image_blocks(self) -> Sequence[VarNetBlock]:
        return ()


@register_model("feature_varnet_sh_w")
class FeatureVarNet_sh_w(_PlainFeatureVarNet):  # noqa: N801 - fastMRI's class name
    """fastMRI's feature VarNet with one encoder/decoder shared by all cascades."""


@register_model("feature_varnet_n_sh_w")
class FeatureVarNet_n_sh_w(_PlainFeatureVarNet):  # noqa: N801 - fastMRI's class name
    """fastMRI's feature VarNet with a fresh encoder/decoder per cascade (the top-level pair encodes the
    input and decodes the output)."""

    shared = False


@register_model("feature_varnet")
class FeatureVarNet(FeatureVarNetBase):
    """GeekSeek's FastMRI 2025 model: ``cascade_counts = [lska, feature, image]`` cascades.

    ``lska`` feature cascades whose U-Net has LSKA blocks in its deepest encoder stages and bottleneck,
    ``feature`` plain feature cascades (a fresh U-Net each, ``unet_chans`` wide, on ``feature_chans``
    features), then ``image`` image-space VarNet cascades (NormUnet ``image_chans`` wide). The extra
    feature conv runs on every third feature cascade. At the defaults: 67.6 M parameters.
    """

    def __init__(self, cascade_counts: Sequence[int] = (5, 10, 3), feature_chans: int = 12, unet_chans: int = 24,
                 image_chans: int = 18, pools: int = 4, sens_chans: int = 8, sens_pools: int = 4,
                 lska_kernel: int = 7, mask_center: bool = True, image_conv_cascades: Sequence[int] | None = None,
                 kspace_mult_factor: float = 1e6, crop_size: int | tuple[int, int] | None = 384):
        super().__init__(sens_chans, sens_pools, feature_chans, mask_center, kspace_mult_factor, crop_size)
        if len(cascade_counts) != 3 or min(cascade_counts) < 0:
            raise ValueError(f"cascade_counts must be [lska, feature, image] counts >= 0, got {list(cascade_counts)}")
        lska, plain, image = cascade_counts
        self.image_conv_cascades = _extra_conv(lska + plain + image, image_conv_cascades)
        self.feat_cascades = nn.ModuleList([
            FeatureVarNetBlock(
                self.encoder, self.decoder,
                Unet2d(feature_chans, feature_chans, unet_chans, pools, lska_kernel if i < lska else None),
                i in self.image_conv_cascades,
            )
            for i in range(lska + plain)
        ])
        self.image_cascades = nn.ModuleList([VarNetBlock(NormUnet(image_chans, pools)) for _ in range(image)])

    def feature_blocks(self) -> Sequence[FeatureVarNetBlock]:
        return self.feat_cascades

    def image_blocks(self) -> Sequence[VarNetBlock]:
        return self.image_cascades
