"""Trainer factory: a Lightning Trainer from a recipe's ``trainer:`` section, with podium's callbacks.

Everything that makes a run resumable bit for bit is wired here: atomic checkpoint IO, RNG states in
checkpoints, per-epoch metrics rows, samplers whose order is a function of (seed, epoch), DataLoader
generators that never draw from the global RNG.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, Literal

import lightning as L
import torch
from pydantic import Field, field_validator

from podium.engine.checkpoint import AtomicCheckpointIO, PodiumCheckpoint
from podium.engine.distributed import World, stage_processes
from podium.engine.rng import RNGStateCallback
from podium.engine.seeding import EpochSampler, derive_seed
from podium.recipe import Strict


class TrainerConfig(Strict):
    max_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)  # torch CPU threads; hashed: the last bits depend on it
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true"] = "32-true"
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float | None = Field(None, gt=0)
    val_check_interval: float = Field(1.0, gt=0, le=1.0)
    check_val_every_n_epoch: int = Field(1, ge=1)
    grad_checkpointing: bool = False
    channels_last: bool = False
    # "warn": deterministic kernels wherever torch has one, a warning naming each op that has none (on
    # CUDA: AdaptiveAvgPool2d backward in timm's heads, bilinear interpolate backward, ...). True raises
    # on those ops at the first backward; on CPU both give the same bits.
    deterministic: bool | Literal["warn"] = "warn"
    monitor: str | None = None
    mode: Literal["max", "min"] | None = None
    save_every_n_epochs: int = Field(1, ge=1)
    keep_last: int | None = Field(None, ge=1)
    loggers: list[Literal["tensorboard", "wandb", "mlflow"]] = []
    progress: bool | None = None

    @field_validator("strategy")
    @classmethod
    def _supported_strategy(cls, strategy: str) -> str:
        """Strategies that fit podium's launch (one process per device, started before the runner) and
        its checkpoints (full state dicts that predict, soup and resume read)."""
        if strategy in STRATEGIES:
            return strategy
        if strategy.startswith(("ddp_spawn", "ddp_fork", "ddp_notebook")):
            raise ValueError(f"{strategy!r} starts processes from inside fit and must pickle the model and "
                             "podium's callbacks; podium starts one process per device itself: use 'ddp'")
        if strategy.startswith(("fsdp", "deepspeed")):
            raise ValueError(f"{strategy!r} writes sharded checkpoints, which predict, soup and exact resume "
                             "do not read; use 'ddp' (podium's recipes fit one GPU per model)")
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")

# trainer fields that change speed or display, never results
TRAINER_UNHASHED = ("trainer.num_workers", "trainer.progress", "trainer.loggers")


class DataModule(L.LightningDataModule):
    """Loaders over a task's datasets: seeded epoch order, and no draw from the global RNG.

    Under DDP each rank trains on its shard of the epoch's order, while validation is not sharded:
    every rank scores the whole validation set, so epoch metrics, and the checkpoint ``@best`` picks,
    are exactly those of one process, whatever a task computes from them.
    """

    def __init__(self, train_ds, val_ds, cfg: TrainerConfig, seed: int):
        super().__init__()
        self.train_ds, self.val_ds, self.cfg, self.seed = train_ds, val_ds, cfg, seed

    def _loader(self, ds, batch_size: int, shuffle: bool, shard: bool = False) -> torch.utils.data.DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if shard else (0, 1)
        return torch.utils.data.DataLoader(
            ds,
            batch_size=batch_size,
            sampler=EpochSampler(len(ds), self.seed, shuffle=shuffle, rank=rank, world_size=world),
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            generator=torch.Generator().manual_seed(derive_seed(self.seed, "loader")),
            drop_last=False,
        )

    def train_dataloader(self):
        return self._loader(self.train_ds, self.cfg.batch_size, shuffle=True, shard=True)

    def val_dataloader(self):
        if self.val_ds is None:  # a task trained on all its data (the best checkpoint by a training metric)
            return []
        return self._loader(self.val_ds, self.cfg.eval_batch_size or self.cfg.batch_size, shuffle=False)


def _loggers(cfg: TrainerConfig, log_dir) -> list[Any]:
    out = []
    for name in cfg.loggers:
        if name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger
            out.append(TensorBoardLogger(log_dir, name="tensorboard", version=""))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger
            out.append(WandbLogger(save_dir=log_dir))
        elif name == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger
            out.append(MLFlowLogger(save_dir=str(log_dir)))
    return out


def _quiet_lightning() -> None:
    """Lightning's banners (GPU available, tips) drown podium's own one-line-per-epoch output."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # podium reduces training metrics itself and never shards validation (see DataModule)
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")


def _placement(cfg: TrainerConfig, world: World) -> dict[str, Any]:
    """Devices, nodes and strategy for Lightning. A stage on every launched process runs DDP over them;
    any other stage runs on one device of rank 0 (``devices: auto`` never means "every GPU here")."""
    if stage_processes(cfg.devices, cfg.num_nodes, world) > 1:
        devices = world.local_size if cfg.devices == "auto" else cfg.devices
        return {"devices": devices, "num_nodes": world.num_nodes,
                "strategy": "ddp" if cfg.strategy == "auto" else cfg.strategy}
    return {"devices": 1 if cfg.devices == "auto" else cfg.devices, "num_nodes": 1, "strategy": "auto"}


def build_trainer(cfg: TrainerConfig, checkpoint: PodiumCheckpoint, root_dir, world: World,
                  extra_callbacks=(), validate: bool = True) -> L.Trainer:
    _quiet_lightning()
    if cfg.deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    progress = sys.stdout.isatty() if cfg.progress is None else cfg.progress
    callbacks: list[Any] = [RNGStateCallback(), *extra_callbacks, checkpoint]
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar
        callbacks.append(RichProgressBar())
    loggers = _loggers(cfg, root_dir / "logs")
    return L.Trainer(
        default_root_dir=root_dir,
        max_epochs=cfg.max_epochs,
        accelerator=cfg.accelerator,
        **_placement(cfg, world),
        use_distributed_sampler=False,
        precision=cfg.precision,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=cfg.gradient_clip_val,
        val_check_interval=cfg.val_check_interval,
        check_val_every_n_epoch=cfg.check_val_every_n_epoch,
        limit_val_batches=None if validate else 0,
        deterministic=cfg.deterministic,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=loggers or False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
