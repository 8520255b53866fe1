"""Reading HDF5 inputs with errors that name the file and the key (shared by MRI readers and metrics)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from podium.errors import CorruptFileError, DataError

# target dataset of the fastMRI layout per challenge
FASTMRI_TARGET_KEYS = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open read-only; a missing or unreadable file is a :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file ({e})") from e


def require_dataset(f: h5py.File, key: str, ndim: int | Sequence[int] | None = None) -> h5py.Dataset:
    """``f[key]`` as a dataset of the expected rank, or a :class:`DataError` naming the file and key."""
    item = f.get(key)
    if not isinstance(item, h5py.Dataset):
        raise DataError(f"{f.filename}: dataset '{key}' not found (has {sorted(f.keys())})")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and item.ndim not in allowed:
        raise DataError(f"{f.filename}: dataset '{key}' has shape {item.shape}, expected {allowed} dims")
    return item


def require_attr(f: h5py.File, name: str) -> Any:
    """``f.attrs[name]``, or a :class:`DataError` naming the file and the attribute."""
    if name not in f.attrs:
        raise DataError(f"{f.filename}: attribute '{name}' not found (has {sorted(f.attrs.keys())})")
    return f.attrs[name]


def read(ds: h5py.Dataset, selection: Any = ()) -> np.ndarray:
    """``ds[selection]``, or a :class:`CorruptFileError` naming the file and dataset when a chunk cannot be
    read: its fletcher32 checksum (podium's synthetic files carry one per slice) or its decoding failed."""
    try:
        return ds[selection]
    except OSError as e:
        raise CorruptFileError(f"{ds.file.filename}: dataset '{ds.name.lstrip('/')}' cannot be read at {selection!r} "
                               f"({e}); the file is damaged") from e
