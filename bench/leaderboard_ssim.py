"""podium's leaderboard SSIM vs a straightforward per-slice implementation of the official procedure.

Both score the same generated leaderboard-like folder in the same run; the reference loops over slices
with ``cv2.erode`` / ``cv2.dilate`` and scipy's uniform filter in float32 (49/48 covariance, valid crop).

    python bench/leaderboard_ssim.py [--volumes 4] [--slices 16] [--repeats 3] [--chunk-slices 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from scipy.ndimage import uniform_filter

from podium.metrics.ssim import FOREGROUND_THRESHOLDS, score_leaderboard
from podium.store import atomic_path

SIZE = 384
ACCS = ("acc4", "acc8")


def phantom_volume(rng: np.random.Generator, anatomy: str, slices: int) -> np.ndarray:
    """Ellipses with smooth texture, a faint noisy background and bright specks outside the object."""
    scale = 1e-4 if anatomy == "brain" else 4e-5
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    volume = np.empty((slices, SIZE, SIZE), dtype=np.float32)
    for s in range(slices):
        cy, cx = rng.uniform(150, 230, size=2)
        ay, ax = rng.uniform(90, 170, size=2)
        inside = ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 < 1
        texture = 1 + 0.4 * np.sin(xx / rng.uniform(5, 15)) * np.cos(yy / rng.uniform(5, 15))
        image = np.where(inside, scale * texture, 0) + np.abs(rng.normal(0, 0.05 * scale, (SIZE, SIZE)))
        specks = rng.integers(0, SIZE, size=(20, 2))
        image[specks[:, 0], specks[:, 1]] = scale
        volume[s] = image
    return volume


def write_h5(path: Path, key: str, data: np.ndarray, maximum: float | None = None) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(key, data=data)
        if maximum is not None:
            f.attrs["max"] = maximum


def make_leaderboard(root: Path, volumes: int, slices: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    recon_root, board_root = root / "reconstructions_leaderboard", root / "leaderboard"
    for acc in ACCS:
        noise = 0.03 if acc == "acc4" else 0.06
        for v in range(volumes):
            anatomy = ("brain", "knee")[v % 2]
            name = f"{anatomy}_test{v + 1}.h5"
            target = phantom_volume(rng, anatomy, slices)
            recon = target + rng.normal(0, noise * target.max(), target.shape).astype(np.float32)
            write_h5(board_root / acc / "image" / name, "image_label", target, float(target.max()))
            write_h5(recon_root / acc / name, "reconstruction", recon.astype(np.float32))
    return recon_root, board_root


def reference_slice(recon: np.ndarray, target: np.ndarray, maximum: float, threshold: float) -> float:
    """The official procedure for one slice, written out plainly."""
    mask = np.zeros(target.shape)
    mask[target > threshold] = 1
    kernel = np.ones((3, 3), np.uint8)
    mask = cv2.erode(mask, kernel, iterations=1)
    mask = cv2.dilate(mask, kernel, iterations=15)
    mask = cv2.erode(mask, kernel, iterations=14)
    x = (recon * mask).astype(np.float32)
    y = (target * mask).astype(np.float32)
    c1 = np.float32((0.01 * maximum) ** 2)
    c2 = np.float32((0.03 * maximum) ** 2)
    cov_norm = np.float32(49 / 48)
    valid = (slice(3, -3), slice(3, -3))
    ux = uniform_filter(x, 7)[valid]
    uy = uniform_filter(y, 7)[valid]
    uxx = uniform_filter(x * x, 7)[valid]
    uyy = uniform_filter(y * y, 7)[valid]
    uxy = uniform_filter(x * y, 7)[valid]
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def reference_leaderboard(recon_root: Path, board_root: Path) -> dict[str, float]:
    result = {}
    for acc in ACCS:
        scores = []
        for image_path in sorted((board_root / acc / "image").glob("*.h5")):
            threshold = FOREGROUND_THRESHOLDS[image_path.name.split("_")[0]]
            with h5py.File(image_path, "r") as tf, h5py.File(recon_root / acc / image_path.name, "r") as rf:
                target, recon, maximum = tf["image_label"][()], rf["reconstruction"][()], tf.attrs["max"]
            scores += [reference_slice(r, t, maximum, threshold) for r, t in zip(recon, target, strict=True)]
        result[acc] = sum(scores) / len(scores)
    result["total"] = (result["acc4"] + result["acc8"]) / 2
    return result


def best_time(fn, repeats: int):
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--volumes", type=int, default=4, help="volumes per acceleration (brain/knee alternate)"
    )
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-slices", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        recon_root, board_root = make_leaderboard(Path(tmp), args.volumes, args.slices)
        t_ref, ref = best_time(lambda: reference_leaderboard(recon_root, board_root), args.repeats)
        t_pod, score = best_time(
            lambda: score_leaderboard(
                recon_root, board_root, chunk_slices=args.chunk_slices, device=args.device
            ),
            args.repeats,
        )
    ours = {**score.ssim, "total": score.total}
    n = sum(score.slices.values())
    print(f"{n} slices of {SIZE}x{SIZE}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    for key in ("acc4", "acc8", "total"):
        diff = abs(ours[key] - ref[key])
        print(f"{key:6s} podium {ours[key]:.10f}  reference {ref[key]:.10f}  diff {diff:.2e}")
    worst = max(abs(ours[k] - ref[k]) for k in ref)
    print(f"max |diff| {worst:.2e} ({'OK' if worst <= 1e-6 else 'FAIL'}: tolerance 1e-6)")
    print(
        f"reference {t_ref:.3f} s ({1000 * t_ref / n:.2f} ms/slice); podium {t_pod:.3f} s "
        f"({1000 * t_pod / n:.2f} ms/slice); speed-up x{t_ref / t_pod:.2f}"
    )


if __name__ == "__main__":
    main()
