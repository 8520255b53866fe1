"""Scoped intra-op thread counts: ``torch.set_num_threads`` is process-wide, so every change is undone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run a block on ``count`` intra-op threads (None: as they are), then restore the caller's setting.

    A stage that pins its threads must not leak the setting into the next stage of the same run, whose
    last bits depend on the thread count too.
    """
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
