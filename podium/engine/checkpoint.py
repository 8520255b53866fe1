"""Checkpoints that are atomic, checksummed, and recorded in the stage manifest.

File names are never reused for different content (``epoch=0003.ckpt``, ``best-step=000120.ckpt``),
and a checkpoint only counts once its sha256 is in the manifest. A crash at any instant therefore
leaves either the previous good state or the new one, and a truncated or bit-flipped file is caught
by its checksum before it is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint

from podium.errors import CorruptFileError
from podium.store import StageRun, atomic_path, sha256_file, verify_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's save writes in place and does not fsync; this one goes through ``atomic_path``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Only tensors and plain data: never unpickle arbitrary objects from a file."""
    return torch.load(path, map_location="cpu", weights_only=True)


def record_checkpoint(run: StageRun, keys: Sequence[str], path: Path, **info: Any) -> None:
    """Record ``path`` (checksummed once) under every key in ``keys``; a file no key names any more is
    deleted."""
    manifest = run.read_manifest()
    entry = {"file": path.relative_to(run.path).as_posix(), "sha256": sha256_file(path), **info}
    checkpoints = manifest.setdefault("checkpoints", {})
    previous = [checkpoints[k]["file"] for k in keys if k in checkpoints]
    for key in keys:
        checkpoints[key] = dict(entry)
    run.write_manifest(manifest)
    for file in dict.fromkeys(previous):
        if file != entry["file"] and not _referenced(manifest, file):
            (run.path / file).unlink(missing_ok=True)


def _referenced(manifest: dict[str, Any], file: str) -> bool:
    return any(c["file"] == file for c in manifest.get("checkpoints", {}).values())


def epoch_checkpoints(run: StageRun) -> list[dict[str, Any]]:
    """Recorded end-of-epoch checkpoints, newest first."""
    ckpts = [c for k, c in run.read_manifest().get("checkpoints", {}).items() if k.startswith("epoch=")]
    return sorted(ckpts, key=lambda c: c["epoch"], reverse=True)


def last_good_checkpoint(run: StageRun, warn) -> dict[str, Any] | None:
    """Newest end-of-epoch checkpoint whose checksum verifies; corrupt ones are reported and skipped."""
    for entry in epoch_checkpoints(run):
        try:
            verify_file(run.path / entry["file"], entry["sha256"])
            return entry
        except CorruptFileError as e:
            warn(f"{e}; falling back to the previous checkpoint")
    return None


def select_checkpoint(run: StageRun, select: str, epoch: int | None = None) -> Path:
    """The verified file for ``@best``, ``@last`` or ``@epoch=N`` of a finished stage."""
    ckpts = run.read_manifest().get("checkpoints", {})
    if select == "epoch":
        key = f"epoch={epoch}"
    elif select == "last":
        key = "last" if "last" in ckpts else next((f"epoch={c['epoch']}" for c in epoch_checkpoints(run)), "")
    else:
        key = "best" if "best" in ckpts else ("last" if "last" in ckpts else "")
    if key not in ckpts:
        raise CorruptFileError(f"{run.path}: no checkpoint {key or select!r} recorded "
                               f"(have: {', '.join(ckpts) or 'none'})")
    entry = ckpts[key]
    return verify_file(run.path / entry["file"], entry["sha256"])


class PodiumCheckpoint(Checkpoint):
    """Saves every N epochs and the best by ``monitor``; writes the per-epoch metrics row first.

    A best found by the validation at an epoch's end that is saved anyway is that epoch's file, recorded
    under both keys, not a second copy of the same weights.
    """

    def __init__(self, run: StageRun, monitor: str, mode: str, every_n_epochs: int, keep_last: int | None,
                 table, on_epoch=None):
        self.run = run
        self.monitor = monitor
        self.mode = mode
        self.every = every_n_epochs
        self.keep_last = keep_last
        self.table = table
        self.on_epoch = on_epoch
        self.best_score: float | None = None
        self._pending_best: dict[str, Any] | None = None
        self._epoch_lr: dict[str, float] = {}

    @property
    def state_key(self) -> str:
        return "PodiumCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]

    def _better(self, score: float) -> bool:
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def _save(self, trainer, name: str, keys: Sequence[str], **info: Any) -> None:
        path = self.run.path / "checkpoints" / name
        trainer.save_checkpoint(path, weights_only=False)
        if trainer.is_global_zero:
            record_checkpoint(self.run, keys, path, epoch=trainer.current_epoch + 1, step=trainer.global_step,
                              **info)

    def _saves_epoch(self, trainer) -> bool:
        epoch = trainer.current_epoch + 1
        return epoch % self.every == 0 or epoch == trainer.max_epochs

    @property
    def _epoch_metric(self) -> bool:
        """A training metric (``train_loss``) is final only at the epoch's end, after any validation."""
        return self.monitor.startswith("train_")

    def _judge(self, trainer, at_epoch_end: bool) -> None:
        # every rank must take the same decision: saving is collective (a barrier) under DDP
        score = float(trainer.strategy.broadcast(float(trainer.callback_metrics[self.monitor]), src=0))
        if self._better(score):
            self.best_score = score
            best = {"score": score, "monitor": self.monitor}
            if (at_epoch_end or trainer.is_last_batch) and self._saves_epoch(trainer):
                self._pending_best = best  # the epoch's checkpoint, at this very step, is the best one too
            else:
                self._save(trainer, f"best-step={trainer.global_step:07d}.ckpt", ["best"], **best)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not (trainer.sanity_checking or self._epoch_metric or self.monitor not in trainer.callback_metrics):
            self._judge(trainer, at_epoch_end=False)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_lr = _learning_rate(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._epoch_metric and self.monitor in trainer.callback_metrics:
            self._judge(trainer, at_epoch_end=True)
        epoch = trainer.current_epoch + 1
        metrics = {k: float(_across_ranks(trainer, k, v)) for k, v in sorted(trainer.callback_metrics.items())
                   if v.numel() == 1}
        row = {"epoch": epoch, "step": trainer.global_step, **metrics, **self._epoch_lr}
        if trainer.is_global_zero:
            self.table.append(row)
            if self.on_epoch:
                self.on_epoch(row)
        if self._saves_epoch(trainer):
            best, self._pending_best = self._pending_best, None
            self._save(trainer, f"epoch={epoch:04d}.ckpt", [f"epoch={epoch}", *(["best"] if best else [])],
                       **(best or {}))
            if trainer.is_global_zero and self.keep_last:
                self._prune()

    def _prune(self) -> None:
        manifest = self.run.read_manifest()
        for entry in epoch_checkpoints(self.run)[self.keep_last:]:
            del manifest["checkpoints"][f"epoch={entry['epoch']}"]
            if not _referenced(manifest, entry["file"]):
                (self.run.path / entry["file"]).unlink(missing_ok=True)
        self.run.write_manifest(manifest)


def _learning_rate(trainer) -> dict[str, float]:
    """``lr``: the first parameter group's learning rate as the epoch starts, the rate an epoch-interval
    schedule trains it with (by the epoch's end the scheduler has already stepped); the report plots it."""
    return {"lr": float(trainer.optimizers[0].param_groups[0]["lr"])} if trainer.optimizers else {}


def _across_ranks(trainer, name: str, value):
    """A training metric is each rank's mean over its shard: the row holds their mean over ranks.
    Validation metrics are already the same on every rank (validation is not sharded)."""
    if trainer.world_size == 1 or name.startswith("val"):
        return value
    return trainer.strategy.reduce(value.detach().float().to(trainer.strategy.root_device), reduce_op="mean")
