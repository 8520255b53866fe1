"""MRI readers: lazy slice reads and DataErrors that name the file and the key."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from podium.errors import DataError
from podium.tasks.mri.data import (
    MriReader,
    parse_snu_name,
    scan_fastmri,
    scan_snu,
    slice_index,
)
from podium.tasks.mri.masks import fixed_pattern

SLICES, COILS, H, W = 4, 2, 10, 24


def _kspace(slices: int = SLICES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(slices, COILS, H, W)) + 1j * rng.normal(size=(slices, COILS, H, W))
    return data.astype(np.complex64)


def _write(path: Path, datasets: dict[str, np.ndarray | bytes], attrs: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
        f.attrs.update(attrs or {})
    return path


def _snu_volume(
    split: Path, name: str, acc: int = 4, slices: int = SLICES, image_slices: int | None = None
) -> None:
    _write(split / "kspace" / name, {"kspace": _kspace(slices), "mask": fixed_pattern(W, acc)})
    image = np.arange((image_slices or slices) * 8 * 8, dtype=np.float32).reshape(-1, 8, 8)
    _write(
        split / "image" / name, {"image_label": image, "image_grappa": image + 1}, {"max": float(image.max())}
    )


def test_parse_snu_name() -> None:
    assert parse_snu_name("brain_acc4_12.h5") == ("brain", 4)
    assert parse_snu_name("knee_acc8_100.h5") == ("knee", 8)
    assert parse_snu_name("knee_test3.h5") == ("knee", None)
    assert parse_snu_name("file1000001.h5") == (None, None)


def test_scan_snu_and_lazy_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _snu_volume(tmp_path / "train", "brain_acc4_1.h5", slices=4)
    _snu_volume(tmp_path / "train", "knee_acc8_2.h5", acc=8, slices=2)
    volumes = scan_snu(tmp_path / "train")
    assert [(v.name, v.anatomy, v.acceleration, v.num_slices, v.width) for v in volumes] == [
        ("brain_acc4_1.h5", "brain", 4, 4, W),
        ("knee_acc8_2.h5", "knee", 8, 2, W),
    ]
    assert slice_index(volumes) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]

    requested = []
    original = h5py.Dataset.__getitem__

    def spy(self: h5py.Dataset, key: object) -> np.ndarray:
        requested.append((self.name, key))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    reader = MriReader()
    np.testing.assert_array_equal(reader.kspace(volumes[0], 2), _kspace(4)[2])
    np.testing.assert_array_equal(
        reader.target(volumes[0], 3), np.arange(192, 256, dtype=np.float32).reshape(8, 8)
    )
    np.testing.assert_array_equal(
        reader.target(volumes[0], 0, key="image_grappa"), np.arange(1, 65).reshape(8, 8)
    )
    assert requested == [("/kspace", 2), ("/image_label", 3), ("/image_grappa", 0)]
    np.testing.assert_array_equal(reader.mask(volumes[1]), fixed_pattern(W, 8))
    assert reader.max_value(volumes[0]) == 255.0
    with pytest.raises(IndexError, match="slice 4"):
        reader.kspace(volumes[0], 4)
    reader.close()


def test_leaderboard_acceleration_from_the_stored_mask(tmp_path: Path) -> None:
    _snu_volume(tmp_path / "acc8", "knee_test1.h5", acc=8)
    _snu_volume(tmp_path / "acc8", "brain_test2.h5", acc=4)
    volumes = scan_snu(tmp_path / "acc8")
    assert [(v.name, v.anatomy, v.acceleration) for v in volumes] == [
        ("brain_test2.h5", "brain", 4),
        ("knee_test1.h5", "knee", 8),
    ]
    assert scan_snu(tmp_path / "acc8", with_targets=False)[0].target_path is None


def test_reader_survives_pickling_for_workers(tmp_path: Path) -> None:
    _snu_volume(tmp_path / "val", "brain_acc4_86.h5")
    volume = scan_snu(tmp_path / "val")[0]
    reader = MriReader(max_open=1)
    reader.kspace(volume, 0)
    reader.target(volume, 0)
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone.kspace(volume, 1), _kspace()[1])
    reader.close()
    clone.close()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no_kspace", r"kspace/brain_acc4_1.h5: dataset 'kspace' not found"),
        ("no_mask", r"kspace/brain_acc4_1.h5: dataset 'mask' not found"),
        ("bad_mask", r"kspace/brain_acc4_1.h5: dataset 'mask' has shape \(5,\), expected \(24,\)"),
        ("no_label", r"image/brain_acc4_1.h5: dataset 'image_label' not found"),
        ("no_max", r"image/brain_acc4_1.h5: attribute 'max' not found"),
        ("slices", r"image/brain_acc4_1.h5: dataset 'image_label' has 3 slices but .*kspace/brain_acc4_1.h5"),
        ("no_image", r"image/brain_acc4_1.h5: file not found"),
        ("garbage", r"kspace/brain_acc4_1.h5: not a readable HDF5 file"),
    ],
)
def test_scan_errors_name_file_and_key(tmp_path: Path, damage: str, message: str) -> None:
    split = tmp_path / "train"
    _snu_volume(split, "brain_acc4_1.h5")
    kspace_path, image_path = split / "kspace/brain_acc4_1.h5", split / "image/brain_acc4_1.h5"
    image = np.zeros((SLICES, 8, 8), np.float32)
    if damage == "no_kspace":
        _write(kspace_path, {"mask": fixed_pattern(W, 4)})
    elif damage == "no_mask":
        _write(kspace_path, {"kspace": _kspace()})
    elif damage == "bad_mask":
        _write(kspace_path, {"kspace": _kspace(), "mask": np.ones(5, np.float32)})
    elif damage == "no_label":
        _write(image_path, {"image_input": image}, {"max": 1.0})
    elif damage == "no_max":
        _write(image_path, {"image_label": image})
    elif damage == "slices":
        _write(image_path, {"image_label": image[:3]}, {"max": 1.0})
    elif damage == "no_image":
        image_path.unlink()
    elif damage == "garbage":
        kspace_path.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(DataError, match=message):
        scan_snu(split)


def test_non_finite_values_are_caught_on_the_slice_read(tmp_path: Path) -> None:
    split = tmp_path / "train"
    _snu_volume(split, "brain_acc4_1.h5")
    kspace = _kspace()
    kspace[2, 1, 3, 4] = np.nan
    _write(split / "kspace/brain_acc4_1.h5", {"kspace": kspace, "mask": fixed_pattern(W, 4)})
    image = np.ones((SLICES, 8, 8), np.float32)
    image[1, 0, 0] = np.inf
    _write(split / "image/brain_acc4_1.h5", {"image_label": image}, {"max": 1.0})
    volume = scan_snu(split)[0]
    reader = MriReader()
    np.testing.assert_array_equal(reader.kspace(volume, 1), kspace[1])
    with pytest.raises(DataError, match=r"kspace/brain_acc4_1.h5: dataset 'kspace' slice 2 has non-finite"):
        reader.kspace(volume, 2)
    with pytest.raises(
        DataError, match=r"image/brain_acc4_1.h5: dataset 'image_label' slice 1 has non-finite"
    ):
        reader.target(volume, 1)
    reader.close()


HEADER = b"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
 <encoding>
  <encodedSpace><matrixSize><x>640</x><y>368</y><z>1</z></matrixSize></encodedSpace>
  <reconSpace><matrixSize><x>320</x><y>320</y><z>1</z></matrixSize></reconSpace>
  <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>349</maximum>
   <center>176</center></kspace_encoding_step_1></encodingLimits>
 </encoding>
</ismrmrdHeader>"""


def test_scan_fastmri_layout(tmp_path: Path) -> None:
    target = np.ones((SLICES, 6, 6), np.float32)
    _write(
        tmp_path / "file1000001.h5",
        {"kspace": _kspace(), "reconstruction_rss": target, "ismrmrd_header": HEADER},
        {"acquisition": "CORPD_FBK", "max": 1.0},
    )
    _write(
        tmp_path / "file_brain_AXT2_200_2000019.h5",
        {"kspace": _kspace(3), "mask": fixed_pattern(W, 8), "ismrmrd_header": HEADER},
        {"acquisition": "AXT2", "acceleration": 8},
    )
    knee, brain_test = scan_fastmri(tmp_path)
    assert (knee.anatomy, knee.acceleration, knee.target_key, knee.num_slices) == (
        "knee", None, "reconstruction_rss", SLICES,
    )  # fmt: skip
    assert (brain_test.anatomy, brain_test.acceleration, brain_test.target_path, brain_test.has_mask) == (
        "brain", 8, None, True,
    )  # fmt: skip
    reader = MriReader()
    assert reader.header(knee) == {
        "encoding_size": (640, 368, 1),
        "recon_size": (320, 320, 1),
        "padding_left": 8,
        "padding_right": 358,
    }
    np.testing.assert_array_equal(reader.target(knee, 3), target[3])
    assert reader.max_value(knee) == 1.0
    with pytest.raises(DataError, match="file_brain_AXT2_200_2000019.h5: no target"):
        reader.target(brain_test, 0)
    reader.close()


def test_fastmri_slice_mismatch_and_missing_kspace(tmp_path: Path) -> None:
    _write(tmp_path / "a.h5", {"kspace": _kspace(), "reconstruction_rss": np.ones((2, 6, 6), np.float32)})
    with pytest.raises(
        DataError, match=r"a.h5: dataset 'reconstruction_rss' has 2 slices but 'kspace' has 4"
    ):
        scan_fastmri(tmp_path)
    _write(tmp_path / "a.h5", {"reconstruction_rss": np.ones((2, 6, 6), np.float32)})
    with pytest.raises(DataError, match=r"a.h5: dataset 'kspace' not found"):
        scan_fastmri(tmp_path)
