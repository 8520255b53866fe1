"""Seeds derived from content, never from the clock, so that any item can be recomputed on its own.

A sample's augmentation depends only on (seed, epoch, index): a run resumed mid-way, a DataLoader
with any number of workers, or one item recomputed in a test all see the same randomness.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch


def derive_seed(*parts: int | str) -> int:
    """A seed in [0, 2**32) from any tuple of ints / strings, stable across processes and versions.

    32 bits because that is what every consumer accepts (numpy's legacy RandomState, Lightning's
    ``seed_everything``, Optuna's samplers); a wider seed is silently replaced by some of them.
    """
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under torch's global RNG seeded with ``seed``, then restore the caller's state.

    torchvision's random transforms draw from the global generator; forking it keeps a sample's
    augmentation independent of what ran before it (other samples, other workers, the model). Only the
    CPU generator is seeded: ``torch.manual_seed`` would also queue a CUDA seeding call with its stack
    trace, which cost two thirds of a glyph sample's time.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


class SampleKey(NamedTuple):
    """What a training dataset is indexed by: the item, its seed (a function of run seed, epoch and item
    only) and the epoch, for augmentation schedules that change with it."""

    index: int
    seed: int
    epoch: int = 0


class EpochSampler(torch.utils.data.Sampler):
    """Yields :class:`SampleKey` ``(index, sample_seed, epoch)`` in an order that is a pure function of
    (seed, epoch).

    Lightning calls ``set_epoch`` before each epoch. Because nothing is carried from one epoch to the
    next, resuming at epoch ``e`` reproduces exactly the order an uninterrupted run would use. Under DDP
    rank ``r`` of ``w`` takes every ``w``-th item of that order from ``r`` on, the order padded from its
    start to a multiple of ``w`` (as ``DistributedSampler`` does, so every rank takes as many steps); a
    sample's seed depends on (seed, epoch, index) only, never on the number of processes.
    """

    def __init__(self, num_items: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_items // self.world_size)

    def __iter__(self) -> Iterator[SampleKey]:
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "order", self.epoch))
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        if self.world_size > 1:
            order = (order * self.world_size)[: len(self) * self.world_size][self.rank :: self.world_size]
        for i in order:
            yield SampleKey(i, derive_seed(self.seed, "sample", self.epoch, i), self.epoch)


def split_keys(keys: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic (train, held-out) split: sorted keys shuffled by ``seed``; same input -> same split.

    Keys are de-duplicated and sorted first so that file-system listing order never matters.
    """
    unique = sorted(dict.fromkeys(keys))
    g = torch.Generator().manual_seed(derive_seed(seed, "split"))
    order = torch.randperm(len(unique), generator=g).tolist()
    n_held = round(len(unique) * fraction)
    held = sorted(unique[i] for i in order[:n_held])
    train = sorted(unique[i] for i in order[n_held:])
    return train, held
