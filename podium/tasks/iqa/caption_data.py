"""Caption training data: image inputs (cached backbone features or images) with their captions.

Two shapes of data set, as ExpansionNet v2's two loaders (iqa-verified.md 1.4):

- :class:`CaptionPairs` (XE): one item per (image, comment), the caption as vocabulary ids
  ``[SOS, words..., EOS]`` padded with PAD to the set's longest caption, and its length;
- :class:`CaptionedImages` (SCST, validation, prediction): one item per image, with the image's index so
  that its references (``.references``, cleaned words) are looked up, not collated.

podium's loaders use torch's default collate, so an item has a fixed shape; :func:`trim_captions` cuts a
batch to its longest caption and gives the pads as ExpansionNetV2 takes them (padded positions at the end
of each row). Items are fetched by :class:`~podium.engine.seeding.SampleKey` or index; an image item
carries its key's seed, from which SCST draws its samples.

Inputs come from a :class:`FeatureStore` (the extract stage's HDF5 file, one dataset ``{img_name}_features``
(tokens, dim) per image, one open handle per process) or an :class:`ImageSource` (end to end: the image
resized to a square and normalised with ImageNet's statistics, as the original's loader does).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from podium.engine.feature_store import dataset_name
from podium.engine.seeding import SampleKey, derive_seed
from podium.errors import DataError
from podium.hdf5 import open_h5, read
from podium.tasks.iqa.data import TestImage, TrainImage, Vocabulary, clean_caption, load_rgb, tokenize_caption
from podium.tasks.iqa.features import image_transform

Item = TrainImage | TestImage
Source = Callable[[Item], Tensor]


def _key(key: SampleKey | int) -> SampleKey:
    return SampleKey(*key) if isinstance(key, tuple) else SampleKey(key, derive_seed("iqa-caption-item", key))


class FeatureStore:
    """Backbone features per image from an HDF5 store, as float32 (tokens, dim).

    Every name's dataset is checked to exist when the store is opened, so a stale store fails before
    training; the file handle is opened lazily in each process (DataLoader workers never share one).
    """

    def __init__(self, path: str | os.PathLike, names: Iterable[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: feature store not found (run the extract stage first)")
        names = list(names)
        with open_h5(self.path) as f:
            missing = [n for n in names if dataset_name(n) not in f]
            self.shape = tuple(f[dataset_name(names[0])].shape) if names and not missing else None
        if missing:
            raise DataError(f"{self.path}: no dataset {dataset_name(missing[0])!r} ({len(missing)} of "
                            f"{len(names)} images missing); expected one per image: re-run the extract stage")
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": None}

    def __call__(self, item: Item) -> Tensor:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        key = dataset_name(item.name)
        features = read(self._file[key])
        if features.shape != self.shape:
            raise DataError(f"{self.path}: dataset {key!r} has shape {features.shape}, the store's first "
                            f"{self.shape}; expected one backbone's tokens for every image")
        return torch.from_numpy(np.asarray(features, dtype=np.float32))


class ImageSource:
    """An image as the end-to-end model reads it: the extract stage's preprocessing (RGB, resized to
    ``size`` x ``size``, ImageNet's mean and std), so the backbone sees what it saw there."""

    def __init__(self, size: int):
        self.transform = image_transform(size)

    def __call__(self, item: Item) -> Tensor:
        return self.transform(load_rgb(item.path))


class CaptionPairs(torch.utils.data.Dataset):
    """XE items: one per (image, comment), in image then comment order.

    ``max_words`` keeps a caption's first words (the seed cut at 70). Words outside ``vocabulary`` become UNK.
    """

    def __init__(self, items: Sequence[TrainImage], source: Source, vocabulary: Vocabulary,
                 max_words: int | None = None):
        self.items = list(items)
        self.source = source
        self.pad = vocabulary.pad
        self.pairs = [(i, vocabulary.encode(tokenize_caption(comment, max_words)))
                      for i, item in enumerate(self.items) for comment in item.comments]
        if not self.pairs:
            raise DataError("no (image, comment) pair to train on")
        self.length = max(len(ids) for _, ids in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: SampleKey | int) -> dict[str, Any]:
        image, ids = self.pairs[_key(key).index]
        tokens = torch.full((self.length,), self.pad, dtype=torch.long)
        tokens[: len(ids)] = torch.tensor(ids)
        return {"inputs": self.source(self.items[image]), "tokens": tokens, "length": len(ids)}


class CaptionedImages(torch.utils.data.Dataset):
    """One item per image: its input, its index (into ``items`` and ``references``) and its key's seed.

    ``references[i]`` holds image i's comments as cleaned words (empty for a test image).
    """

    def __init__(self, items: Sequence[Item], source: Source):
        self.items = list(items)
        self.source = source
        self.references = [[clean_caption(c) for c in item.comments] if isinstance(item, TrainImage) else []
                           for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: SampleKey | int) -> dict[str, Any]:
        key = _key(key)
        return {"inputs": self.source(self.items[key.index]), "index": key.index, "seed": key.seed}


def trim_captions(tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """A collated batch of padded captions cut to its longest, and each row's count of trailing pads."""
    longest = int(lengths.max())
    return tokens[:, :longest], longest - lengths
