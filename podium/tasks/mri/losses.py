"""Training losses of the MRI task.

``SSIMLoss`` is the leaderboard's SSIM arithmetic (``podium.metrics.ssim.ssim_map``: uniform 7x7
window, K1 0.01, K2 0.03, sample covariance, valid convolution, ``data_range = attrs['max']`` per
sample) without the foreground mask, as fastMRI's ``SSIMLoss`` and the challenge baseline train with
it: the loss optimises the score with the very same formula.
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
