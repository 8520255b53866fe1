"""Training losses of the MRI task.

``SSIMLoss`` is the leaderboard's SSIM arithmetic (``podium.metrics.ssim.ssim_map``: uniform 7x7
window, K1 0.01, K2 0.03, sample covariance, valid convolution, ``data_range = attrs['max']`` per
sample) without the foreground mask, as fastMRI's ``SSIMLoss`` and the challenge baseline train with
it: the loss optimises the score with the very same formula. ``ReconstructionLoss`` adds an L1 term
and, given the leaderboard's foreground masks, scores only the foreground as the leaderboard does
(GeekSeek's SSIM + L1 loss); given per-slice weights, each slice's loss is weighted (sMaRtIfy's
sqrt(foreground area / largest area in the volume): small end slices count less).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from podium.metrics.ssim import ssim_map


class SSIMLoss(nn.Module):
    """``1 - mean SSIM`` over every valid 7x7 window of every image in the batch."""

    def forward(self, output: Tensor, target: Tensor, data_range: Tensor | float) -> Tensor:
        """Images (B, H, W) or (B, C, H, W) and each sample's data range (B,) (or one float) -> scalar loss.

        ``ssim_map`` computes in float32 whatever the autocast dtype: the variances are differences of
        near-equal moments, which half precision would cancel to noise.
        """
        x = output.reshape(output.shape[0], -1, *output.shape[-2:])
        y = target.reshape(x.shape)
        per_image = torch.as_tensor(data_range, device=x.device).reshape(-1, 1).expand(*x.shape[:2])
        return 1 - ssim_map(x, y, per_image).mean()


class ReconstructionLoss(nn.Module):
    """``ssim`` x (1 - SSIM) + ``l1`` x mean |output - target| / data range per slice, on ``output *
    foreground`` and ``target * foreground`` when foreground masks are given, averaged over the batch
    with ``weights`` (one per slice) when given."""

    def __init__(self, ssim: float = 1.0, l1: float = 0.0):
        super().__init__()
        self.ssim_weight, self.l1_weight = ssim, l1
        self.ssim = SSIMLoss()

    def forward(self, output: Tensor, target: Tensor, data_range: Tensor, foreground: Tensor | None = None,
                weights: Tensor | None = None) -> Tensor:
        if foreground is not None:
            output, target = output * foreground, target * foreground
        if weights is None:  # the batch's SSIM map as one mean, as fastMRI's SSIMLoss (and the baselines) take it
            loss = self.ssim_weight * self.ssim(output, target, data_range) if self.ssim_weight else 0.0
            return loss + self.l1_weight * self._l1(output, target, data_range).mean() if self.l1_weight else loss
        per_slice = self.ssim_weight * (1 - ssim_map(output, target, data_range).flatten(1).mean(1))
        if self.l1_weight:
            per_slice = per_slice + self.l1_weight * self._l1(output, target, data_range)
        return (weights * per_slice).mean()

    @staticmethod
    def _l1(output: Tensor, target: Tensor, data_range: Tensor) -> Tensor:
        return (output.float() - target.float()).abs().flatten(1).mean(1) / data_range.reshape(-1)
