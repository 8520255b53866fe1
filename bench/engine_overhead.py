"""What podium's train stage costs over a hand-written PyTorch loop, and what a second DDP process buys.

Both sides train the same MLP on the same in-memory data with the same optimizer, validate once per
epoch and save a checkpoint (model + optimizer) once per epoch. podium's side is a whole
``podium.run`` of a one-stage recipe: recipe load, stage hash, lock, manifests, Lightning's loop,
atomic fsynced checkpoints with sha256, RNG states, the metrics CSV. The hand loop is what a
competition script does: a DataLoader, the step, ``torch.save``. Runs alternate and the median of
``--repeats`` is reported, for a model whose step takes >= 50 ms on this machine and for a tiny one.

Then samples/s of the large model's stage on 1 and on 2 DDP processes (CPU, gloo), each launched by a
plain ``podium run`` in a fresh process; the time is the stage's own (its manifest's attempt seconds).

This file is also the benchmark's task plugin (``bench_mlp``): the recipe imports it.

Usage: ``python bench/engine_overhead.py [--repeats 3] [--epochs 3] [--large-items 4096]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch import nn

from podium.stages.train import TrainConfig
from podium.tasks import Task, register_task

SIZES = {"large": {"width": 1536, "depth": 4, "batch": 256, "items": 4096},
         "tiny": {"width": 16, "depth": 1, "batch": 32, "items": 4096}}


class BenchTrain(TrainConfig):
    width: int = 16
    depth: int = 1
    num_items: int = 4096


def mlp(width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(64, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def data(num_items: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_items, 64, generator=g)
    return x, (x[:, :10].argmax(1) + (x[:, 10] > 1).long()) % 10


class Keyed(torch.utils.data.Dataset):
    """podium's samplers fetch ``(index, sample_seed)``; these items need no seed."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key):
        return self.x[key[0]], self.y[key[0]]


class Module(L.LightningModule):
    def __init__(self, cfg: BenchTrain):
        super().__init__()
        self.model = mlp(cfg.width, cfg.depth)

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_acc", (self.model(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


@register_task
class BenchMLP(Task):
    name = "bench_mlp"
    configs = {"train": BenchTrain}
    monitor, monitor_mode = "val_acc", "max"

    def datasets(self, cfg, data_root, seed):
        x, y = data(cfg.num_items)
        return Keyed(x, y), Keyed(*data(cfg.num_items // 4, seed=1))

    def module(self, cfg):
        return Module(cfg)


def hand_loop(size: dict, epochs: int, out: Path) -> float:
    """The same training as the recipe, written out: seconds."""
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = mlp(size["width"], size["depth"])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train = torch.utils.data.TensorDataset(*data(size["items"]))
    val = torch.utils.data.TensorDataset(*data(size["items"] // 4, seed=1))
    loader = torch.utils.data.DataLoader(train, batch_size=size["batch"], shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in
                       torch.utils.data.DataLoader(val, batch_size=size["batch"]))
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                    "val_acc": hits / len(val)}, out / f"epoch={epoch}.pt")
    return time.perf_counter() - t0


def write_recipe(directory: Path, size: dict, epochs: int) -> Path:
    recipe = directory / "bench.yaml"
    recipe.write_text(
        f"name: bench-overhead\ntask: bench_mlp\nseed: 0\nplugins: [{Path(__file__).resolve()}]\nstages:\n"
        f"  fit: {{kind: train, width: {size['width']}, depth: {size['depth']}, num_items: {size['items']},"
        f" trainer: {{max_epochs: {epochs}, batch_size: {size['batch']}, progress: false}}}}\n")
    return recipe


def podium_run(recipe: Path, store: Path) -> float:
    from rich.console import Console

    import podium

    t0 = time.perf_counter()
    podium.run(recipe, store=store, console=Console(quiet=True), report=False)
    return time.perf_counter() - t0


def step_ms(size: dict) -> float:
    model = mlp(size["width"], size["depth"])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data(size["batch"])
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[1:])


def ddp_samples_per_s(recipe: Path, store: Path, devices: int, epochs: int, items: int) -> float:
    env = {**os.environ, "PODIUM_HOME": str(store)}
    subprocess.run([sys.executable, "-m", "podium", "run", str(recipe), f"stages.fit.trainer.devices={devices}",
                    "stages.fit.trainer.accelerator=cpu"], env=env, check=True, capture_output=True)
    (manifest,) = (store / "bench-overhead" / "fit").glob("*/manifest.json")
    return epochs * items / json.loads(manifest.read_text())["attempts"][-1]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--large-items", type=int, default=4096, help="training items of the large model "
                        "(256 per step: 4096 is 16 steps per epoch, where the per-epoch checkpoint weighs most)")
    args = parser.parse_args()
    SIZES["large"]["items"] = args.large_items
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, size in SIZES.items():
            (tmp / name).mkdir()
            recipe = write_recipe(tmp / name, size, args.epochs)
            hand, ours = [], []
            for r in range(args.repeats):
                (tmp / name / f"hand{r}").mkdir()
                hand.append(hand_loop(size, args.epochs, tmp / name / f"hand{r}"))
                ours.append(podium_run(recipe, tmp / name / f"store{r}"))
            h, p = statistics.median(hand), statistics.median(ours)
            print(f"{name:5s} (step {step_ms(size):6.1f} ms, {args.epochs} epochs x {size['items']} items): "
                  f"hand loop {h:6.2f} s, podium train stage {p:6.2f} s, ratio {p / h:.3f}x")
        recipe = tmp / "large" / "bench.yaml"
        one, two = (ddp_samples_per_s(recipe, tmp / f"ddp{n}", n, args.epochs, SIZES["large"]["items"])
                    for n in (1, 2))
        print(f"large, DDP on CPU: 1 process {one:,.0f} samples/s, 2 processes {two:,.0f} samples/s, "
              f"ratio {two / one:.2f}x")


if __name__ == "__main__":
    main()
