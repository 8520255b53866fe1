"""The mri task end to end (synth -> train -> reconstruct -> leaderboard SSIM) and its slice dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from rich.console import Console

import podium
from podium.errors import ConfigError, DataError
from podium.store import StageRun, write_json
from podium.tasks import get_task
from podium.tasks.mri import MriTrain
from podium.tasks.mri.data import scan_snu
from podium.tasks.mri.dataset import SliceDataset
from podium.tasks.mri.fft import as_complex, center_crop, ifft2c, rss
from podium.tasks.mri.masks import HelperMaskSampler, fixed_pattern, is_fixed_pattern
from podium.tasks.mri.reconstruct import RECON_DIR, TIMING_FILE, reconstruct_leaderboard
from podium.tasks.mri.synth import synthesize_fastmri

RECIPE = Path(__file__).parent.parent / "recipes" / "fastmri-varnet.yaml"
SIZES = {"height": 64, "width": 48, "target_size": 32, "coils": 4, "slices": 3}
SMALLER = [
    "stages.data.num_train=1",
    *(f"stages.data.{k}={v}" for k, v in SIZES.items()),
    "stages.varnet.model={name: varnet, num_cascades: 1, chans: 4, pools: 2, sens_chans: 2, sens_pools: 2, "
    "crop_size: 32}",
    "stages.varnet.trainer.max_epochs=1",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mri") / "Data"
    synthesize_fastmri(root, 1, 1, 1, 3, **SIZES, progress=False)
    return root


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> podium.api.RunResult:
    store = tmp_path_factory.mktemp("store")
    return podium.run(RECIPE, SMALLER, profile="tiny", store=store, console=Console(quiet=True), report=False)


def _stage_dir(result: podium.api.RunResult, stage: str) -> Path:
    (outcome,) = [o for o in result.outcomes if o.stage == stage]
    return outcome.path


def _data_root(result: podium.api.RunResult) -> Path:
    return _stage_dir(result, "data") / "data"


def _read(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[key][()]


# ---------------------------------------------------------------- end to end


def test_pipeline_writes_the_ssim_table_headline_first(pipeline):
    scores = pipeline.leaderboard["leaderboard"]["recon"]
    assert list(scores)[:3] == ["ssim_total", "ssim_acc4", "ssim_acc8"]
    assert list(scores)[3:6] == ["zero_filled_total", "zero_filled_acc4", "zero_filled_acc8"]
    for key in ("ssim_total", "ssim_acc4", "ssim_acc8", "zero_filled_total"):
        assert 0 < scores[key] < 1, (key, scores[key])
    assert scores["ssim_total"] == pytest.approx((scores["ssim_acc4"] + scores["ssim_acc8"]) / 2)
    assert scores["zero_filled_acc8"] < scores["zero_filled_acc4"]  # fewer lines, worse zero-filled image
    assert scores["inference_s"] > 0
    assert scores["budget_share"] == pytest.approx(scores["inference_s"] / 3600)


def test_pipeline_reconstructs_every_leaderboard_file_in_the_challenge_layout(pipeline):
    root, recon = _data_root(pipeline), _stage_dir(pipeline, "recon")
    kspace_files = sorted(root.glob("leaderboard/acc*/kspace/*.h5"))
    assert len(kspace_files) == 4
    recorded = StageRun(recon).read_manifest()["outputs"]
    for kspace_path in kspace_files:
        acc = kspace_path.parent.parent.name
        out = recon / RECON_DIR / acc / kspace_path.name
        assert f"{RECON_DIR}/{acc}/{kspace_path.name}" in recorded
        with h5py.File(out, "r") as f:
            assert list(f) == ["reconstruction"]
            assert f["reconstruction"].dtype == np.float32
            assert f["reconstruction"].shape == (SIZES["slices"], SIZES["target_size"], SIZES["target_size"])
            assert np.isfinite(f["reconstruction"][()]).all()
    assert TIMING_FILE in recorded


def test_a_reconstruction_equal_to_the_target_scores_exactly_one(pipeline, tmp_path):
    root = _data_root(pipeline)
    fake = StageRun(tmp_path / "perfect")
    files = []
    for image in sorted(root.glob("leaderboard/acc*/image/*.h5")):
        out = fake.path / RECON_DIR / image.parent.parent.name / image.name
        out.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(out, "w") as f:
            f.create_dataset("reconstruction", data=_read(image, "image_label"))
        files.append(out)
    files.append(write_json(fake.path / TIMING_FILE, {"seconds": 1.0, "budget_share": 1 / 3600}))
    fake.record_outputs(files)
    scores = get_task("mri").evaluate(fake, root, None, tmp_path / "eval")
    assert scores["ssim_total"] == scores["ssim_acc4"] == scores["ssim_acc8"] == 1.0
    assert scores["fastmri_ssim"] == pytest.approx(1.0) and scores["fastmri_nmse"] == 0.0
    assert scores["zero_filled_total"] < 1.0

    shutil.copy(root / "leaderboard/acc4/image/knee_test1.h5", fake.path / RECON_DIR / "acc4" / "knee_test1.h5")
    with pytest.raises(DataError, match="reconstruction"):  # an image file is not a reconstruction
        get_task("mri").evaluate(fake, root, None, tmp_path / "eval")


class ZeroFilled(torch.nn.Module):
    """A "model" that returns the zero-filled RSS of its input and remembers the masks it was given."""

    def __init__(self, crop: int):
        super().__init__()
        self.crop = crop
        self.masks: list[np.ndarray] = []

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.masks += [m.reshape(-1).numpy() for m in mask]
        return center_crop(rss(ifft2c(as_complex(masked_kspace)), dim=1), self.crop)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_reconstructing_with_zero_filling_scores_as_image_input(data, tmp_path, batch_size):
    """Slices land in their own file and place, with the file's stored mask, whatever the batching."""
    model = ZeroFilled(SIZES["target_size"])
    files = reconstruct_leaderboard(model, data / "leaderboard", tmp_path, batch_size=batch_size,
                                    console=Console(quiet=True))
    run = StageRun(tmp_path)
    run.record_outputs(files)
    stored = [_read(k, "mask") for k in sorted(data.glob("leaderboard/acc*/kspace/*.h5"))]
    assert len(model.masks) == len(stored) * SIZES["slices"]
    for i, mask in enumerate(model.masks):
        assert np.array_equal(mask, stored[i // SIZES["slices"]])
    scores = get_task("mri").evaluate(run, data, None, tmp_path / "eval")
    for key in ("total", "acc4", "acc8"):
        assert scores[f"ssim_{key}"] == pytest.approx(scores[f"zero_filled_{key}"], abs=1e-5)


def test_evaluate_refuses_per_item_predictions(data, tmp_path):
    with pytest.raises(ConfigError, match="predict stage"):
        get_task("mri").evaluate(object(), data, None, tmp_path)


# ---------------------------------------------------------------- dataset


def test_masked_kspace_is_zero_off_the_mask_and_the_target_is_image_label(data):
    volumes = scan_snu(data / "train")
    ds = SliceDataset(volumes, "fixed")
    assert len(ds) == len(volumes) * SIZES["slices"]
    for index in (0, len(ds) - 1):
        item = ds[index, 123]
        volume = volumes[index // SIZES["slices"]]
        s = index % SIZES["slices"]
        mask = fixed_pattern(SIZES["width"], volume.acceleration)
        assert np.array_equal(item["mask"].numpy().reshape(-1), mask)
        kspace = _read(volume.kspace_path, "kspace")[s]
        got = item["masked_kspace"].numpy()
        assert got.shape == (SIZES["coils"], SIZES["height"], SIZES["width"], 2)
        assert not got[..., mask == 0, :].any()
        sampled = got[..., mask == 1, 0] + 1j * got[..., mask == 1, 1]
        assert np.array_equal(sampled, kspace[..., mask == 1])
        assert np.abs(kspace[..., mask == 0]).sum() > 0  # train k-space is full: the zeros come from the mask
        assert np.array_equal(item["target"].numpy(), _read(volume.target_path, "image_label")[s])
        with h5py.File(volume.target_path, "r") as f:
            assert item["max_value"].item() == pytest.approx(float(f.attrs["max"]))
        assert (item["fname"], item["slice"], item["anatomy"]) == (volume.name, s, volume.anatomy)


def test_file_masks_are_the_stored_ones(data):
    volumes = scan_snu(data / "val")
    ds = SliceDataset(volumes, "file")
    for index, volume in enumerate(volumes):
        stored = _read(volume.kspace_path, "mask")
        assert np.array_equal(ds[index * SIZES["slices"], 5]["mask"].numpy().reshape(-1), stored)


def test_helper_masks_follow_the_sample_seed_only(data):
    volumes = scan_snu(data / "train")
    ds = SliceDataset(volumes, "helper", HelperMaskSampler(p_max=1.0))
    masks = [ds[0, seed]["mask"].numpy().reshape(-1) for seed in range(6)]
    assert np.array_equal(masks[2], ds[0, 2]["mask"].numpy().reshape(-1))
    assert len({m.tobytes() for m in masks}) > 1
    assert not any(is_fixed_pattern(m) for m in masks)
    with pytest.raises(ValueError, match="HelperMaskSampler"):
        SliceDataset(volumes, "helper")


def test_validation_masks_are_fixed_even_for_the_helper(data):
    train_cfg = MriTrain(model={"crop_size": SIZES["target_size"]}, mask={"kind": "helper"})
    _, val = get_task("mri").datasets(train_cfg, data, seed=0)
    first, second = val[0, 1]["mask"], val[0, 2]["mask"]
    assert np.array_equal(first, second)
    assert is_fixed_pattern(first.numpy().reshape(-1))


def test_crop_size_must_match_the_targets(data):
    with pytest.raises(ConfigError, match="crop_size"):
        get_task("mri").datasets(MriTrain(model={"crop_size": 384}), data, seed=0)


def test_check_data_names_what_is_missing(data, tmp_path):
    files = get_task("mri").check_data(data)
    assert len(files) == 2 * 12  # (train, val, leaderboard) x (brain, knee) x (acc4, acc8), kspace + image
    copy = tmp_path / "Data"
    shutil.copytree(data, copy)
    (copy / "train/image/extra_acc4_9.h5").write_bytes(b"")
    with pytest.raises(DataError, match="image file without k-space"):
        get_task("mri").check_data(copy)
    shutil.rmtree(copy / "leaderboard")
    with pytest.raises(DataError, match="leaderboard"):
        get_task("mri").check_data(copy)


def test_report_shows_slices_ssim_per_volume_and_the_time_budget(pipeline: podium.api.RunResult):
    from .test_report import assert_self_contained

    text = podium.api.report(pipeline.recipe, store=pipeline.store, console=Console(quiet=True)).read_text()
    page = assert_self_contained(text)
    # a grid per acceleration x anatomy, the strip of volume SSIMs, the reconstruction time against 3,600 s
    assert page.items() == {"imagegrid": 4, "strip": 1, "bars": 1}
    assert page.tiles() == 4 * 2 * 5, "two slices of 3, each: zero-filled, reconstruction, target, |error|, mask"
    assert "zero-filled · SSIM" in text and "foreground · " in text and "challenge budget: 3600" in text
    assert '"text":"zero-filled input: ' in text, "the zero-filled baseline is a line on the leaderboard"
    assert list((pipeline.run_dir / ".report-cache").glob("mri-volume-ssim-*.json")), "volume SSIMs are kept"

