"""The SNU FastMRI challenge 2025 leaderboard SSIM, exactly, batched over slices on CPU or GPU.

The official script loops over slices with ``cv2.erode`` / ``cv2.dilate`` and a 7x7 uniform-window SSIM.
Here the same arithmetic runs on whole chunks of slices with plain tensor ops (CPU or GPU): the
morphology is a separable windowed OR whose padding is the neutral value, which is OpenCV's default
border (the image border neither erodes nor dilates; scipy's default ``border_value=0`` would erode),
and the local moments are valid 7x7 box means. Everything is float32, like the official computation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from rich.progress import track
from rich.table import Table

from podium.engine.threads import torch_threads
from podium.errors import DataError
from podium.hdf5 import open_h5, read, require_attr, require_dataset

FOREGROUND_THRESHOLDS: dict[str, float] = {"brain": 5e-5, "knee": 2e-5}
ACCELERATIONS: tuple[str, ...] = ("acc4", "acc8")
WIN_SIZE = 7
K1 = 0.01
K2 = 0.03
RECON_KEY = "reconstruction"
TARGET_KEY = "image_label"
CPU_CHUNK = 2
GPU_CHUNK = 64


def anatomy_from_name(name: str) -> str:
    """``brain_test3.h5`` -> ``brain``: the official script picks the mask threshold from the prefix."""
    prefix = Path(name).name.split("_", 1)[0]
    if prefix not in FOREGROUND_THRESHOLDS:
        raise DataError(f"{name}: file name must start with one of {sorted(FOREGROUND_THRESHOLDS)}_")
    return prefix


def _window_any(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """OR of a bool tensor over ``[i - radius, i + radius]`` along ``dim``; outside the image is False.

    Windows grow by doubling (1, 2, 4, ... lines), and two overlapping power-of-two windows cover the
    full one, so the cost is logarithmic in the radius.
    """
    if radius == 0:
        return x
    size = 2 * radius + 1
    pad = x.new_zeros([radius if d == dim % x.ndim else n for d, n in enumerate(x.shape)])
    acc = torch.cat([pad, x, pad], dim=dim)
    span = 1
    while 2 * span <= size:
        length = acc.shape[dim] - span
        acc = acc.narrow(dim, 0, length) | acc.narrow(dim, span, length)
        span *= 2
    n = x.shape[dim]
    return acc.narrow(dim, 0, n) | acc.narrow(dim, size - span, n)


def dilate(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """``cv2.dilate(mask, ones((3, 3)), iterations=n) != 0`` for masks of shape (..., H, W), as bool.

    ``n`` iterations of a 3x3 square equal one (2n+1)^2 square when the border is ignored (OpenCV's
    default border value), which is also how OpenCV runs rectangular kernels.
    """
    return _window_any(_window_any(mask != 0, iterations, -1), iterations, -2)


def erode(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """``cv2.erode(mask, ones((3, 3)), iterations=n) != 0`` as bool: the dual of :func:`dilate`."""
    return ~dilate(mask == 0, iterations)


def foreground_mask(target: torch.Tensor, anatomy: str) -> torch.Tensor:
    """The official float32 {0, 1} mask: threshold, erode 1, dilate 15, erode 14 (3x3, OpenCV border)."""
    if anatomy not in FOREGROUND_THRESHOLDS:
        raise ValueError(f"anatomy must be one of {sorted(FOREGROUND_THRESHOLDS)}, got {anatomy!r}")
    mask = target.float() > FOREGROUND_THRESHOLDS[anatomy]
    return erode(dilate(erode(mask, 1), 15), 14).float()


def _box_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over every full 7x7 window (valid): separable running sums of shifted views, in place."""
    w = x.shape[-1] - WIN_SIZE + 1
    rows = x[..., :w].clone()
    for k in range(1, WIN_SIZE):
        rows += x[..., k : k + w]
    h = x.shape[-2] - WIN_SIZE + 1
    out = rows[..., :h, :].clone()
    for k in range(1, WIN_SIZE):
        out += rows[..., k : k + h, :]
    return out.div_(WIN_SIZE**2)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float) -> torch.Tensor:
    """SSIM map of (..., H, W) images: uniform 7x7, sample covariance (49/48), valid -> (..., H-6, W-6).

    ``data_range`` is a scalar or one value per image (shape ``x.shape[:-2]``).
    """
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim < 2 or min(x.shape[-2:]) < WIN_SIZE:
        raise ValueError(f"images must be at least {WIN_SIZE}x{WIN_SIZE}, got shape {tuple(x.shape)}")
    lead = x.shape[:-2]
    x = x.float().reshape(-1, *x.shape[-2:])
    y = y.float().reshape(-1, *y.shape[-2:])
    ux, uy, uxx, uyy, uxy = _box_mean(torch.stack([x, y, x * x, y * y, x * y])).unbind(0)
    dr = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1, 1, 1)
    c1 = ((K1 * dr) ** 2).float()
    c2 = ((K2 * dr) ** 2).float()
    cov_norm = WIN_SIZE**2 / (WIN_SIZE**2 - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux**2 + uy**2 + c1
    b2 = vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    return s.reshape(*lead, *s.shape[-2:])


def leaderboard_ssim(
    recon: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | float, anatomy: str
) -> torch.Tensor:
    """Per-slice 2025 leaderboard SSIM of (..., H, W) slices: mean of the map of the masked images."""
    mask = foreground_mask(target, anatomy)
    smap = ssim_map(recon.float() * mask, target.float() * mask, data_range)
    return smap.mean(dim=(-2, -1))


# --- whole leaderboard folders -------------------------------------------------------------------


@dataclass(frozen=True)
class LeaderboardScore:
    """Slice-weighted means per acceleration (brain and knee pooled) and their mean, as ranked."""

    ssim: dict[str, float]
    total: float
    slices: dict[str, int]
    by_anatomy: dict[str, dict[str, float]] = field(default_factory=dict)
    volumes: dict[str, dict[str, float]] = field(default_factory=dict)



def _chunks(num: int, size: int) -> Iterator[slice]:
    for start in range(0, num, size):
        yield slice(start, min(start + size, num))


def _read(ds: h5py.Dataset, path: Path, key: str, rows: slice, device: torch.device) -> torch.Tensor:
    block = torch.from_numpy(np.asarray(read(ds, rows), dtype=np.float32)).to(device)
    finite = torch.isfinite(block).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = rows.start + int((~finite).nonzero()[0, 0])
        raise DataError(f"{path}: dataset '{key}' slice {bad} has non-finite values")
    return block


def score_volume(
    recon_path: str | os.PathLike,
    target_path: str | os.PathLike,
    *,
    recon_key: str = RECON_KEY,
    chunk_slices: int | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Per-slice leaderboard SSIM of one reconstruction file's ``recon_key`` against its image file
    (float64, CPU).

    Reads ``chunk_slices`` slices at a time so that memory does not grow with the volume; by default
    a few on CPU (the working set stays in cache) and many on a GPU.
    """
    recon_path, target_path = Path(recon_path), Path(target_path)
    anatomy = anatomy_from_name(target_path.name)
    device = torch.device(device)
    chunk_slices = chunk_slices or (CPU_CHUNK if device.type == "cpu" else GPU_CHUNK)
    with open_h5(target_path) as tf, open_h5(recon_path) as rf, torch_threads(1 if device.type == "cpu" else None):
        target = require_dataset(tf, TARGET_KEY, 3)
        recon = require_dataset(rf, recon_key, 3)
        if recon.shape != target.shape:
            raise DataError(
                f"{recon_path}: '{recon_key}' has shape {recon.shape} but {target_path} '{TARGET_KEY}'"
                f" has shape {target.shape}"
            )
        if target.shape[0] == 0:
            raise DataError(f"{target_path}: dataset '{TARGET_KEY}' has no slices")
        data_range = float(require_attr(tf, "max"))
        scores = [
            leaderboard_ssim(
                _read(recon, recon_path, recon_key, rows, device),
                _read(target, target_path, TARGET_KEY, rows, device),
                data_range,
                anatomy,
            )
            for rows in _chunks(target.shape[0], chunk_slices)
        ]
    return torch.cat(scores).double().cpu()


def score_leaderboard(
    recon_root: str | os.PathLike | None,
    leaderboard_root: str | os.PathLike,
    *,
    recon_key: str = RECON_KEY,
    accelerations: Sequence[str] = ACCELERATIONS,
    chunk_slices: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> LeaderboardScore:
    """Score ``recon_root/<acc>/<f>.h5`` against ``leaderboard_root/<acc>/image/<f>.h5`` like the ranking.

    Every image file of the leaderboard must have its reconstruction (a missing one is an error, not a
    skipped volume: the official mean runs over all slices). Runs on the GPU when one is available.
    With ``recon_root`` None the image files score their own ``recon_key``: ``image_input`` is the
    zero-filled baseline a model has to beat.
    """
    leaderboard_root = Path(leaderboard_root)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ssim: dict[str, float] = {}
    slices: dict[str, int] = {}
    by_anatomy: dict[str, dict[str, float]] = {}
    volumes: dict[str, dict[str, float]] = {}
    for acc in accelerations:
        image_dir = leaderboard_root / acc / "image"
        if not image_dir.is_dir():
            raise DataError(f"{image_dir}: leaderboard image folder not found")
        files = sorted(image_dir.glob("*.h5"))
        if not files:
            raise DataError(f"{image_dir}: no .h5 files")
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        volumes[acc] = {}
        for target_path in track(files, description=f"SSIM {acc}", disable=not progress):
            recon_path = target_path if recon_root is None else Path(recon_root) / acc / target_path.name
            scores = score_volume(recon_path, target_path, recon_key=recon_key, chunk_slices=chunk_slices,
                                  device=device)
            anatomy = anatomy_from_name(target_path.name)
            sums[anatomy] = sums.get(anatomy, 0.0) + float(scores.sum())
            counts[anatomy] = counts.get(anatomy, 0) + len(scores)
            volumes[acc][target_path.name] = float(scores.mean())
        slices[acc] = sum(counts.values())
        ssim[acc] = sum(sums.values()) / slices[acc]
        by_anatomy[acc] = {a: sums[a] / counts[a] for a in sorted(sums)}
    total = sum(ssim.values()) / len(ssim)
    return LeaderboardScore(ssim=ssim, total=total, slices=slices, by_anatomy=by_anatomy, volumes=volumes)


def leaderboard_table(score: LeaderboardScore) -> Table:
    """The score as printed for the ranking: SSIM per acceleration (and per anatomy), total, 4 decimals."""
    anatomies = sorted({a for per in score.by_anatomy.values() for a in per})
    table = Table(title="Leaderboard SSIM (SNU FastMRI 2025)")
    table.add_column("acceleration")
    table.add_column("slices", justify="right")
    for anatomy in anatomies:
        table.add_column(anatomy, justify="right")
    table.add_column("SSIM", justify="right", style="bold")
    for acc, value in score.ssim.items():
        per = score.by_anatomy.get(acc, {})
        cells = [f"{per[a]:.4f}" if a in per else "-" for a in anatomies]
        table.add_row(acc, str(score.slices[acc]), *cells, f"{value:.4f}")
    table.add_row("total", str(sum(score.slices.values())), *["" for _ in anatomies], f"{score.total:.4f}")
    return table
