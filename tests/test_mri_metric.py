"""The 2025 leaderboard SSIM against independent references: cv2 morphology, skimage SSIM, hand values."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from fastmri import evaluate as fastmri_evaluate
from rich.console import Console
from skimage.metrics import structural_similarity

from podium.errors import DataError
from podium.metrics import reconstruction
from podium.metrics.ssim import (
    anatomy_from_name,
    dilate,
    erode,
    foreground_mask,
    leaderboard_ssim,
    leaderboard_table,
    score_leaderboard,
    score_volume,
    ssim_map,
)

KERNEL = np.ones((3, 3), np.uint8)
C1_OVER_MAX2 = 0.01**2


def _cv2_mask(target: np.ndarray, threshold: float) -> np.ndarray:
    mask = np.zeros(target.shape)
    mask[target > threshold] = 1
    mask = cv2.erode(mask, KERNEL, iterations=1)
    mask = cv2.dilate(mask, KERNEL, iterations=15)
    return cv2.erode(mask, KERNEL, iterations=14)


def _phantom(rng: np.random.Generator, size: int = 96, scale: float = 1e-4) -> np.ndarray:
    """An off-centre textured ellipse that touches the image border, noisy background, stray specks."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    inside = ((yy - 0.3 * size) / (0.45 * size)) ** 2 + ((xx - 0.5 * size) / (0.3 * size)) ** 2 < 1
    image = np.where(inside, scale * (1 + 0.5 * np.sin(xx / 4) * np.cos(yy / 6)), 0)
    image += np.abs(rng.normal(0, 0.1 * scale, image.shape))
    image[rng.integers(0, size, 8), rng.integers(0, size, 8)] = scale
    return image.astype(np.float32)


def _edge_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    cases = {"empty": np.zeros((20, 23)), "full": np.ones((20, 23))}
    for name, (r, c) in {"centre": (10, 11), "corner": (0, 0), "edge": (19, 5)}.items():
        cases[f"pixel_{name}"] = np.zeros((20, 23))
        cases[f"pixel_{name}"][r, c] = 1
    cases["touching_left_top"] = np.zeros((40, 37))
    cases["touching_left_top"][:12, :9] = 1
    cases["border_frame"] = np.ones((40, 37))
    cases["border_frame"][2:-2, 2:-2] = 0
    cases["hole_near_border"] = np.ones((40, 37))
    cases["hole_near_border"][1, 30] = 0
    cases["random_sparse"] = (rng.random((50, 41)) > 0.97).astype(np.float64)
    cases["random_dense"] = (rng.random((50, 41)) > 0.2).astype(np.float64)
    return cases


@pytest.mark.parametrize("name", sorted(_edge_cases()))
@pytest.mark.parametrize("iterations", [1, 2, 14, 15])
def test_morphology_matches_cv2(name: str, iterations: int) -> None:
    mask = _edge_cases()[name]
    t = torch.from_numpy(mask)
    np.testing.assert_array_equal(
        dilate(t, iterations).numpy(), cv2.dilate(mask, KERNEL, iterations=iterations) != 0
    )
    np.testing.assert_array_equal(
        erode(t, iterations).numpy(), cv2.erode(mask, KERNEL, iterations=iterations) != 0
    )


def test_full_mask_is_not_eroded_by_the_border() -> None:
    """OpenCV's border neither erodes nor dilates (scipy's default border_value=0 would erode this)."""
    full = torch.ones(1, 30, 30)
    assert bool(erode(full, 14).all())
    assert not bool(dilate(torch.zeros(30, 30), 15).any())


@pytest.mark.parametrize(("anatomy", "threshold"), [("brain", 5e-5), ("knee", 2e-5)])
def test_foreground_mask_matches_cv2_pipeline(anatomy: str, threshold: float) -> None:
    rng = np.random.default_rng(1)
    targets = np.stack([_phantom(rng, scale=s) for s in (1e-4, 4e-5, 3e-5)])
    got = foreground_mask(torch.from_numpy(targets), anatomy).numpy()
    for target, mask in zip(targets, got, strict=True):
        np.testing.assert_array_equal(mask, _cv2_mask(target, threshold))
    assert any(0 < m.sum() < m.size for m in got)


def _skimage_reference(recon: np.ndarray, target: np.ndarray, data_range: float, threshold: float) -> float:
    mask = _cv2_mask(target, threshold)
    _, full = structural_similarity(
        (recon * mask).astype(np.float64),
        (target * mask).astype(np.float64),
        win_size=7,
        data_range=data_range,
        use_sample_covariance=True,
        full=True,
    )
    pad = (7 - 1) // 2
    return float(full[pad:-pad, pad:-pad].mean())


def test_ssim_matches_skimage_on_random_data() -> None:
    rng = np.random.default_rng(2)
    target = rng.uniform(0, 1e-4, (3, 64, 80)).astype(np.float32)
    recon = (target + rng.normal(0, 1e-4, target.shape)).astype(np.float32)
    got = leaderboard_ssim(torch.from_numpy(recon), torch.from_numpy(target), float(target.max()), "brain")
    expected = [
        _skimage_reference(r, t, float(target.max()), 5e-5) for r, t in zip(recon, target, strict=True)
    ]
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)
    assert min(expected) < 0.9


@pytest.mark.parametrize(("anatomy", "threshold"), [("brain", 5e-5), ("knee", 2e-5)])
def test_ssim_matches_skimage_on_phantoms(anatomy: str, threshold: float) -> None:
    rng = np.random.default_rng(3)
    target = np.stack([_phantom(rng, scale=s) for s in (1e-4, 4e-5)])
    recon = (target + rng.normal(0, 5e-6, target.shape)).astype(np.float32)
    data_range = np.array([target[0].max(), 2 * target[1].max()])
    got = leaderboard_ssim(
        torch.from_numpy(recon), torch.from_numpy(target), torch.from_numpy(data_range), anatomy
    )
    expected = [
        _skimage_reference(r, t, float(d), threshold)
        for r, t, d in zip(recon, target, data_range, strict=True)
    ]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("anatomy", ["brain", "knee"])
def test_ssim_matches_skimage_on_podium_synthetic_data(tmp_path: Path, anatomy: str) -> None:
    import h5py

    from podium.tasks.mri.synth import synthesize_fastmri

    synthesize_fastmri(tmp_path, 1, 0, 1, 5, 64, 48, 32, 4, 3, accelerations=(8,), progress=False)
    with h5py.File(tmp_path / "leaderboard" / "acc8" / "image" / f"{anatomy}_test1.h5") as f:
        target, recon, data_range = f["image_label"][()], f["image_input"][()], float(f.attrs["max"])
    got = leaderboard_ssim(torch.from_numpy(recon), torch.from_numpy(target), data_range, anatomy)
    threshold = {"brain": 5e-5, "knee": 2e-5}[anatomy]
    expected = [_skimage_reference(r, t, data_range, threshold) for r, t in zip(recon, target, strict=True)]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)
    assert max(expected) < 0.99


def test_ssim_map_is_valid_convolution() -> None:
    x = torch.rand(2, 3, 20, 17)
    assert ssim_map(x, x, 1.0).shape == (2, 3, 14, 11)


def test_perfect_reconstruction_scores_exactly_one() -> None:
    rng = np.random.default_rng(4)
    target = torch.from_numpy(np.stack([_phantom(rng) for _ in range(3)]))
    scores = leaderboard_ssim(target.clone(), target, float(target.max()), "brain")
    assert scores.tolist() == [1.0, 1.0, 1.0]


def test_constant_images_give_the_hand_computed_value() -> None:
    """Zero variance leaves (2 c d + C1) / (c^2 + d^2 + C1), C1 = (0.01 max)^2, with max = c = 1."""
    target = torch.ones(1, 12, 12)
    got = leaderboard_ssim(torch.full((1, 12, 12), 0.5), target, 1.0, "brain")
    assert got.item() == pytest.approx((1.0 + 1e-4) / (1.25 + 1e-4), abs=1e-7)


def test_anatomy_from_name() -> None:
    assert anatomy_from_name("brain_test3.h5") == "brain"
    assert anatomy_from_name("dir/knee_acc8_12.h5") == "knee"
    with pytest.raises(DataError, match="liver_test1.h5"):
        anatomy_from_name("liver_test1.h5")


# --- folder scoring ------------------------------------------------------------------------------


def _write(path: Path, key: str, data: np.ndarray, maximum: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=np.asarray(data, dtype=np.float32))
        if maximum is not None:
            f.attrs["max"] = maximum


def _constant(values: list[float], value_scale: float = 1.0) -> np.ndarray:
    return np.stack([np.full((16, 16), v * value_scale) for v in values])


def _make_board(root: Path) -> tuple[Path, Path]:
    """Constant slices: target c (= max) vs recon d scores (2cd + C1) / (c^2 + d^2 + C1) by hand.

    The knee volume's level 3e-5 lies between the knee (2e-5) and brain (5e-5) thresholds: read as
    brain, its mask would be empty and every slice would score 1.
    """
    recon, board = root / "reconstructions_leaderboard", root / "leaderboard"
    _write(board / "acc4/image/brain_test1.h5", "image_label", _constant([1, 1, 1]), 1.0)
    _write(recon / "acc4/brain_test1.h5", "reconstruction", _constant([1, 1, 0.5]))
    _write(board / "acc4/image/knee_test1.h5", "image_label", _constant([1], 3e-5), 3e-5)
    _write(recon / "acc4/knee_test1.h5", "reconstruction", _constant([0]))
    _write(board / "acc8/image/brain_test2.h5", "image_label", _constant([1, 1]), 1.0)
    _write(recon / "acc8/brain_test2.h5", "reconstruction", _constant([0.5, 0.5]))
    _write(board / "acc8/image/knee_test2.h5", "image_label", _constant([1, 1], 3e-5), 3e-5)
    _write(recon / "acc8/knee_test2.h5", "reconstruction", _constant([1, 1], 3e-5))
    return recon, board


HALF = (1.0 + C1_OVER_MAX2) / (1.25 + C1_OVER_MAX2)
ZERO = C1_OVER_MAX2 / (1.0 + C1_OVER_MAX2)


@pytest.mark.parametrize("chunk_slices", [None, 1, 2])
def test_folder_score_is_slice_weighted(tmp_path: Path, chunk_slices: int | None) -> None:
    recon, board = _make_board(tmp_path)
    score = score_leaderboard(recon, board, chunk_slices=chunk_slices, device="cpu")
    acc4 = (1 + 1 + HALF + ZERO) / 4
    acc8 = (HALF + HALF + 1 + 1) / 4
    assert score.slices == {"acc4": 4, "acc8": 4}
    assert score.ssim["acc4"] == pytest.approx(acc4, abs=1e-6)
    assert score.ssim["acc8"] == pytest.approx(acc8, abs=1e-6)
    assert score.total == pytest.approx((acc4 + acc8) / 2, abs=1e-6)
    assert score.by_anatomy["acc4"]["knee"] == pytest.approx(ZERO, abs=1e-6)
    assert score.volumes["acc4"]["brain_test1.h5"] == pytest.approx((2 + HALF) / 3, abs=1e-6)


def test_folder_score_table_has_four_decimals(tmp_path: Path) -> None:
    score = score_leaderboard(*_make_board(tmp_path), device="cpu")
    console = Console(record=True, width=120)
    console.print(leaderboard_table(score))
    text = console.export_text()
    assert f"{score.ssim['acc4']:.4f}" in text
    assert f"{score.total:.4f}" in text
    assert f"{HALF:.4f}" in text


def test_folder_perfect_reconstruction_totals_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for acc in ("acc4", "acc8"):
        volume = np.stack([_phantom(rng) for _ in range(2)])
        _write(
            tmp_path / "board" / acc / "image" / "brain_test1.h5", "image_label", volume, float(volume.max())
        )
        _write(tmp_path / "recon" / acc / "brain_test1.h5", "reconstruction", volume)
    assert score_leaderboard(tmp_path / "recon", tmp_path / "board", device="cpu").total == 1.0


def test_folder_errors_name_file_and_key(tmp_path: Path) -> None:
    recon, board = _make_board(tmp_path)
    (recon / "acc8/knee_test2.h5").unlink()
    with pytest.raises(DataError, match="knee_test2.h5: file not found"):
        score_leaderboard(recon, board, device="cpu")
    _write(recon / "acc8/knee_test2.h5", "wrong_key", _constant([1, 1]))
    with pytest.raises(DataError, match="knee_test2.h5: dataset 'reconstruction' not found"):
        score_leaderboard(recon, board, device="cpu")
    _write(recon / "acc8/knee_test2.h5", "reconstruction", _constant([1, 1, 1]))
    with pytest.raises(DataError, match=r"knee_test2.h5: 'reconstruction' has shape \(3, 16, 16\)"):
        score_leaderboard(recon, board, device="cpu")
    _write(recon / "acc8/knee_test2.h5", "reconstruction", _constant([1, np.nan]))
    with pytest.raises(DataError, match="knee_test2.h5: dataset 'reconstruction' slice 1 has non-finite"):
        score_leaderboard(recon, board, device="cpu")
    _write(board / "acc8/image/knee_test2.h5", "image_label", _constant([1, 1]))
    with pytest.raises(DataError, match="knee_test2.h5: attribute 'max' not found"):
        score_volume(recon / "acc8/knee_test2.h5", board / "acc8/image/knee_test2.h5")
    with pytest.raises(DataError, match="acc2/image"):
        score_leaderboard(recon, board, accelerations=("acc2",), device="cpu")
    _write(board / "acc8/image/knee_test2.h5", "image_label", np.zeros((0, 16, 16)), 1.0)
    _write(recon / "acc8/knee_test2.h5", "reconstruction", np.zeros((0, 16, 16)))
    with pytest.raises(DataError, match="knee_test2.h5: dataset 'image_label' has no slices"):
        score_leaderboard(recon, board, device="cpu")


# --- fastMRI's own evaluate -----------------------------------------------------------------------


def test_fastmri_volume_metrics_match_fastmri_package() -> None:
    rng = np.random.default_rng(6)
    gt = np.abs(rng.normal(1.0, 0.3, (3, 40, 36))).astype(np.float32)
    pred = (gt + rng.normal(0, 0.1, gt.shape)).astype(np.float32)
    assert reconstruction.volume_ssim(gt, pred) == pytest.approx(
        float(fastmri_evaluate.ssim(gt, pred)[0]), abs=1e-7
    )
    assert reconstruction.volume_nmse(gt, pred) == pytest.approx(
        float(fastmri_evaluate.nmse(gt, pred)), rel=1e-6
    )
    assert reconstruction.volume_psnr(gt, pred) == pytest.approx(
        float(fastmri_evaluate.psnr(gt, pred)), rel=1e-9
    )
    per_slice = [structural_similarity(g, p, data_range=gt.max()) for g, p in zip(gt, pred, strict=True)]
    np.testing.assert_allclose(reconstruction.slice_ssims(gt, pred), per_slice, atol=1e-7)


def test_fastmri_folder_matches_fastmri_evaluate(tmp_path: Path) -> None:
    """Targets wider than tall are centre-cropped to (W, W); one acquisition is filtered out."""
    rng = np.random.default_rng(8)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for i, acquisition in enumerate(["CORPD_FBK", "CORPDFS_FBK", "CORPD_FBK"]):
        gt = np.abs(rng.normal(1.0, 0.3, (2, 24, 20))).astype(np.float32)
        pred = np.abs(gt + rng.normal(0, 0.2, (2, 24, 20))).astype(np.float32)
        with h5py.File(tmp_path / "gt" / f"file{i}.h5", "w") as f:
            f.create_dataset("reconstruction_rss", data=gt)
            f.attrs["acquisition"] = acquisition
        with h5py.File(tmp_path / "pred" / f"file{i}.h5", "w") as f:
            f.create_dataset("reconstruction", data=pred)
    args = argparse.Namespace(
        target_path=tmp_path / "gt",
        predictions_path=tmp_path / "pred",
        acquisition="CORPD_FBK",
        acceleration=None,
    )
    expected = fastmri_evaluate.evaluate(args, "reconstruction_rss")
    got = reconstruction.evaluate_folder(tmp_path / "gt", tmp_path / "pred", acquisition="CORPD_FBK")
    assert sorted(got["volumes"]) == ["file0.h5", "file2.h5"]
    for name, mean in expected.means().items():
        assert got["mean"][name] == pytest.approx(float(np.asarray(mean).item()), rel=1e-5)
