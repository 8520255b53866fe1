"""CPU resources: the cores this process may use, and scoped intra-op thread counts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def available_cpus() -> int:
    """The CPUs this process may run on (a container's or ``taskset``'s limit, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run a block on ``count`` intra-op threads (None: as they are), then restore the caller's setting:
    ``torch.set_num_threads`` is process-wide.

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
