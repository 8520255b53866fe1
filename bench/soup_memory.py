"""Peak memory and time of podium's greedy soup next to a soup that loads every member first.

Both sides run the same ``greedy_soup`` on the same members (a 4.2M-parameter MLP with BatchNorm,
~17 MB each, written with ``torch.save``); only the loader differs: podium reads each member from
its file when it is needed, the baseline holds all N state dicts in a list first.

How memory is measured: each (method, N, repeat) runs in a fresh process, which reads its resident
set size after importing torch (VmRSS) and its peak resident set size at the end
(``getrusage(RUSAGE_SELF).ru_maxrss``); the difference is the extra peak the soup needed. tracemalloc
would not see torch's storage; RSS sees everything, including the page-cached file reads torch maps.
The member files are read once beforehand so that both sides read from a warm page cache.

What to expect: podium's live data is the float64 accumulator (2 float32 state dicts), one member
and one candidate, ~4 dicts whatever N; RSS shows 1-3 more that glibc keeps after frees. The
load-all baseline adds N dicts. podium reads each member twice (once to rank, once to soup) because
no scores are passed in, so it is slower when the files sit in the page cache.

Usage: ``python bench/soup_memory.py [--sizes 2 8 32] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

WIDTH = 1024


def template() -> dict[str, torch.Tensor]:
    """State-dict layout of the benchmark model (keys, shapes, dtypes)."""
    layers: list[nn.Module] = []
    for _ in range(3):
        layers += [nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH), nn.ReLU()]
    layers.append(nn.Linear(WIDTH, WIDTH))
    return nn.Sequential(*layers).state_dict()


def write_members(directory: Path, count: int) -> list[Path]:
    """Member i: every float tensor N(0, s_i^2) with s_i in 1, 1.5, 2, 2.5 so some members get rejected."""
    layout = template()
    paths = []
    for i in range(count):
        generator = torch.Generator().manual_seed(i)
        scale = 1.0 + 0.5 * (i % 4)
        state = {
            k: torch.randn(v.shape, generator=generator) * scale
            if torch.is_floating_point(v)
            else torch.tensor(i, dtype=v.dtype)
            for k, v in layout.items()
        }
        paths.append(directory / f"member{i:02d}.pt")
        torch.save(state, paths[-1])
    return paths


def evaluate(state_dict: dict[str, torch.Tensor]) -> float:
    """Stand-in held-out score touching every weight: smaller weights score higher."""
    return -sum(float(v.pow(2).mean()) for v in state_dict.values() if torch.is_floating_point(v))


def current_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(method: str, directory: Path, count: int) -> None:
    from podium.ensemble.soup import greedy_soup

    paths = sorted(directory.glob("member*.pt"))[:count]

    def load(path: Path) -> dict[str, torch.Tensor]:
        return torch.load(path, map_location="cpu", weights_only=True)

    before = current_rss_bytes()
    start, cpu_start = time.perf_counter(), time.process_time()
    if method == "podium":
        result = greedy_soup(paths, load, evaluate)
    else:
        members = {p: load(p) for p in paths}
        result = greedy_soup(paths, members.__getitem__, evaluate)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"extra_peak": peak - before, "seconds": seconds, "cpu": cpu, "kept": len(result.ingredients)}))


def measure(method: str, directory: Path, count: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(directory), str(count)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{method} N={count} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "DIR", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, directory, count = args.child
        child(method, Path(directory), int(count))
        return

    layout = template()
    params = sum(v.numel() for v in layout.values() if torch.is_floating_point(v))
    member_mb = sum(v.numel() * v.element_size() for v in layout.values()) / 2**20
    print(f"model: {params / 1e6:.2f}M float parameters, {member_mb:.1f} MiB per state dict")
    print(f"repeats: {args.repeats} fresh processes per cell, interleaved; median memory, fastest time\n")
    header = f"{'N':>3} {'kept':>4} | {'podium MiB':>10} {'(dicts)':>7} {'s':>6} {'cpu s':>6} | "
    header += f"{'load-all MiB':>12} {'(dicts)':>7} {'s':>6} {'cpu s':>6} | {'mem ratio':>9} {'cpu ratio':>9}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="podium-soup-bench-") as tmp:
        directory = Path(tmp)
        paths = write_members(directory, max(args.sizes))
        for path in paths:
            path.read_bytes()
        for count in args.sizes:
            methods = ("podium", "load_all")
            runs: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
            for _ in range(args.repeats):
                for method in methods:
                    runs[method].append(measure(method, directory, count))
            cells = {
                m: {
                    "mib": statistics.median(r["extra_peak"] for r in runs[m]) / 2**20,
                    "s": min(r["seconds"] for r in runs[m]),
                    "cpu": min(r["cpu"] for r in runs[m]),
                    "kept": runs[m][0]["kept"],
                }
                for m in methods
            }
            ours, base = cells["podium"], cells["load_all"]
            print(
                f"{count:>3} {ours['kept']:>4} | {ours['mib']:>10.1f} {ours['mib'] / member_mb:>7.1f} "
                f"{ours['s']:>6.2f} {ours['cpu']:>6.2f} | {base['mib']:>12.1f} {base['mib'] / member_mb:>7.1f} "
                f"{base['s']:>6.2f} {base['cpu']:>6.2f} | {base['mib'] / ours['mib']:>8.2f}x "
                f"{ours['cpu'] / base['cpu']:>8.2f}x"
            )
    print("\nmem ratio = load-all extra peak / podium extra peak; cpu ratio = podium CPU s / load-all CPU s")
    print("s = wall seconds (noisy on a shared machine); cpu s = process CPU seconds, all threads")


if __name__ == "__main__":
    main()
