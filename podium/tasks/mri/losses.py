"""Training losses of the MRI task.

``SSIMLoss`` is the leaderboard's SSIM arithmetic (uniform 7x7 window, K1 0.01, K2 0.03, sample
covariance, valid convolution, ``data_range = attrs['max']`` per sample) without the foreground mask,
as fastMRI's ``SSIMLoss`` and the challenge baseline train with it: the loss optimises the score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SSIMLoss(nn.Module):
    """``1 - mean SSIM`` over every valid 7x7 window of every image in the batch."""

    def __init__(self, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> None:
        super().__init__()
        self.win_size = win_size
        self.k1 = k1
        self.k2 = k2

    def forward(self, output: Tensor, target: Tensor, data_range: Tensor | float) -> Tensor:
        """Images (B, H, W) or (B, 1, H, W) and each sample's data range (B,) (or one float) -> scalar loss.

        Computed in at least float32: the variances are differences of near-equal moments, which half
        precision would cancel to noise.
        """
        dtype = torch.promote_types(output.dtype, torch.float32)
        x = output.to(dtype).reshape(output.shape[0], -1, *output.shape[-2:])
        y = target.to(dtype).reshape(x.shape)
        data_range = torch.as_tensor(data_range, dtype=dtype, device=x.device).reshape(-1, 1, 1, 1)
        c1 = (self.k1 * data_range) ** 2
        c2 = (self.k2 * data_range) ** 2
        n = self.win_size**2
        cov_norm = n / (n - 1)

        def mean(z: Tensor) -> Tensor:
            return F.avg_pool2d(z, self.win_size, stride=1)

        ux, uy = mean(x), mean(y)
        vx = cov_norm * (mean(x * x) - ux * ux)
        vy = cov_norm * (mean(y * y) - uy * uy)
        vxy = cov_norm * (mean(x * y) - ux * uy)
        ssim = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        return 1 - ssim.mean()
