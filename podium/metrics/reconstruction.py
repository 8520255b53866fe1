"""fastMRI's own evaluation (facebookresearch/fastMRI ``evaluate.py``) for the fastMRI layout.

Per volume: NMSE over the volume, PSNR with ``data_range = gt.max()``, and SSIM as skimage's
``structural_similarity`` per slice with ``data_range = gt.max()`` (the volume max, not ``attrs['max']``),
averaged over slices. The folder score is the plain mean over volumes. Arithmetic runs in the input's
float type, as skimage does, so float32 volumes score as they do in fastMRI's script.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter
from skimage.metrics import peak_signal_noise_ratio

from podium.errors import DataError
from podium.hdf5 import FASTMRI_TARGET_KEYS, open_h5, read, require_attr, require_dataset

WIN_SIZE = 7
K1 = 0.01
K2 = 0.03


def _float(x: np.ndarray) -> np.ndarray:
    """skimage's working type: float16 and float32 -> float32, float64 stays, integers -> float64."""
    return x.astype(np.result_type(x.dtype, np.float32) if x.dtype.kind == "f" else np.float64, copy=False)


def volume_nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    """``||gt - pred||^2 / ||gt||^2`` over the whole volume."""
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def volume_psnr(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """PSNR with ``data_range = gt.max()`` unless given (skimage's function, as fastMRI calls it)."""
    return float(peak_signal_noise_ratio(gt, pred, data_range=gt.max() if maxval is None else maxval))


def slice_ssims(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> np.ndarray:
    """skimage's default SSIM of every slice of (slices, H, W) volumes, all slices at once.

    A (1, 7, 7) uniform filter on the volume is the 7x7 filter of each slice (scipy skips size-1 axes),
    with skimage's reflect border, sample covariance and 3-pixel crop before the mean.
    """
    if gt.ndim != 3 or gt.shape != pred.shape:
        raise ValueError(f"expected two (slices, H, W) volumes of one shape, got {gt.shape} and {pred.shape}")
    x, y = _float(gt), _float(pred)
    data_range = gt.max() if maxval is None else maxval
    size = (1, WIN_SIZE, WIN_SIZE)
    ux = uniform_filter(x, size=size)
    uy = uniform_filter(y, size=size)
    uxx = uniform_filter(x * x, size=size)
    uyy = uniform_filter(y * y, size=size)
    uxy = uniform_filter(x * y, size=size)
    cov_norm = WIN_SIZE**2 / (WIN_SIZE**2 - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux**2 + uy**2 + c1, vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    pad = (WIN_SIZE - 1) // 2
    return s[:, pad:-pad, pad:-pad].mean(axis=(1, 2), dtype=np.float64)


def volume_ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """fastMRI's volume SSIM: the mean of the per-slice SSIMs, data range = the volume max."""
    return float(slice_ssims(gt, pred, maxval).mean())


def evaluate_volume(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The four numbers fastMRI reports for one volume."""
    return {
        "MSE": float(np.mean((gt - pred) ** 2)),
        "NMSE": volume_nmse(gt, pred),
        "PSNR": volume_psnr(gt, pred),
        "SSIM": volume_ssim(gt, pred),
    }


def center_crop(volume: np.ndarray, size: int, path: Path) -> np.ndarray:
    """fastMRI's centre crop of the last two axes to (size, size)."""
    h, w = volume.shape[-2:]
    if size > h or size > w:
        raise DataError(f"{path}: cannot centre-crop shape {volume.shape} to ({size}, {size})")
    top, left = (h - size) // 2, (w - size) // 2
    return volume[..., top : top + size, left : left + size]


def evaluate_folder(
    target_dir: str | os.PathLike,
    recon_dir: str | os.PathLike,
    *,
    challenge: str = "multicoil",
    acquisition: str | None = None,
    acceleration: int | None = None,
    target_key: str | None = None,
) -> dict[str, dict[str, float]]:
    """fastMRI's ``evaluate.py`` over a folder -> {"mean": {...}, "std": {...}, "volumes": {name: SSIM}}.

    Both volumes are centre-cropped to (W, W), W the target's width; ``acquisition`` / ``acceleration``
    keep only matching target files; std is the sample standard deviation over volumes. ``target_key``
    overrides the challenge's target dataset (``image_label`` in the SNU layout).
    """
    target_dir, recon_dir = Path(target_dir), Path(recon_dir)
    if challenge not in FASTMRI_TARGET_KEYS:
        raise ValueError(f"challenge must be one of {sorted(FASTMRI_TARGET_KEYS)}, got {challenge!r}")
    key = target_key or FASTMRI_TARGET_KEYS[challenge]
    rows: dict[str, dict[str, float]] = {}
    for target_path in sorted(target_dir.glob("*.h5")):
        recon_path = recon_dir / target_path.name
        with open_h5(target_path) as tf:
            if acquisition is not None and require_attr(tf, "acquisition") != acquisition:
                continue
            if acceleration is not None and require_attr(tf, "acceleration") != acceleration:
                continue
            gt = read(require_dataset(tf, key, 3))
        with open_h5(recon_path) as rf:
            pred = read(require_dataset(rf, "reconstruction", 3))
        size = gt.shape[-1]
        gt, pred = center_crop(gt, size, target_path), center_crop(pred, size, recon_path)
        if gt.shape[0] != pred.shape[0]:
            raise DataError(f"{recon_path}: {pred.shape[0]} slices but {target_path} has {gt.shape[0]}")
        rows[target_path.name] = evaluate_volume(gt, pred)
    if not rows:
        raise DataError(f"{target_dir}: no target volumes to evaluate")
    names = ("MSE", "NMSE", "PSNR", "SSIM")
    table = np.array([[row[n] for n in names] for row in rows.values()])
    std = table.std(axis=0, ddof=1) if len(rows) > 1 else np.zeros(len(names))
    return {
        "mean": dict(zip(names, table.mean(axis=0).tolist(), strict=True)),
        "std": dict(zip(names, std.tolist(), strict=True)),
        "volumes": {name: row["SSIM"] for name, row in rows.items()},
    }
