"""Leaderboard reconstruction in the challenge's format, timed against its 3,600 s inference budget.

Reads ``leaderboard/<accX>/kspace/*.h5`` slice batches (each batch from one file, which fixes the coil
count and size) through a DataLoader, so HDF5 reads overlap the model when ``num_workers > 0``, and
writes ``reconstructions_leaderboard/<accX>/<same name>.h5`` with dataset ``reconstruction``
(slices, crop, crop) float32 as each volume completes. The k-space is multiplied by the file's own
stored mask: at inference the acquisition is what it is.

A collected mixture of experts (a model with ``route``) first classifies each volume from its image
file's ``image_grappa`` (the only image data the challenge's rules let inference read), then sends every
slice to its expert; ``routing.json`` records, per file, the router's anatomy and logits and the experts
its slices went to.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from podium.errors import DataError
from podium.hdf5 import open_h5, read, require_dataset
from podium.metrics.reconstruction import evaluate_folder
from podium.metrics.ssim import RECON_KEY
from podium.store import atomic_path, write_json
from podium.tasks.mri.data import MriReader, MriVolume, parse_snu_name, scan_snu, slice_index
from podium.tasks.mri.dataset import masked_kspace

RECON_DIR = "reconstructions_leaderboard"
TIMING_FILE = "reconstruct.json"
ROUTING_FILE = "routing.json"
ROUTER_INPUT = "image_grappa"
BUDGET_SECONDS = 3600.0


def leaderboard_folders(root: Path) -> list[str]:
    """The ``acc<N>`` folders of a leaderboard root, by acceleration: the groups the ranking averages."""
    if not root.is_dir():
        raise DataError(f"{root}: leaderboard folder not found")
    folders = [p.name for p in root.iterdir() if p.is_dir() and re.fullmatch(r"acc\d+", p.name)]
    if not folders:
        raise DataError(f"{root}: no acc<N> folders (expected acc4 and acc8)")
    return sorted(folders, key=lambda name: int(name[3:]))


class _KspaceSlices(torch.utils.data.Dataset):
    """Leaderboard slices in file order -> (masked k-space, mask) with the file's stored mask."""

    def __init__(self, volumes: list[MriVolume]):
        self.volumes = volumes
        self.index = slice_index(volumes)
        self.reader = MriReader()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        v, s = self.index[index]
        volume = self.volumes[v]
        return masked_kspace(self.reader.kspace(volume, s), self.reader.mask(volume))


def _volume_batches(volumes: list[MriVolume], batch_size: int) -> tuple[list[list[int]], list[int]]:
    """Batches of consecutive slice indices that never cross a file, and the volume of each batch."""
    batches, owners, start = [], [], 0
    for v, volume in enumerate(volumes):
        for first in range(0, volume.num_slices, batch_size):
            batches.append(list(range(start + first, start + min(first + batch_size, volume.num_slices))))
            owners.append(v)
        start += volume.num_slices
    return batches, owners


def _write_reconstruction(path: Path, volume: np.ndarray) -> Path:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(RECON_KEY, data=volume.astype(np.float32, copy=False))
    return path


def _route(model: torch.nn.Module, volume: MriVolume, folder: Path) -> dict:
    """The router's decision for one volume from its image file's ``image_grappa`` slices."""
    with open_h5(folder / "image" / volume.name) as f:
        images = torch.from_numpy(read(require_dataset(f, ROUTER_INPUT, 3)).astype(np.float32))
    anatomy, logits = model.route(images)
    return {"anatomy": anatomy, "logits": logits, "experts": {}}


def _routing_table(routes: dict[str, dict]) -> Table:
    table = Table(title="routing")
    for col in ("file", "router", "experts (slices)"):
        table.add_column(col)
    for name, r in routes.items():
        table.add_row(name, r["anatomy"], ", ".join(f"{k} ({n})" for k, n in r["experts"].items()))
    return table


def routing_metrics(routes: dict[str, dict]) -> dict[str, float]:
    """Router accuracy against the anatomy in each file name, and how many volumes each expert served."""
    right = [r["anatomy"] == parse_snu_name(name)[0] for name, r in routes.items()]
    served: dict[str, int] = {}
    for r in routes.values():
        for key in r["experts"]:
            served[key] = served.get(key, 0) + 1
    return {"router_accuracy": sum(right) / len(right), **{f"volumes_{k}": n for k, n in sorted(served.items())}}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def reconstruct_leaderboard(
    model: torch.nn.Module,
    leaderboard_root: Path,
    out_dir: Path,
    *,
    batch_size: int = 1,
    num_workers: int = 0,
    device: str = "auto",
    console: Console | None = None,
) -> list[Path]:
    """Reconstruct every leaderboard volume under ``out_dir/reconstructions_leaderboard``; return the files
    written, the last being ``reconstruct.json`` (seconds, share of the 3,600 s budget, slices, device).

    The clock runs from the first read to the last file written, as the challenge timed its scripts.
    """
    console = console or Console()
    volumes, targets = [], []
    for acc in leaderboard_folders(leaderboard_root):
        for volume in scan_snu(leaderboard_root / acc, with_targets=False):
            volumes.append(volume)
            targets.append(out_dir / RECON_DIR / acc / volume.name)
    batches, owners = _volume_batches(volumes, batch_size)
    loader = torch.utils.data.DataLoader(_KspaceSlices(volumes), batch_sampler=batches, num_workers=num_workers)
    dev = _device(device)
    model = model.to(dev).eval()
    total = sum(v.num_slices for v in volumes)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console)
    files, pending = [], []
    routes: dict[str, dict] = {}
    start = time.perf_counter()
    with progress, torch.inference_mode():
        bar = progress.add_task("reconstruct leaderboard", total=total)
        for (kspace, mask), v in zip(loader, owners, strict=True):
            kspace, mask = kspace.to(dev), mask.to(dev)
            if not hasattr(model, "route"):
                pending.append(model(kspace, mask).float().cpu().numpy())
            else:
                name = f"{targets[v].parent.name}/{volumes[v].name}"
                if name not in routes:
                    routes[name] = _route(model, volumes[v], leaderboard_root / targets[v].parent.name)
                anatomy = routes[name]["anatomy"]
                for i in range(len(mask)):
                    expert = model.expert_for(mask[i], anatomy)
                    routes[name]["experts"][expert] = routes[name]["experts"].get(expert, 0) + 1
                pending.append(model(kspace, mask, anatomy).float().cpu().numpy())
            if sum(len(p) for p in pending) == volumes[v].num_slices:
                files.append(_write_reconstruction(targets[v], np.concatenate(pending)))
                pending = []
            progress.update(bar, advance=len(kspace))
    seconds = time.perf_counter() - start
    share = seconds / BUDGET_SECONDS
    console.print(f"reconstructed {total} slices of {len(volumes)} volumes in {seconds:.1f} s on {dev.type}: "
                  f"{100 * share:.2f}% of the challenge's {BUDGET_SECONDS:,.0f} s inference budget")
    timing = {"seconds": seconds, "budget_seconds": BUDGET_SECONDS, "budget_share": share, "slices": total,
              "volumes": len(volumes), "device": str(dev), "batch_size": batch_size}
    if routes:
        files.append(write_json(out_dir / ROUTING_FILE, routes))
        console.print(_routing_table(routes))
    return [*files, write_json(out_dir / TIMING_FILE, timing)]


def fastmri_metrics(recon_root: Path, leaderboard_root: Path, folders: list[str]) -> dict[str, float]:
    """fastMRI's own evaluate as a second opinion: per-volume NMSE, PSNR and SSIM (skimage, volume max),
    averaged over every leaderboard volume. Unlike the leaderboard SSIM it has no foreground mask."""
    sums = dict.fromkeys(("SSIM", "PSNR", "NMSE"), 0.0)
    volumes = 0
    for acc in folders:
        result = evaluate_folder(leaderboard_root / acc / "image", recon_root / acc, target_key="image_label")
        count = len(result["volumes"])
        for k in sums:
            sums[k] += result["mean"][k] * count
        volumes += count
    return {f"fastmri_{k.lower()}": total / volumes for k, total in sums.items()}
