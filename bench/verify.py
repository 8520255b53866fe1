"""Data-set verification throughput: podium's checksum check against ``sha256sum -c`` on the same files.

Two data sets stand for the ones podium checks: many small files (dirty MNIST's 64 KB PNGs) and a few
large ones (FastMRI k-space volumes). Each is written, recorded as a synth stage records it, and then
checked three ways in the same run, best of ``--repeats`` with the files in the page cache:

- ``sha256sum -c`` over a listing of the files (coreutils, one process);
- podium's deep check (``podium verify``): every file read and hashed on ``HASH_THREADS`` threads;
- podium's check before a run: files not written since they last verified cost one ``stat``.

    python bench/verify.py [--small 4000] [--small-kb 64] [--large 4] [--large-mb 96] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from podium.store import HASH_THREADS, StageRun, atomic_write


def make_files(root: Path, count: int, size: int) -> list[Path]:
    """``count`` files of ``size`` seeded random bytes (incompressible, like noise PNGs and k-space)."""
    return [atomic_write(root / f"{i:06d}.bin", np.random.default_rng(i).bytes(size)) for i in range(count)]


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(name: str, count: int, size: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="podium-bench-verify-") as tmp:
        root, run_dir = Path(tmp) / "data", Path(tmp) / "run"
        files = make_files(root, count, size)
        run = StageRun(run_dir)
        run.record_files(root, files)
        sums = Path(tmp) / "SHA256SUMS"
        sums.write_text("".join(f"{digest}  {rel}\n" for rel, (_, digest) in run.listed_files().items()))
        total_mb = count * size / 1e6

        def coreutils() -> None:
            subprocess.run(["sha256sum", "--quiet", "-c", str(sums)], cwd=root, check=True)

        def deep() -> None:
            assert run.check_files(root, deep=True) == {}

        def stamped() -> None:
            assert run.check_files(root) == {}

        coreutils()  # both start with the files in the page cache
        t_ref, t_deep, t_stamp = (best_of(repeats, f) for f in (coreutils, deep, stamped))
        print(f"{name}: {count} files x {size / 1e6:.3f} MB = {total_mb:.0f} MB")
        print(f"  sha256sum -c          {total_mb / t_ref:8.0f} MB/s  ({t_ref:.3f} s)")
        print(f"  podium verify (deep)  {total_mb / t_deep:8.0f} MB/s  ({t_deep:.3f} s)  "
              f"{t_ref / t_deep:.2f}x sha256sum, {HASH_THREADS} threads")
        print(f"  podium before a run   {count / t_stamp:8.0f} files/s ({t_stamp:.3f} s)  "
              f"{t_ref / t_stamp:.0f}x faster than sha256sum")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=4000, help="number of small files")
    parser.add_argument("--small-kb", type=int, default=64)
    parser.add_argument("--large", type=int, default=4, help="number of large files")
    parser.add_argument("--large-mb", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        raise SystemExit("sha256sum (coreutils) not found: it is the reference this benchmark compares against")
    print(f"cores available: {len(os.sched_getaffinity(0))}")
    bench("small files", args.small, args.small_kb * 1024, args.repeats)
    bench("large files", args.large, args.large_mb * 1024 * 1024, args.repeats)


if __name__ == "__main__":
    main()
