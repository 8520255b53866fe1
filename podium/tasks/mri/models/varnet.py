"""End-to-end VarNet (Sriram et al. 2020): unrolled k-space refinement with learned coil sensitivities.

Module and parameter names follow ``fastmri.models.VarNet`` so state dicts load both ways unchanged, and
``forward`` takes fastMRI's tensors (real-view k-space, bool column mask). Inside, k-space and images are
complex tensors, which keeps the physics (E, R, the data-consistency step) one line each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from podium.tasks.mri.fft import as_complex, center_crop, fft2c, ifft2c, rss
from podium.tasks.mri.models import register_model

PAD_MULTIPLE = 16  # four 2x poolings divide the padded size exactly


class ConvBlock(nn.Module):
    """Two (3x3 conv, instance norm, LeakyReLU 0.2, dropout) layers; no conv bias, the norm removes it."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(0.2),
            nn.Dropout2d(drop_prob),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(0.2),
            nn.Dropout2d(drop_prob),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class TransposeConvBlock(nn.Module):
    """2x upsampling by a stride-2 transposed conv, then instance norm and LeakyReLU 0.2."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(0.2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Unet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with average pooling, channels doubling at each of ``num_pools`` levels."""

    def __init__(
        self, in_chans: int, out_chans: int, chans: int = 32, num_pools: int = 4, drop_prob: float = 0.0
    ) -> None:
        super().__init__()
        self.down_sample_layers = nn.ModuleList([ConvBlock(in_chans, chans, drop_prob)])
        ch = chans
        for _ in range(num_pools - 1):
            self.down_sample_layers.append(ConvBlock(ch, ch * 2, drop_prob))
            ch *= 2
        self.conv = ConvBlock(ch, ch * 2, drop_prob)
        self.up_conv = nn.ModuleList()
        self.up_transpose_conv = nn.ModuleList()
        for level in range(num_pools):
            self.up_transpose_conv.append(TransposeConvBlock(ch * 2, ch))
            block = ConvBlock(ch * 2, ch, drop_prob)
            last = level == num_pools - 1
            self.up_conv.append(nn.Sequential(block, nn.Conv2d(ch, out_chans, kernel_size=1)) if last else block)
            ch //= 2

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for layer in self.down_sample_layers:
            x = layer(x)
            skips.append(x)
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
        x = self.conv(x)
        for upsample, conv in zip(self.up_transpose_conv, self.up_conv, strict=True):
            skip = skips.pop()
            x = upsample(x)
            # Pooling floors odd sizes, so the upsampled map can be one row/column short of its skip.
            short_h, short_w = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
            if short_h or short_w:
                x = F.pad(x, [0, short_w, 0, short_h], mode="reflect")
            x = conv(torch.cat([x, skip], dim=1))
        return x


class NormUnet(nn.Module):
    """U-Net on a complex image as (real, imag) channels, normalised per sample and zero-padded to 16k.

    The per-sample mean/std normalisation makes the U-Net see unit-scale inputs whatever the k-space
    scaling of the scanner or data set; the output is mapped back to the input's scale.
    """

    def __init__(self, chans: int, num_pools: int) -> None:
        super().__init__()
        self.unet = Unet(in_chans=2, out_chans=2, chans=chans, num_pools=num_pools)

    def forward(self, image: Tensor) -> Tensor:
        """Complex (N, 1, H, W) -> complex (N, 1, H, W)."""
        x = torch.cat([image.real, image.imag], dim=1)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        h, w = x.shape[-2:]
        top, bottom = _split_padding(h)
        left, right = _split_padding(w)
        x = self.unet(F.pad((x - mean) / std, [left, right, top, bottom]))
        x = x[..., top : top + h, left : left + w] * std + mean
        return torch.complex(x[:, :1], x[:, 1:])


def _split_padding(size: int) -> tuple[int, int]:
    """(before, after) zero padding bringing ``size`` up to a multiple of PAD_MULTIPLE, centred."""
    total = -size % PAD_MULTIPLE
    return total // 2, total - total // 2


def center_band(mask: Tensor, num_low_frequencies: int | None = None) -> tuple[Tensor, Tensor]:
    """First column and width, each (B,), of the fully sampled centre band of (B, W) bool column masks.

    Without ``num_low_frequencies`` (or with 0) the band is twice the shorter run of sampled columns on
    either side of W // 2, at least 1, which is fastMRI's detection wherever a run ends inside the mask;
    a run reaching the edge (a fully sampled mask) counts all its columns, where fastMRI counts none.
    """
    batch, width = mask.shape
    if num_low_frequencies:
        count = torch.full((batch,), num_low_frequencies, dtype=torch.long, device=mask.device)
    else:
        centre = width // 2
        left = _leading_true(mask[:, :centre].flip(1))
        right = _leading_true(mask[:, centre:])
        count = (2 * torch.minimum(left, right)).clamp(min=1)
    return (width - count + 1) // 2, count


def _leading_true(rows: Tensor) -> Tensor:
    """Number of True entries before the first False in each row of a (B, n) bool tensor."""
    return rows.long().cumprod(dim=1).sum(dim=1)


class SensitivityModel(nn.Module):
    """Coil sensitivities from the fully sampled k-space centre: ifft, NormUnet per coil, divide by RSS.

    Dividing by the RSS makes the maps sum to one in energy at every pixel, so R(E(x)) = x.
    """

    def __init__(self, chans: int, num_pools: int, mask_center: bool = True) -> None:
        super().__init__()
        self.mask_center = mask_center
        self.norm_unet = NormUnet(chans, num_pools)

    def forward(self, kspace: Tensor, mask: Tensor, num_low_frequencies: int | None = None) -> Tensor:
        """Complex k-space (B, C, H, W) and bool mask (B, 1, 1, W) -> complex maps (B, C, H, W)."""
        if self.mask_center:
            start, count = center_band(mask[:, 0, 0, :], num_low_frequencies)
            columns = torch.arange(kspace.shape[-1], device=kspace.device)
            band = (columns >= start[:, None]) & (columns < (start + count)[:, None])
            kspace = torch.where(band[:, None, None, :], kspace, torch.zeros_like(kspace))
        images = ifft2c(kspace)
        b, c, h, w = images.shape
        maps = self.norm_unet(images.reshape(b * c, 1, h, w)).reshape(b, c, h, w)
        return maps / rss(maps, dim=1, keepdim=True)


class VarNetBlock(nn.Module):
    """One cascade: ``k - eta * M(k - k0) - E(U(R(k)))``, soft data consistency plus a learned image prior."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(self, kspace: Tensor, ref_kspace: Tensor, mask: Tensor, sens_maps: Tensor) -> Tensor:
        """Complex k-space (B, C, H, W), measured k-space, bool mask (B, 1, 1, W), maps -> refined k-space."""
        soft_dc = torch.where(mask, kspace - ref_kspace, torch.zeros_like(kspace)) * self.dc_weight
        image = (ifft2c(kspace) * sens_maps.conj()).sum(dim=1, keepdim=True)
        return kspace - soft_dc - fft2c(self.model(image) * sens_maps)


@register_model("varnet")
class VarNet(nn.Module):
    """E2E VarNet; ``load_state_dict`` accepts ``fastmri.models.VarNet`` state dicts of the same sizes.

    ``crop_size`` (an int, (height, width) or None for no crop) is the challenge's 384 x 384 by default.
    """

    def __init__(
        self,
        num_cascades: int = 12,
        sens_chans: int = 8,
        sens_pools: int = 4,
        chans: int = 18,
        pools: int = 4,
        mask_center: bool = True,
        crop_size: int | tuple[int, int] | None = 384,
    ) -> None:
        super().__init__()
        self.crop_size = crop_size
        self.grad_checkpointing = False
        self.sens_net = SensitivityModel(sens_chans, sens_pools, mask_center)
        self.cascades = nn.ModuleList([VarNetBlock(NormUnet(chans, pools)) for _ in range(num_cascades)])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each cascade's activations in the backward pass (memory per cascade, not per model)."""
        self.grad_checkpointing = enable

    def forward(self, masked_kspace: Tensor, mask: Tensor, num_low_frequencies: int | None = None) -> Tensor:
        """Real-view k-space (B, C, H, W, 2) and mask (B, 1, 1, W, 1) -> RSS image (B, h, w), centre-cropped.

        ``num_low_frequencies`` (None or 0: detect from the mask) is the width of the centre band that
        calibrates the coil sensitivities.
        """
        ref_kspace = as_complex(masked_kspace)
        mask = mask[..., 0].bool()
        sens_maps = self.sens_net(ref_kspace, mask, num_low_frequencies)
        kspace = ref_kspace
        for cascade in self.cascades:
            if self.grad_checkpointing and torch.is_grad_enabled():
                kspace = checkpoint(cascade, kspace, ref_kspace, mask, sens_maps, use_reentrant=False)
            else:
                kspace = cascade(kspace, ref_kspace, mask, sens_maps)
        image = rss(ifft2c(kspace), dim=1)
        return image if self.crop_size is None else center_crop(image, self.crop_size)
