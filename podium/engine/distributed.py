"""Many processes, one run: who am I (rank), how many are we, and how the ranks keep in step.

Every process of a multi-process run executes the same runner over the same recipe and computes the
same stage hashes. Whatever started the processes (``podium run`` itself through torch's elastic
launcher, ``torchrun``, or ``srun``), the ranks are read from the environment here. Only global rank 0
takes locks and writes; the others join the train stages that use all processes and otherwise wait
for rank 0 on a control group (gloo, with a timeout longer than any stage) that also carries a
failure on rank 0 to every rank, so no rank is left waiting for a stage that will never finish.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podium.errors import PodiumError

# a rank waits this long for rank 0 to finish a stage it does not join (a synth stage can take a day)
CONTROL_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run (a single process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    launcher: str = "none"  # "torchrun" (also podium's own launch), "slurm" or "none"

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    @property
    def num_nodes(self) -> int:
        return self.size // self.local_size


SINGLE = World()


def detect_world(environ: dict[str, str] | None = None) -> World:
    """Read the ranks that torchrun (``RANK``/``WORLD_SIZE``) or srun (``SLURM_PROCID``/``SLURM_NTASKS``) set.

    srun inside an interactive allocation (job name ``bash`` or ``interactive``) is not a launch, as in
    Lightning's SLURM detection.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        size = int(env["WORLD_SIZE"])
        return World(int(env["RANK"]), size, int(env.get("LOCAL_RANK", 0)),
                     int(env.get("LOCAL_WORLD_SIZE", size)), "torchrun")
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        size = int(env["SLURM_NTASKS"])
        local_size = int(env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0] or size)
        return World(int(env["SLURM_PROCID"]), size, int(env.get("SLURM_LOCALID", 0)), local_size, "slurm")
    return World()


def stage_processes(devices: int | str | list[int], num_nodes: int, world: World) -> int:
    """How many processes a train stage asks for. ``devices: auto`` means one per launched process on
    each node (one process when nothing launched several), never Lightning's "all GPUs of the machine":
    podium, not Lightning, starts the processes."""
    if isinstance(devices, list):
        per_node = len(devices)
    elif isinstance(devices, int):
        per_node = devices
    elif devices == "auto" or devices == "-1":
        per_node = world.local_size
    else:  # "2" or "0,1" as Lightning reads them
        per_node = int(devices) if devices.isdigit() else len(devices.split(","))
    return per_node * num_nodes


class Coordinator:
    """Keeps the ranks of one run in step between stages; a no-op for a single process."""

    def __init__(self, world: World):
        self.world = world
        self.group = None
        if world.size > 1:
            self.group = _control_group(world)

    def barrier(self) -> None:
        if self.group is not None:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (others pass anything)."""
        if self.group is None:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def on_zero(self, label: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 while the other ranks wait; its result (or its failure) reaches every rank."""
        if self.group is None:
            return fn()
        if not self.world.is_zero:
            ok, payload = self.broadcast(None)
            if not ok:
                raise PodiumError(f"{label} failed on rank 0 ({payload}); this rank stops too")
            return payload
        try:
            result = fn()
        except BaseException as e:
            self.broadcast((False, f"{type(e).__name__}: {e}"))
            raise
        self.broadcast((True, result))
        return result


def _control_group(world: World):
    """The default process group (Lightning's DDP reuses it) and a gloo group with a long timeout."""
    import torch
    import torch.distributed as dist

    if world.launcher == "slurm" and "MASTER_ADDR" not in os.environ:
        from lightning.fabric.plugins.environments import SLURMEnvironment

        env = SLURMEnvironment()
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = env.main_address, str(env.main_port)
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, init_method="env://", rank=world.rank, world_size=world.size)
    return dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``nproc`` local ranks of the ``podium`` command line ``argv`` and return their exit code.

    What torchrun does for one machine, but the ranks stay in this process group and die with this
    process (``kill -9`` of either leaves no rank training on alone), and when one rank fails the others
    are stopped at once. The environment is torchrun's, so Lightning sees a torchelastic launch. The
    cores are shared out between the ranks.
    """
    from podium.engine.threads import available_cpus

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, available_cpus() // nproc))}
    procs = [subprocess.Popen([sys.executable, "-m", "podium", *argv], preexec_fn=_die_with_parent,
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the ranks themselves
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: [p.send_signal(signum) for p in procs if p.poll() is None])
    while True:
        codes = [p.poll() for p in procs]
        failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
        if failed or all(c == 0 for c in codes):
            break
        time.sleep(0.05)
    if failed:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        rank, code = failed[0]
        print(f"podium: rank {rank} of {nproc} exited with code {code}; the other ranks were stopped",
              file=sys.stderr)
        return code
    return 0


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the launching process dies (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
