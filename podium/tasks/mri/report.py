"""MRI reconstruction in the run report: for a few slices of each acceleration and anatomy the zero-filled
input, the reconstruction, the target, |error| and the leaderboard's foreground mask with each slice's
SSIM; every volume's SSIM as a strip plot; reconstruction time against the 3,600 s budget."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch

from podium.hdf5 import open_h5, read, require_attr, require_dataset
from podium.metrics.ssim import (
    FOREGROUND_THRESHOLDS,
    RECON_KEY,
    TARGET_KEY,
    anatomy_from_name,
    foreground_mask,
    leaderboard_ssim,
    score_volume,
)
from podium.report.items import (
    Bars,
    Baseline,
    ImageGrid,
    ReportItem,
    RunView,
    Scored,
    Span,
    Strip,
    Tile,
    best_scored,
    cached,
)
from podium.store import StageRun
from podium.tasks.mri.reconstruct import BUDGET_SECONDS, RECON_DIR, TIMING_FILE, leaderboard_folders

ZERO_FILLED_KEY = "image_input"
DEPTHS = (1 / 3, 2 / 3)  # the slices shown of a volume, as fractions of its depth


def _budget(view: RunView) -> Bars | None:
    """Each finished predict stage's reconstruction time on a log axis, under the challenge's 3,600 s."""
    runs = {n: view.done(n)[0] for n in view.of_kind("predict", "mri") if view.done(n)}
    seconds = {n: float(json.loads(r.output(TIMING_FILE).read_text())["seconds"]) for n, r in runs.items()}
    if not seconds:
        return None
    return Bars(title="leaderboard reconstruction time", labels=list(seconds), axis="seconds (log scale)",
                series={"reconstruction": list(seconds.values())}, lines={"challenge budget": BUDGET_SECONDS},
                horizontal=True, log=True)


def _volume_ssims(run: StageRun, leaderboard: Path) -> dict[str, dict[str, list[float]]]:
    """acc -> file -> [reconstruction SSIM, zero-filled SSIM], the leaderboard's per-volume means."""
    run.verify_outputs()
    out: dict[str, dict[str, list[float]]] = {}
    for acc in leaderboard_folders(leaderboard):
        out[acc] = {}
        for target in sorted((leaderboard / acc / "image").glob("*.h5")):
            recon = float(score_volume(run.path / RECON_DIR / acc / target.name, target).mean())
            zero = float(score_volume(target, target, recon_key=ZERO_FILLED_KEY).mean())
            out[acc][target.name] = [recon, zero]
    return out


def _strip(volumes: dict[str, dict[str, list[float]]], group: str) -> Strip:
    points: dict[str, dict[str, list[tuple[str, float]]]] = {"reconstruction": {}, "zero-filled input": {}}
    for acc, files in volumes.items():
        for name, (recon, zero) in files.items():
            where = f"{acc} {anatomy_from_name(name)}"
            points["reconstruction"].setdefault(where, []).append((name, recon))
            points["zero-filled input"].setdefault(where, []).append((name, zero))
    return Strip(title="leaderboard SSIM per volume", group=group, points=points, axis="SSIM",
                 note="Each point is one volume's mean slice SSIM with the leaderboard's foreground mask.")


def _slices(scored: Scored, target: Path, acc: str, group: str) -> ImageGrid:
    """Rows of zero-filled, reconstruction, target, |error| and foreground mask for a few slices."""
    recon_path = scored.run.output(f"{RECON_DIR}/{acc}/{target.name}")
    anatomy = anatomy_from_name(target.name)
    tiles = []
    with open_h5(target) as tf, open_h5(recon_path) as rf:
        labels, zero_filled = require_dataset(tf, TARGET_KEY, 3), require_dataset(tf, ZERO_FILLED_KEY, 3)
        recons = require_dataset(rf, RECON_KEY, 3)
        top = float(require_attr(tf, "max"))
        for s in sorted({min(int(d * labels.shape[0]), labels.shape[0] - 1) for d in DEPTHS}):
            y, zero, x = (torch.from_numpy(np.asarray(read(ds, s), np.float32)) for ds in (labels, zero_filled, recons))
            mask = foreground_mask(y, anatomy)
            ssim_x, ssim_zero = (float(leaderboard_ssim(img, y, top, anatomy)) for img in (x, zero))
            error = (x - y).abs().numpy()
            vmax = float(y.max()) or top
            tiles += [Tile(zero.numpy(), (Span(f"zero-filled · SSIM {ssim_zero:.4f}"),), vmax=vmax),
                      Tile(x.numpy(), (Span("reconstruction · "), Span(f"SSIM {ssim_x:.4f}",
                                                                       "good" if ssim_x > ssim_zero else "bad")),
                           vmax=vmax),
                      Tile(y.numpy(), (Span(f"target · {target.name} slice {s}"),), vmax=vmax),
                      Tile(error, (Span(f"|error| · max {error.max():.3g}"),), vmax=float(error.max()) or 1.0),
                      Tile(mask.numpy(), (Span(f"foreground · {mask.mean().item():.0%} of the slice"),), vmax=1.0)]
    return ImageGrid(title=f"{acc} {anatomy}: {target.name}", group=group, tiles=tiles, columns=5, tile_px=192,
                     note="Images share the target's grey scale; |error| is scaled to its own maximum.")


def report_items(view: RunView) -> list[ReportItem]:
    items: list[ReportItem] = [Baseline("zero_filled_total", "zero-filled input")]
    budget = _budget(view)
    if budget:
        items.append(budget)
    if view.data_root is None:
        return items
    leaderboard = view.data_root / "leaderboard"
    for scored in best_scored(view, "mri"):
        group = f"{scored.prediction}: the best reconstructions {scored.evaluate} scored"
        volumes = cached(view.cache, f"mri-volume-ssim-{scored.run.path.name}",
                         functools.partial(_volume_ssims, scored.run, leaderboard))
        items.append(_strip(volumes, group))
        for acc in leaderboard_folders(leaderboard):
            for anatomy in sorted(FOREGROUND_THRESHOLDS):
                files = sorted((leaderboard / acc / "image").glob(f"{anatomy}_*.h5"))
                if files:
                    items.append(_slices(scored, files[0], acc, group))
    return items
