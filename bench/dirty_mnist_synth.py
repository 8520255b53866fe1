"""Images per second of podium's dirty MNIST synthesis vs a straightforward single-process loop.

Both sides draw the same images from the same glyphs (same generator per image, same draw order, the
same OpenCV warp), and the run checks that every decoded image and every label is identical, so the
rates compare equal work. The reference is what one writes first: one process, an int64 canvas,
``cv2.imwrite`` with OpenCV's default PNG settings, a pandas CSV at the end. podium adds, in the same
run: worker processes over chunks, run-length PNG encoding, and durability the reference lacks
(each PNG written atomically with fsync, label shards committed per chunk, resumable).

    python bench/dirty_mnist_synth.py [--images 2000] [--canvas 256] [--workers N]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from podium.engine.threads import available_cpus
from podium.tasks.multilabel.glyphs import LETTERS, render_glyph_table
from podium.tasks.multilabel.synth import GlyphBank, synthesize_split

SEED = 0
TRAIN_STREAM = 0  # podium's generator per image is default_rng([seed, split stream, index])


def reference_synthesize(
    letters: np.ndarray, glyphs: np.ndarray, out_dir: Path, count: int, canvas: int
) -> None:
    """The algorithm as a plain per-image loop (no scale capping: needs a canvas of at least 80 px)."""
    pools = [glyphs[letters == k] for k in range(26)]
    out_dir.mkdir(parents=True)
    rows = []
    for index in range(count):
        rng = np.random.default_rng([SEED, TRAIN_STREAM, index])
        image = rng.integers(0, 255, (canvas, canvas), dtype=np.uint8).astype(np.int64)
        labels = [0] * 26
        for letter in rng.choice(26, size=int(rng.integers(10, 15)), replace=False):
            pool = pools[letter]
            glyph = np.clip(pool[rng.integers(len(pool))].astype(np.int64) * 2, 0, 255).astype(np.uint8)
            scale, angle = rng.uniform(1.0, 2.0), rng.uniform(0.0, 360.0)
            rad = math.radians(angle)
            size = math.ceil(28 * scale * (abs(math.cos(rad)) + abs(math.sin(rad))) - 1e-9)
            matrix = cv2.getRotationMatrix2D((13.5, 13.5), angle, scale)
            matrix[:, 2] += (size - 1) / 2 - 13.5
            glyph = cv2.warpAffine(glyph, matrix, (size, size), flags=cv2.INTER_LINEAR)
            if rng.random() < 0.3:
                glyph = (glyph * rng.uniform(0.3, 0.7)).astype(np.uint8)
            x = rng.integers(0, canvas - size + 1)
            y = rng.integers(0, canvas - size + 1)
            image[y : y + size, x : x + size] += glyph
            labels[letter] = 1
        cv2.imwrite(str(out_dir / f"{index:05d}.png"), np.clip(image, 0, 255).astype(np.uint8))
        rows.append([index, *labels])
    pd.DataFrame(rows, columns=["index", *LETTERS]).to_csv(out_dir.parent / "reference.csv", index=False)


def same_output(a_dir: Path, a_csv: Path, b_dir: Path, b_csv: Path, count: int) -> bool:
    for index in range(count):
        a = cv2.imread(str(a_dir / f"{index:05d}.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(b_dir / f"{index:05d}.png"), cv2.IMREAD_UNCHANGED)
        if not np.array_equal(a, b):
            return False
    return pd.read_csv(a_csv).equals(pd.read_csv(b_csv))


def mean_kib(directory: Path) -> float:
    sizes = [p.stat().st_size for p in directory.glob("*.png")]
    return sum(sizes) / len(sizes) / 1024


def run_once(args: argparse.Namespace, letters: np.ndarray, glyphs: np.ndarray, check: bool) -> dict:
    """Time the three variants on fresh folders; on the first round also compare their outputs."""
    n, bank = args.images, GlyphBank(letters, glyphs)
    common = dict(bank=bank, seed=SEED, split="train", first_index=0, count=n, canvas_size=args.canvas)
    work = Path(tempfile.mkdtemp(prefix="dirty_mnist_bench_"))
    try:
        times = {}
        start = time.perf_counter()
        reference_synthesize(letters, glyphs, work / "reference" / "img", n, args.canvas)
        times["reference"] = time.perf_counter() - start
        for name, workers in (("one", 1), ("all", args.workers)):
            start = time.perf_counter()
            synthesize_split(
                work / name / "img", work / name / "answer.csv", workers=workers, progress=False,
                chunk_size=max(1, min(500, n // (4 * workers))), **common,
            )  # fmt: skip
            times[name] = time.perf_counter() - start
        if check:
            ref = (work / "reference" / "img", work / "reference" / "reference.csv")
            times["identical"] = all(
                same_output(*ref, work / name / "img", work / name / "answer.csv", n)
                for name in ("one", "all")
            )
            times["kib"] = (mean_kib(work / "reference" / "img"), mean_kib(work / "all" / "img"))
        return times
    finally:
        shutil.rmtree(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--canvas", type=int, default=256)
    parser.add_argument("--workers", type=int, default=available_cpus())
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds; each variant's best round is reported"
    )
    parser.add_argument("--glyphs-per-letter", type=int, default=20)
    args = parser.parse_args()
    if args.canvas < 80:
        parser.error("--canvas must be >= 80: the reference does not shrink glyphs to fit")

    letters, glyphs = render_glyph_table(SEED, args.glyphs_per_letter, "train")
    rounds = [run_once(args, letters, glyphs, check=r == 0) for r in range(args.repeats)]
    n, w = args.images, args.workers
    best = {k: min(r[k] for r in rounds) for k in ("reference", "one", "all")}
    median = {k: statistics.median(r[k] for r in rounds) for k in best}
    cores = available_cpus()
    print(f"{n} images at {args.canvas} px; {w} worker(s) on {cores} core(s); best of {args.repeats} rounds")
    labels = {
        "reference": "reference (1 process, cv2.imwrite defaults)",
        "one": "podium, 1 worker (atomic write + fsync/PNG)",
        "all": f"podium, {w} worker(s)",
    }
    for key, label in labels.items():
        print(f"{label:45s} {n / best[key]:7.1f} images/s  (median {n / median[key]:7.1f})")
    print(
        f"ratio vs reference: podium {w} worker(s) {best['reference'] / best['all']:.2f}x,"
        f" 1 worker {best['reference'] / best['one']:.2f}x"
    )
    kib_ref, kib_podium = rounds[0]["kib"]
    print(
        f"identical pixels and labels: {rounds[0]['identical']};"
        f" mean PNG {kib_ref:.1f} KiB (reference), {kib_podium:.1f} KiB (podium)"
    )


if __name__ == "__main__":
    main()
