"""Feature stores: one HDF5 file with one dataset ``{item}_features`` per item, filled in kill-safe commits.

Layout first, data after. The whole file is created up front and atomically (a temp file renamed into
place): every dataset exists, contiguous and allocated (early allocation, never filled), so HDF5's
metadata is final before any feature is computed. Features are then written in place at each dataset's
byte offset (``os.pwrite``) one commit (a run of consecutive items) at a time and fsynced; the caller
records the commit (its end and the sha256 of its bytes) only after that. HDF5 never touches the file
again, so a kill -9 mid-commit leaves a valid HDF5 file whose committed items are intact and whose
uncommitted ones are simply written again: a resumed store is byte for byte an uninterrupted one.
Nobody reads a store before its stage records the file's sha256 at the end.

Why not h5py appends: HDF5 without SWMR is not crash-safe (a kill mid-write can leave its metadata
inconsistent and the file unreadable), and copying the file to a temp per commit costs O(n^2) I/O.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from podium.errors import ConfigError, DataError
from podium.hdf5 import open_h5, read, require_dataset
from podium.store import atomic_path, content_hash

STORE = "features.h5"
SUFFIX = "_features"


def dataset_name(item_id: str) -> str:
    """The store's dataset of an item (ExpansionNet's naming: ``{img_id}_features``)."""
    return f"{item_id}{SUFFIX}"


@dataclass(frozen=True)
class Layout:
    """What a store holds: its items in order, one array shape and dtype for all, and file attributes."""

    ids: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str  # little-endian numpy type string: '<f2' or '<f4'
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = next((i for i in self.ids if not i or "/" in i or i in (".", "..")), None)
        if bad is not None:
            raise ConfigError(f"feature store: item id {bad!r} cannot name an HDF5 dataset")
        if len(set(self.ids)) != len(self.ids):
            seen: set[str] = set()
            repeated = next(i for i in self.ids if i in seen or seen.add(i))
            raise ConfigError(f"feature store: item id {repeated!r} repeats; each item needs its own dataset")

    @property
    def item_bytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def digest(self) -> str:
        return content_hash({"ids": self.ids, "shape": self.shape, "dtype": self.dtype, "attrs": self.attrs})


def create_store(path: Path, layout: Layout) -> list[int]:
    """Write the store's layout atomically (no features yet); return each item's byte offset in the file.

    The same layout always gives the same bytes: no timestamps, the oldest file format, datasets
    created in item order.
    """
    offsets = []
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver="earliest") as f:
        for key, value in layout.attrs.items():
            f.attrs[key] = value
        for item in layout.ids:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            ds = f.create_dataset(dataset_name(item), shape=layout.shape, dtype=layout.dtype, dcpl=dcpl,
                                  track_times=False)
            offsets.append(ds.id.get_offset())
    return offsets


def store_offsets(path: Path, layout: Layout) -> list[int] | None:
    """The item offsets of an existing store made with ``layout``; None when the file is missing, is not
    HDF5, or does not hold exactly those datasets (it is then created again)."""
    try:
        with h5py.File(path, "r") as f:
            if len(f) != len(layout.ids):
                return None
            offsets = []
            for item in layout.ids:
                ds = f.get(dataset_name(item))
                if (not isinstance(ds, h5py.Dataset) or ds.shape != layout.shape
                        or ds.dtype != np.dtype(layout.dtype) or ds.id.get_offset() is None):
                    return None
                offsets.append(ds.id.get_offset())
            return offsets
    except OSError:
        return None


def region_sha256(path: Path, layout: Layout, offsets: Sequence[int], start: int, end: int) -> str:
    """sha256 of the bytes of items ``start..end-1`` as the file holds them (a commit's digest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for offset in offsets[start:end]:
            f.seek(offset)
            digest.update(f.read(layout.item_bytes))
    return digest.hexdigest()


class StoreWriter:
    """Writes items' features in place; ``sync`` makes everything written so far durable."""

    def __init__(self, path: Path, layout: Layout, offsets: Sequence[int]):
        self.layout = layout
        self.offsets = offsets
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, index: int, features: np.ndarray) -> bytes:
        """Write item ``index``'s features (cast to the store's dtype); return the bytes written."""
        if features.shape != self.layout.shape:
            raise DataError(f"feature store: item {index} has shape {features.shape}, the store "
                            f"{self.layout.shape}")
        data = np.ascontiguousarray(features, dtype=self.layout.dtype).tobytes()
        view, offset = memoryview(data), self.offsets[index]
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written
        return data

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_features(path: Path, ids: Sequence[str]) -> np.ndarray:
    """``(len(ids), *shape)`` features of the given items; a missing item is a :class:`DataError` naming
    the store and the dataset."""
    with open_h5(path) as f:
        return np.stack([read(require_dataset(f, dataset_name(i))) for i in ids])
