"""Readers for the SNU FastMRI challenge layout and the facebookresearch fastMRI layout.

Scanning reads shapes and attributes only; reading returns one slice (an HDF5 hyperslab), never a whole
volume. Every malformed input becomes a :class:`DataError` that names the file and the key, found when
the file is scanned (missing datasets, mismatched slice counts) or when the slice is read (NaN / inf).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from podium.errors import DataError
from podium.hdf5 import FASTMRI_TARGET_KEYS, open_h5, read, require_attr, require_dataset
from podium.tasks.mri.masks import acceleration_from_mask

KSPACE_KEY = "kspace"
MASK_KEY = "mask"
SNU_TARGET_KEY = "image_label"
ISMRMRD_NS = {"m": "http://www.ismrm.org/ISMRMRD"}
_SNU_NAME = re.compile(r"^(brain|knee)_(?:acc(\d+)_)?[^/]*\.h5$")


@dataclass(frozen=True)
class MriVolume:
    """One volume as scanned: where its k-space and target live and what the names / attributes say."""

    name: str
    kspace_path: Path
    num_slices: int
    width: int
    target_path: Path | None = None
    target_key: str | None = None
    anatomy: str | None = None
    acceleration: int | None = None
    has_mask: bool = False


def parse_snu_name(name: str) -> tuple[str | None, int | None]:
    """``brain_acc4_12.h5`` -> ("brain", 4); ``knee_test3.h5`` -> ("knee", None); others -> (None, None)."""
    match = _SNU_NAME.match(Path(name).name)
    if match is None:
        return None, None
    return match.group(1), int(match.group(2)) if match.group(2) else None


def anatomy_from_acquisition(acquisition: str | None) -> str | None:
    """fastMRI's ``acquisition`` attribute: CORPD_FBK / CORPDFS_FBK are knee, AX* sequences are brain."""
    if acquisition is None:
        return None
    if acquisition.startswith("CORPD"):
        return "knee"
    return "brain" if acquisition.startswith("AX") else None


def _attr_str(f: h5py.File, name: str) -> str | None:
    value = f.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else (None if value is None else str(value))


def _check_finite(array: np.ndarray, path: str, key: str, index: int) -> np.ndarray:
    if not np.isfinite(array).all():
        raise DataError(f"{path}: dataset '{key}' slice {index} has non-finite values")
    return array


def _read_mask(f: h5py.File, width: int) -> np.ndarray:
    mask = np.asarray(read(require_dataset(f, MASK_KEY, 1)), dtype=np.float32)
    if mask.shape != (width,):
        raise DataError(f"{f.filename}: dataset '{MASK_KEY}' has shape {mask.shape}, expected ({width},)")
    if not np.isfinite(mask).all():
        raise DataError(f"{f.filename}: dataset '{MASK_KEY}' has non-finite values")
    return mask


def parse_ismrmrd_header(f: h5py.File) -> dict[str, Any]:
    """Matrix sizes and the k-space padding from ``ismrmrd_header`` (fastMRI's zero-filled columns).

    ``padding_left = enc_y // 2 - center`` and ``padding_right = padding_left + maximum + 1`` of
    ``kspace_encoding_step_1``: columns outside ``[left, right)`` were never acquired.
    """
    xml = require_dataset(f, "ismrmrd_header")[()]
    try:
        root = ET.fromstring(xml.decode() if isinstance(xml, bytes) else str(xml))
    except ET.ParseError as e:
        raise DataError(f"{f.filename}: dataset 'ismrmrd_header' is not valid XML ({e})") from e

    def number(path: str) -> int:
        node = root.find("/".join(f"m:{p}" for p in path.split("/")), ISMRMRD_NS)
        if node is None or node.text is None:
            raise DataError(f"{f.filename}: dataset 'ismrmrd_header' lacks {path}")
        return int(node.text)

    enc = tuple(number(f"encoding/encodedSpace/matrixSize/{a}") for a in "xyz")
    recon = tuple(number(f"encoding/reconSpace/matrixSize/{a}") for a in "xyz")
    center = number("encoding/encodingLimits/kspace_encoding_step_1/center")
    maximum = number("encoding/encodingLimits/kspace_encoding_step_1/maximum") + 1
    left = enc[1] // 2 - center
    return {"encoding_size": enc, "recon_size": recon, "padding_left": left, "padding_right": left + maximum}


def scan_snu(split_dir: str | os.PathLike, *, with_targets: bool = True) -> list[MriVolume]:
    """Scan ``<split_dir>/kspace/*.h5`` (and ``<split_dir>/image/``) of the SNU 2025 layout.

    ``split_dir`` is ``Data/train``, ``Data/val`` or ``Data/leaderboard/acc4``. Each k-space file needs
    ``kspace`` (slices, coils, H, W) and ``mask`` (W,); with targets, the image file of the same name
    needs ``image_label`` with as many slices and ``attrs['max']``. Acceleration comes from the name,
    else from the stored mask (the challenge's read-back rule).
    """
    split_dir = Path(split_dir)
    kspace_dir = split_dir / "kspace"
    if not kspace_dir.is_dir():
        raise DataError(f"{kspace_dir}: k-space folder not found")
    volumes = []
    for kspace_path in sorted(kspace_dir.glob("*.h5")):
        anatomy, acceleration = parse_snu_name(kspace_path.name)
        with open_h5(kspace_path) as f:
            kspace = require_dataset(f, KSPACE_KEY, 4)
            num_slices, width = kspace.shape[0], kspace.shape[-1]
            mask = _read_mask(f, width)
        target_path = None
        if with_targets:
            target_path = split_dir / "image" / kspace_path.name
            with open_h5(target_path) as f:
                target = require_dataset(f, SNU_TARGET_KEY, 3)
                require_attr(f, "max")
                if target.shape[0] != num_slices:
                    raise DataError(
                        f"{target_path}: dataset '{SNU_TARGET_KEY}' has {target.shape[0]} slices but"
                        f" {kspace_path} '{KSPACE_KEY}' has {num_slices}"
                    )
        volumes.append(
            MriVolume(
                name=kspace_path.name,
                kspace_path=kspace_path,
                num_slices=num_slices,
                width=width,
                target_path=target_path,
                target_key=SNU_TARGET_KEY if with_targets else None,
                anatomy=anatomy,
                acceleration=acceleration or acceleration_from_mask(mask),
                has_mask=True,
            )
        )
    if not volumes:
        raise DataError(f"{kspace_dir}: no .h5 files")
    return volumes


def scan_fastmri(folder: str | os.PathLike) -> list[MriVolume]:
    """Scan a fastMRI folder (``multicoil_val/``, ``singlecoil_test/``...): k-space and target in one file.

    The target key follows the k-space rank (4-D multicoil -> ``reconstruction_rss``, 3-D singlecoil
    -> ``reconstruction_esc``); test files have none but carry ``mask`` and ``attrs['acceleration']``.
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.h5"))
    if not files:
        raise DataError(f"{folder}: no .h5 files")
    volumes = []
    for path in files:
        with open_h5(path) as f:
            kspace = require_dataset(f, KSPACE_KEY, (3, 4))
            num_slices, width = kspace.shape[0], kspace.shape[-1]
            key = FASTMRI_TARGET_KEYS["multicoil" if kspace.ndim == 4 else "singlecoil"]
            has_target = key in f
            if has_target:
                target = require_dataset(f, key, 3)
                if target.shape[0] != num_slices:
                    raise DataError(
                        f"{path}: dataset '{key}' has {target.shape[0]} slices"
                        f" but '{KSPACE_KEY}' has {num_slices}"
                    )
            has_mask = MASK_KEY in f
            acceleration = f.attrs.get("acceleration")
            if acceleration is None and has_mask:
                acceleration = acceleration_from_mask(_read_mask(f, width))
            volumes.append(
                MriVolume(
                    name=path.name,
                    kspace_path=path,
                    num_slices=num_slices,
                    width=width,
                    target_path=path if has_target else None,
                    target_key=key if has_target else None,
                    anatomy=anatomy_from_acquisition(_attr_str(f, "acquisition")),
                    acceleration=None if acceleration is None else int(acceleration),
                    has_mask=has_mask,
                )
            )
    return volumes


def slice_index(volumes: Sequence[MriVolume]) -> list[tuple[int, int]]:
    """(volume position, slice) for every slice, in scan order: built from shapes, no data read."""
    return [(v, s) for v, volume in enumerate(volumes) for s in range(volume.num_slices)]


class MriReader:
    """Slice reads over HDF5 handles kept open per process (a forked DataLoader worker reopens its own).

    At most ``max_open`` files stay open; the least recently used is closed first.
    """

    def __init__(self, max_open: int = 64):
        self.max_open = max_open
        self._files: OrderedDict[Path, h5py.File] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_open"])

    def _file(self, path: Path) -> h5py.File:
        if os.getpid() != self._pid:
            self._files = OrderedDict()
            self._pid = os.getpid()
        f = self._files.get(path)
        if f is None:
            f = open_h5(path)
            self._files[path] = f
            while len(self._files) > self.max_open:
                self._files.popitem(last=False)[1].close()
        self._files.move_to_end(path)
        return f

    def close(self) -> None:
        while self._files:
            self._files.popitem()[1].close()

    def _slice(self, path: Path, key: str, index: int, ndim: int | Sequence[int] | None) -> np.ndarray:
        f = self._file(path)
        ds = require_dataset(f, key, ndim)
        if not 0 <= index < ds.shape[0]:
            raise IndexError(f"{path}: slice {index} out of range for '{key}' with {ds.shape[0]} slices")
        return _check_finite(read(ds, index), str(path), key, index)

    def kspace(self, volume: MriVolume, index: int) -> np.ndarray:
        """k-space of one slice: (coils, H, W) multicoil or (H, W) singlecoil, complex64."""
        return self._slice(volume.kspace_path, KSPACE_KEY, index, (3, 4)).astype(np.complex64, copy=False)

    def mask(self, volume: MriVolume) -> np.ndarray:
        """The (W,) column mask the file was acquired with."""
        return _read_mask(self._file(volume.kspace_path), volume.width)

    def target(self, volume: MriVolume, index: int, key: str | None = None) -> np.ndarray:
        """One target slice (``image_label`` by default; ``image_input`` / ``image_grappa`` on request)."""
        if volume.target_path is None:
            raise DataError(f"{volume.kspace_path}: no target file or dataset for this volume")
        key = key or volume.target_key
        return self._slice(volume.target_path, key, index, 3).astype(np.float32, copy=False)

    def max_value(self, volume: MriVolume) -> float:
        """``attrs['max']`` of the target file: the data range of the loss and the leaderboard metric."""
        if volume.target_path is None:
            raise DataError(f"{volume.kspace_path}: no target file for this volume, so no attribute 'max'")
        return float(require_attr(self._file(volume.target_path), "max"))

    def header(self, volume: MriVolume) -> dict[str, Any]:
        """fastMRI's matrix sizes and padding from ``ismrmrd_header``."""
        return parse_ismrmrd_header(self._file(volume.kspace_path))
