"""Readers for Dacon's dirty MNIST 2nd layout, its augmentations and the training dataset.

Every reader fails with a :class:`DataError` that names the file, the line or column, what it found
and what it expected: a malformed answer CSV found at epoch 0 costs seconds, one found by a silently
wrong label costs a leaderboard submission.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from podium.engine.seeding import derive_seed, seeded
from podium.errors import DataError
from podium.tasks.multilabel.glyphs import LETTERS
from podium.tasks.multilabel.synth import GlyphBank, draw_plan, render_plan

ANSWER_COLUMNS = ("index", *LETTERS)
SPLIT_FILES = {
    "train": ("dirty_mnist_2nd", "dirty_mnist_2nd_answer.csv"),
    "val": ("val_dirty_mnist_2nd", "val_dirty_mnist_2nd_answer.csv"),
    "test": ("test_dirty_mnist_2nd", "test_dirty_mnist_2nd_answer.csv"),
}
SAMPLE_SUBMISSION = "sample_submission.csv"
GLYPH_FILES = ("mnist_data/train.csv", "mnist_data/test.csv")


def _expected_header() -> str:
    return ",".join(ANSWER_COLUMNS)


def read_answer_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64[N], labels uint8[N,26]) in file order from an ``index,a..z`` CSV of 0/1 values."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: answer CSV not found (expected columns {_expected_header()})")
    with open(path, encoding="utf-8-sig") as f:
        header = f.readline().rstrip("\r\n")
    if tuple(c.strip() for c in header.split(",")) != ANSWER_COLUMNS:
        raise DataError(f"{path}: line 1: header is {header[:80]!r}; expected {_expected_header()}")
    try:
        frame = pd.read_csv(path, encoding="utf-8-sig", skipinitialspace=True)
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: {e}; expected {len(ANSWER_COLUMNS)} fields (index,a..z) per line") from e
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    bad[:, 0] = ~np.isfinite(values[:, 0]) | (values[:, 0] < 0) | (values[:, 0] != np.round(values[:, 0]))
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raw = frame.iat[row, col]
        found = "an empty cell" if pd.isna(raw) else repr(raw) if isinstance(raw, str) else str(raw)
        wanted = "a non-negative integer index" if col == 0 else "0 or 1"
        raise DataError(
            f"{path}: line {row + 2}, column {ANSWER_COLUMNS[col]}: found {found}, expected {wanted}"
        )
    indices = values[:, 0].astype(np.int64)
    duplicated = pd.Series(indices).duplicated().to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        first = int(np.flatnonzero(indices == indices[row])[0])
        raise DataError(
            f"{path}: line {row + 2}: duplicate index {indices[row]} (first on line {first + 2});"
            " expected each index once"
        )
    return indices, values[:, 1:].astype(np.uint8)


def list_images(directory: str | os.PathLike) -> dict[int, Path]:
    """``{index: path}`` of the ``<index>.png`` files in ``directory``, sorted by index.

    Hidden files (an interrupted atomic write's temp file) and non-PNG files are ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: image directory not found (expected <index>.png files)")
    found: dict[int, Path] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.lower().endswith(".png"):
                continue
            path = directory / name
            stem = name[:-4]
            if not stem.isdigit():
                raise DataError(f"{path}: file name is not <index>.png (found stem {stem!r})")
            index = int(stem)
            if index in found:
                raise DataError(f"{path}: index {index} is also named by {found[index].name}")
            found[index] = path
    return dict(sorted(found.items()))


def load_image(path: str | os.PathLike, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """A dirty MNIST image as uint8[H,W]; anything but 8-bit grayscale of ``expected_size`` (H, W) fails."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode != "L":
                raise DataError(f"{path}: image mode is {image.mode}; expected L (8-bit grayscale)")
            size = (image.height, image.width)
            if expected_size is not None and size != tuple(expected_size):
                raise DataError(
                    f"{path}: image is {size[0]}x{size[1]} (HxW);"
                    f" expected {expected_size[0]}x{expected_size[1]} like the rest of the data set"
                )
            return np.array(image)
    except FileNotFoundError as e:
        raise DataError(f"{path}: image not found") from e
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: unreadable image ({e}); expected a PNG") from e


class DaconLayout:
    """The paths of a Dacon dirty MNIST 2nd data root, resolved and checked when asked for.

    ``train`` and ``test`` are the competition's; ``val`` (held-out glyphs) and the test answers
    exist in podium's synthetic data (the write-up made its own val set the same way).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data root not found (expected Dacon's dirty MNIST layout)")

    def image_dir(self, split: str) -> Path:
        return self.root / SPLIT_FILES[split][0]

    def answer_csv(self, split: str) -> Path:
        return self.root / SPLIT_FILES[split][1]

    @property
    def sample_submission_csv(self) -> Path:
        return self.root / SAMPLE_SUBMISSION

    def has_split(self, split: str) -> bool:
        """Images exist, and for train / val their answers too (test answers are optional)."""
        if not self.image_dir(split).is_dir():
            return False
        return split == "test" or self.answer_csv(split).is_file()

    def validate(self) -> None:
        """Fail naming the first missing file or folder of the competition's layout."""
        required = [
            self.image_dir("train"),
            self.answer_csv("train"),
            self.image_dir("test"),
            self.sample_submission_csv,
        ]
        for path in required:
            if not path.exists():
                raise DataError(
                    f"{path}: missing from the data root (expected dirty_mnist_2nd/,"
                    " dirty_mnist_2nd_answer.csv, test_dirty_mnist_2nd/ and sample_submission.csv)"
                )

    def data_files(self) -> list[Path]:
        """Every file of the data set: glyph CSVs, answers, submission template and each split's images."""
        self.validate()
        candidates = [
            *(self.root / g for g in GLYPH_FILES),
            *(self.answer_csv(s) for s in SPLIT_FILES),
            self.sample_submission_csv,
        ]
        images = [p for s in SPLIT_FILES if self.image_dir(s).is_dir() for p in self.images(s).values()]
        return [p for p in candidates if p.is_file()] + images

    def images(self, split: str) -> dict[int, Path]:
        return list_images(self.image_dir(split))

    def answers(self, split: str) -> dict[int, np.ndarray]:
        """``{index: uint8[26]}``; test answers exist only in synthetic data (the real ones are hidden)."""
        path = self.answer_csv(split)
        if split == "test" and not path.is_file():
            raise DataError(f"{path}: no test answers (only podium's synthetic data has them)")
        indices, labels = read_answer_csv(path)
        return dict(zip(indices.tolist(), labels, strict=True))

    def items(self, split: str) -> tuple[dict[int, Path], dict[int, np.ndarray]]:
        """Images and answers of a split, checked to name exactly the same indices."""
        paths, labels = self.images(split), self.answers(split)
        for missing, where, other in (
            (set(labels) - set(paths), self.image_dir(split), "answer"),
            (set(paths) - set(labels), self.answer_csv(split), "image"),
        ):
            if missing:
                first = min(missing)
                raise DataError(
                    f"{where}: no entry for index {first} that the {other} side lists"
                    f" ({len(missing)} such indices); expected images and answers to match"
                )
        return paths, {i: labels[i] for i in paths}

    def sample_submission(self) -> list[int]:
        """The indices the submission must list, in the template's order."""
        indices, _ = read_answer_csv(self.sample_submission_csv)
        return indices.tolist()


class RandomRot90(torch.nn.Module):
    """Rotate by k x 90 degrees, k uniform in 0..3: the letters lie at every angle anyway."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(0, 4, ()))
        return torch.rot90(image, k, dims=(-2, -1))


class RandomCutout(torch.nn.Module):
    """With probability ``p``, zero one rectangle whose sides are 1 .. ``max_fraction`` of the image's."""

    def __init__(self, max_fraction: float = 0.3, p: float = 0.5):
        super().__init__()
        self.max_fraction = max_fraction
        self.p = p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return image
        height, width = image.shape[-2:]
        h = int(torch.randint(1, max(1, int(self.max_fraction * height)) + 1, ()))
        w = int(torch.randint(1, max(1, int(self.max_fraction * width)) + 1, ()))
        y = int(torch.randint(0, height - h + 1, ()))
        x = int(torch.randint(0, width - w + 1, ()))
        image = image.clone()
        image[..., y : y + h, x : x + w] = 0
        return image


def build_transforms(image_size: int, train: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The write-up's pipeline on a uint8 [1,H,W] tensor -> float32 [1,S,S] in [-1, 1].

    Train: resize, random rot90, shift-scale-rotate (+-15 deg, shift 0.0625, scale 0.9..1.1, p 0.5),
    one cutout hole (p 0.5), normalise. Eval: resize, normalise. Random draws come from torch's
    global generator, which :class:`DirtyMnistDataset` seeds per sample.
    """
    steps: list[Callable] = [v2.Resize((image_size, image_size), antialias=True)]
    if train:
        steps += [
            RandomRot90(),
            v2.RandomApply(
                [v2.RandomAffine(degrees=15, translate=(0.0625, 0.0625), scale=(0.9, 1.1))], p=0.5
            ),
            RandomCutout(max_fraction=0.3, p=0.5),
        ]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=[0.5], std=[0.5])]
    return v2.Compose(steps)


class DirtyMnistDataset(torch.utils.data.Dataset):
    """Dirty MNIST images with their 26 labels (or their Dacon index when unlabelled).

    ``dataset[(i, sample_seed)]`` (what :class:`EpochSampler` yields) augments under
    ``seeded(sample_seed)``, so an item's augmentation depends only on (seed, epoch, i), whatever the
    worker count or the order; ``dataset[i]`` uses a seed derived from ``seed`` and ``i``. Every image
    must be 8-bit grayscale of the first image's size (or ``expected_size``).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        labels: np.ndarray | None,
        transform: Callable[[torch.Tensor], torch.Tensor],
        *,
        indices: Sequence[int] | None = None,
        expected_size: tuple[int, int] | None = None,
        seed: int = 0,
    ):
        self.paths = [Path(p) for p in paths]
        if labels is not None and len(labels) != len(self.paths):
            raise ValueError(f"{len(self.paths)} images but {len(labels)} label rows")
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)
        if self.labels is not None and self.labels.shape[1:] != (len(LETTERS),):
            raise ValueError(f"labels must have shape [N, 26], got {self.labels.shape}")
        self.indices = list(indices) if indices is not None else [self._index_of(p) for p in self.paths]
        self.transform = transform
        self.seed = seed
        if expected_size is None and self.paths:
            expected_size = load_image(self.paths[0]).shape
        self.expected_size = expected_size

    @staticmethod
    def _index_of(path: Path) -> int:
        if not path.stem.isdigit():
            raise DataError(f"{path}: file name is not <index>.png; pass indices= explicitly")
        return int(path.stem)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | int]:
        i, sample_seed = key[:2] if isinstance(key, tuple) else (key, derive_seed(self.seed, "sample", key))
        pixels = load_image(self.paths[i], self.expected_size)
        with seeded(sample_seed):
            image = self.transform(torch.from_numpy(pixels)[None])
        if self.labels is None:
            return image, self.indices[i]
        return image, torch.from_numpy(self.labels[i])


class GlyphDataset(torch.utils.data.Dataset):
    """Images drawn on the fly by the synthesis algorithm with few letters on a small canvas.

    Glyph pretraining: each letter fills much of its image, so a network learns what letters look like
    in a few thousand steps, where the full task's 10..14 letters on 256 px give it almost no signal
    per label. Item ``(i, sample_seed)`` draws a new image every epoch; item ``i`` (validation) is
    always the same image, drawn from a seed derived from ``seed`` and ``i``.
    """

    def __init__(
        self,
        bank: GlyphBank,
        length: int,
        canvas_size: int,
        letters: tuple[int, int],
        transform: Callable[[torch.Tensor], torch.Tensor],
        seed: int = 0,
    ):
        self.bank, self.length, self.canvas_size, self.letters = bank, length, canvas_size, letters
        self.transform, self.seed = transform, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, sample_seed = key[:2] if isinstance(key, tuple) else (key, derive_seed(self.seed, "glyph", key))
        plan = draw_plan(np.random.default_rng(sample_seed), self.canvas_size, self.bank.sizes, self.letters)
        with seeded(sample_seed):
            image = self.transform(torch.from_numpy(render_plan(plan, self.bank))[None])
        return image, torch.from_numpy(plan.labels.astype(np.float32))
