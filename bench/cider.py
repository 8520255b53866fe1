"""podium's CIDEr-D vs pycocoevalcap's ``Cider`` (CIDEr-D) on the same generated captions.

Two batches: a leaderboard-sized one (every candidate against its own references, df from them) and an
SCST step (samples x images, each sample against its image's references), where podium also scores with
document frequencies precomputed from a training corpus, as the reward does. Values must agree to 1e-9.

    python bench/cider.py [--images 5000] [--refs 5] [--vocab 300] [--samples 5] [--batch 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from pycocoevalcap.cider.cider import Cider

from podium.metrics.caption import CiderD, cider_d

T = TypeVar("T")


class Captions:
    """Sentences of Zipf-distributed words and paraphrases of them (a quarter of the words dropped, a few added)."""

    def __init__(self, vocab: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.words = np.array([f"w{i}" for i in range(vocab)])
        self.p = 1.0 / np.arange(1, vocab + 1)
        self.p /= self.p.sum()

    def sentence(self) -> list[str]:
        return list(self.rng.choice(self.words, size=self.rng.integers(6, 16), p=self.p))

    def paraphrase(self, base: list[str]) -> str:
        keep = [w for w in base if self.rng.random() > 0.25]
        for word in self.rng.choice(self.words, size=self.rng.integers(0, 4), p=self.p):
            keep.insert(self.rng.integers(0, len(keep) + 1), word)
        return " ".join(keep)


def pycocoevalcap_cider(candidates: list[str], references: list[list[str]]) -> np.ndarray:
    _, scores = Cider().compute_score(
        {i: refs for i, refs in enumerate(references)}, {i: [c] for i, c in enumerate(candidates)}
    )
    return np.asarray(scores)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def best_times(reference: Callable[[], T], podium: Callable[[], T], repeats: int) -> tuple[float, float, T, T]:
    """Best of ``repeats`` for each, the two alternating so that a busy machine slows both alike."""
    runs = [(timed(reference), timed(podium)) for _ in range(repeats)]
    (_, ref), (_, ours) = runs[-1]
    return min(r[0][0] for r in runs), min(r[1][0] for r in runs), ref, ours


def row(name: str, candidates: int, t_ref: float, t_pod: float, values: str = "") -> None:
    print(f"{name:28s} {candidates:6d} {values:29s} {1000 * t_ref:10.1f} {1000 * t_pod:9.1f} {t_ref / t_pod:7.1f}")


def compare(name: str, candidates: list[str], references: list[list[str]], repeats: int) -> float:
    t_ref, t_pod, ref, ours = best_times(
        lambda: pycocoevalcap_cider(candidates, references), lambda: cider_d(candidates, references), repeats
    )
    diff = float(np.abs(ours - ref).max())
    row(name, len(candidates), t_ref, t_pod, f"{ref.mean():9.5f} {ours.mean():9.5f} {diff:9.1e}")
    return diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="leaderboard batch: candidates")
    parser.add_argument("--refs", type=int, default=5, help="references per image")
    parser.add_argument("--vocab", type=int, default=300)
    parser.add_argument("--samples", type=int, default=5, help="SCST samples per image")
    parser.add_argument("--batch", type=int, default=64, help="SCST images per step")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gen = Captions(args.vocab)
    bases = [gen.sentence() for _ in range(args.images)]
    references = [[gen.paraphrase(base) for _ in range(args.refs)] for base in bases]
    candidates = [gen.paraphrase(base) for base in bases]
    print(
        f"{'batch':28s} {'cands':>6s} {'pycoco':>9s} {'podium':>9s} {'max|diff|':>9s} "
        f"{'pycoco ms':>10s} {'podium ms':>9s} {'speedup':>7s}"
    )
    diffs = [compare(f"leaderboard {args.images} x {args.refs} refs", candidates, references, args.repeats)]

    # SCST: the first `batch` images of the corpus, `samples` sampled captions each.
    samples = [gen.paraphrase(base) for base in bases[: args.batch] for _ in range(args.samples)]
    scst_references = [refs for refs in references[: args.batch] for _ in range(args.samples)]
    name = f"scst {args.samples} x {args.batch}, batch df"
    diffs.append(compare(name, samples, scst_references, args.repeats))
    t_build, reward = timed(lambda: CiderD(references))
    t_ref, t_pod, _, _ = best_times(
        lambda: pycocoevalcap_cider(samples, scst_references),
        lambda: reward.score(samples, scst_references),
        args.repeats,
    )
    row("scst, corpus df (reward)", len(samples), t_ref, t_pod)
    print(f"CiderD corpus of {len(references)} images x {args.refs} refs built once in {1000 * t_build:.0f} ms")
    worst = max(diffs)
    print(f"max |diff| {worst:.1e} ({'OK' if worst <= 1e-9 else 'FAIL'}: tolerance 1e-9)")


if __name__ == "__main__":
    main()
