"""A test-only task small enough to train in a second: points in R^8, two classes, an MLP with dropout.

It exercises every piece of the core that real tasks use (synth files, seeded per-sample augmentation,
dropout drawing from the global RNG, a cosine scheduler, best-checkpoint selection, predict, evaluate,
submit) without any real data.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from pydantic import Field

from podium.engine.seeding import seeded
from podium.ensemble.predictions import Predictions
from podium.errors import DataError
from podium.recipe import Strict
from podium.stages.predict import PredictConfig
from podium.stages.synth import SynthConfig
from podium.stages.train import TrainConfig
from podium.store import atomic_write
from podium.tasks import Task, register_task


class TinySynth(SynthConfig):
    num_points: int = Field(256, ge=8)
    fail: bool = False  # raise instead of writing (failure tests)


class TinyModelCfg(Strict):
    hidden: int = 16
    dropout: float = 0.2


class TinyTrain(TrainConfig):
    model: TinyModelCfg = TinyModelCfg()
    lr: float = 0.05
    noise: float = 0.1
    sleep: float = 0.0
    fail_on_rank: int | None = None  # raise in the first training step of this rank (failure tests)


class TinyPredict(PredictConfig):
    split: Literal["val", "test"] = "test"


def _write_points(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    buf = io.StringIO()
    np.savetxt(buf, np.column_stack([x, y]), fmt="%.6f", delimiter=",")
    return atomic_write(path, buf.getvalue())


class Points(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, noise: float = 0.0):
        self.x = torch.tensor(x, dtype=torch.float32)
        self.y = torch.tensor(y, dtype=torch.long)
        self.noise = noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key):
        index, seed = key[:2] if isinstance(key, tuple) else (key, 0)
        x = self.x[index]
        if self.noise:
            with seeded(seed):
                x = x + self.noise * torch.randn_like(x)
        return x, self.y[index]


class MLP(torch.nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(hidden, 2))

    def forward(self, x):
        return self.net(x)


class TinyModule(L.LightningModule):
    def __init__(self, cfg: TinyTrain):
        super().__init__()
        self.cfg = cfg
        self.model = MLP(cfg.model.hidden, cfg.model.dropout)

    def training_step(self, batch, _):
        if self.cfg.sleep:
            import time
            time.sleep(self.cfg.sleep)
        if self.cfg.fail_on_rank == self.global_rank:
            raise RuntimeError(f"injected failure on rank {self.global_rank}")
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        logits = self.model(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.cfg.lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.cfg.trainer.max_epochs)
        return [opt], [sched]


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    return data[:, :8], data[:, 8].astype(np.int64)


@register_task
class TinyTask(Task):
    name = "tiny"
    version = "1"
    configs = {"synth": TinySynth, "train": TinyTrain, "predict": TinyPredict}
    monitor = "val_acc"
    monitor_mode = "max"

    def synth(self, cfg, out_dir, seed):
        if cfg.fail:
            raise DataError(f"{out_dir}: injected synth failure")
        rng = np.random.default_rng(seed)
        w = rng.normal(size=8)
        for split, n in (("train", cfg.num_points), ("val", cfg.num_points // 4), ("test", cfg.num_points // 4)):
            x = rng.normal(size=(n, 8))  # drawn for every split: a repaired file is the same as the first one
            _write_points(out_dir / f"{split}.csv", x, (x @ w > 0).astype(np.int64))

    def check_data(self, root):
        return [root / f"{s}.csv" for s in ("train", "val", "test")]

    def datasets(self, cfg, data_root, seed):
        return Points(*_load(data_root / "train.csv"), noise=cfg.noise), Points(*_load(data_root / "val.csv"))

    def module(self, cfg):
        return TinyModule(cfg)

    def predict(self, model, train_cfg, cfg, data_root, out_dir):
        x, _ = _load(data_root / f"{cfg.split}.csv")
        with torch.no_grad():
            probs = torch.softmax(model(torch.tensor(x, dtype=torch.float32)), 1).numpy()
        return Predictions(np.arange(len(x)), probs, "probs", cfg.split)

    def evaluate(self, preds, data_root, cfg, out_dir):
        _, y = _load(data_root / f"{preds.split}.csv")
        pred = preds.scores if preds.kind == "classes" else preds.scores.argmax(1)
        return {"accuracy": float((pred == y).mean())}

    def heldout_score(self, model, train_cfg, data_root):
        x, y = _load(data_root / "val.csv")
        with torch.no_grad():
            pred = model(torch.tensor(x, dtype=torch.float32)).argmax(1).numpy()
        return float((pred == y).mean())

    def submit(self, preds, data_root, cfg, out_path):
        pred = preds.scores if preds.kind == "classes" else preds.scores.argmax(1)
        rows = "".join(f"{i},{p}\n" for i, p in zip(preds.ids, pred, strict=True))
        return atomic_write(out_path, "id,label\n" + rows)
