"""GeekSeek's recipe end to end, its augmented slice dataset, and an exact resume with augmentation on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from rich.console import Console

import podium
from podium.engine.seeding import SampleKey
from podium.errors import ConfigError
from podium.metrics.ssim import foreground_mask
from podium.recipe import load_recipe
from podium.registry import get_task
from podium.tasks.mri import MriTrain
from podium.tasks.mri.augment import GEEKSEEK, AugmentConfig
from podium.tasks.mri.data import scan_snu
from podium.tasks.mri.dataset import Augmentation, SliceDataset
from podium.tasks.mri.fft import as_complex, center_crop, ifft2c, rss
from podium.tasks.mri.losses import ReconstructionLoss
from podium.tasks.mri.masks import MaskAugmenter, fixed_pattern
from podium.tasks.mri.synth import synthesize_fastmri

from .conftest import kill_when, podium_cli, podium_popen

RECIPE = Path(__file__).parent.parent / "recipes" / "fastmri-feature-varnet.yaml"
SIZES = {"height": 64, "width": 48, "target_size": 32, "coils": 4, "slices": 3}
SMALLER = [
    "stages.data.num_train=1",
    *(f"stages.data.{k}={v}" for k, v in SIZES.items()),
    "stages.fvarnet.model={name: feature_varnet, cascade_counts: [1, 1, 1], feature_chans: 4, unet_chans: 4, "
    "image_chans: 4, pools: 2, sens_chans: 2, sens_pools: 2, crop_size: 32}",
    "stages.fvarnet.trainer.max_epochs=3",
    "stages.fvarnet.augment.delay=0",
    "stages.fvarnet.augment.p_max=1.0",
    "stages.fvarnet.mask.augment.delay=0",
    "stages.recon.model=fvarnet@epoch=2",
]
QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mri") / "Data"
    synthesize_fastmri(root, 1, 1, 1, 3, **SIZES, progress=False)
    return root


def test_recipe_augment_section_is_geekseeks():
    recipe = load_recipe(RECIPE)
    assert recipe.stages["fvarnet"].config.augment == AugmentConfig(**GEEKSEEK)
    assert recipe.stages["fvarnet"].config.model.cascade_counts == (5, 10, 3)


def test_recipe_end_to_end_trains_on_train_and_val_and_reconstructs_from_the_chosen_epoch(tmp_path):
    result = podium.run(RECIPE, SMALLER, profile="tiny", store=tmp_path, console=QUIET, report=False)
    assert [o.state for o in result.outcomes] == ["done"] * 4
    fit = next(o.path for o in result.outcomes if o.stage == "fvarnet")
    manifest = json.loads((fit / "manifest.json").read_text())
    with open(fit / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    # train + val folders: 2 volumes x 2 anatomies x 2 accelerations x 3 slices, each slice under acc4 and
    # acc8 masks = 48 items; 2 per optimizer step; no validation
    assert [int(r["step"]) for r in rows] == [24, 48, 72] and "val_ssim" not in rows[0]
    losses = [float(r["train_loss"]) for r in rows]
    assert manifest["checkpoints"]["best"]["epoch"] == losses.index(min(losses)) + 1
    recon = json.loads((next(o.path for o in result.outcomes if o.stage == "recon") / "manifest.json").read_text())
    assert recon["config"]["model"] == "fvarnet@epoch=2"
    assert set(result.leaderboard["leaderboard"]["recon"]) >= {"ssim_total", "zero_filled_total"}


def test_augmented_items_are_consistent_and_a_pure_function_of_their_key(data):
    volumes = scan_snu(data / "train")
    augment = AugmentConfig(p_max=1.0, schedule="constant", max_rotation=30.0)
    # an all-ones "mask" (acceleration 1) keeps the augmented k-space whole, so the target can be checked
    ds = SliceDataset(volumes, "fixed", augmentation=Augmentation(augment, None, 10), duplicate=(1,))
    plain = SliceDataset(volumes, "fixed", duplicate=(1,))
    key = SampleKey(2, 1234, 3)
    item = ds[key]
    kspace = as_complex(item["masked_kspace"])
    expected = center_crop(rss(ifft2c(kspace), dim=0), tuple(item["target"].shape))
    torch.testing.assert_close(item["target"], expected, rtol=1e-5, atol=1e-5 * float(expected.max()))
    assert not torch.equal(item["target"], plain[key]["target"])
    again = ds[key]
    assert torch.equal(again["masked_kspace"], item["masked_kspace"]) and torch.equal(again["target"], item["target"])
    assert not torch.equal(ds[SampleKey(2, 1235, 3)]["target"], item["target"])


def test_schedules_before_their_delay_leave_items_unchanged(data):
    volumes = scan_snu(data / "train")
    scheduled = Augmentation(AugmentConfig(p_max=1.0, schedule="ramp", delay=4),
                             MaskAugmenter({"random": 1.0}, p_max=1.0, schedule="ramp", delay=4), 10)
    ds, plain = SliceDataset(volumes, augmentation=scheduled), SliceDataset(volumes)
    for epoch in (0, 3):
        a, b = ds[SampleKey(1, 77, epoch)], plain[SampleKey(1, 77, epoch)]
        assert all(torch.equal(a[k], b[k]) for k in ("masked_kspace", "mask", "target"))
    late = ds[SampleKey(1, 77, 9)]
    assert not torch.equal(late["target"], plain[SampleKey(1, 77, 9)]["target"])


def test_duplicate_lists_every_slice_under_each_acceleration(data):
    volumes = scan_snu(data / "train")
    ds = SliceDataset(volumes, "fixed", duplicate=(4, 8), foreground=True)
    assert len(ds) == 2 * sum(v.num_slices for v in volumes)
    first, second = ds[0], ds[1]
    assert first["slice"] == second["slice"] == 0 and first["fname"] == second["fname"]
    width = volumes[0].width
    assert np.array_equal(first["mask"].reshape(-1).numpy(), fixed_pattern(width, 4))
    assert np.array_equal(second["mask"].reshape(-1).numpy(), fixed_pattern(width, 8))
    assert first["foreground"].shape == first["target"].shape and set(first["foreground"].unique().tolist()) <= {0, 1}


def test_kill_mid_training_with_augmentation_then_resume_is_identical(tmp_path):
    args = ["run", str(RECIPE), "--profile", "tiny", "--only", "data", "--only", "fvarnet", *SMALLER,
            "stages.fvarnet.trainer.max_epochs=4"]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    podium_cli(*args, store=ref, check=True)
    proc = podium_popen(*args, store=killed)
    kill_when(proc, killed, "*/fvarnet/*/manifest.json", lambda m: "epoch=2" in m.get("checkpoints", {}), timeout=300)
    out = podium_cli(*args, store=killed, check=True)
    assert "resuming from" in out.stdout

    def final(store: Path) -> tuple[dict, str]:
        (run,) = list(store.glob("*/fvarnet/*"))
        manifest = json.loads((run / "manifest.json").read_text())
        state = torch.load(run / manifest["checkpoints"]["epoch=4"]["file"], weights_only=True)["state_dict"]
        return state, (run / "logs" / "metrics.csv").read_text()

    (a, log_a), (b, log_b) = final(ref), final(killed)
    assert log_a == log_b
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_tiny_profile_beats_the_zero_filled_input(tmp_path):
    result = podium.run(RECIPE, [], profile="tiny", store=tmp_path, console=QUIET, report=False)
    score = result.leaderboard["leaderboard"]["recon"]
    assert score["ssim_total"] > score["zero_filled_total"] + 0.1


def test_experts_train_on_their_class_only(data):
    cfg = MriTrain(model={"crop_size": SIZES["target_size"]}, data={"anatomy": "knee", "acceleration": 8})
    train, val = get_task("mri").datasets(cfg, data, seed=0)
    assert {(v.anatomy, v.acceleration) for v in train.volumes + val.volumes} == {("knee", 8)}
    assert len(train.volumes) == 1 and len(val.volumes) == 1
    with pytest.raises(ConfigError, match=r"no volume in .*train is brain at acc3"):
        get_task("mri").datasets(MriTrain(model={"crop_size": 32}, data={"anatomy": "brain", "acceleration": 3}),
                                 data, seed=0)


def test_hacker_items_draw_their_acceleration_from_the_item_seed(data):
    volumes = scan_snu(data / "train")
    ds = SliceDataset(volumes, "fixed", accelerations=(4, 8))
    width = volumes[0].width
    patterns = {4: fixed_pattern(width, 4), 8: fixed_pattern(width, 8)}
    seen = []
    for seed in range(20):
        mask = ds[SampleKey(0, seed, 0)]["mask"].reshape(-1).numpy()
        acc = next(a for a, p in patterns.items() if np.array_equal(mask, p))
        seen.append(acc)
        assert np.array_equal(ds[SampleKey(0, seed, 5)]["mask"].reshape(-1).numpy(), mask)  # the seed decides
    assert set(seen) == {4, 8}


def test_area_weight_is_the_root_of_the_foreground_share_of_the_volumes_largest(data):
    volumes = scan_snu(data / "train")
    ds = SliceDataset(volumes, "fixed", foreground=True, area_weight=True)
    with h5py.File(volumes[0].target_path) as f:
        targets = torch.from_numpy(f["image_label"][()])
    areas = [float(foreground_mask(t, volumes[0].anatomy).sum()) for t in targets]
    for s in range(len(areas)):
        assert float(ds[s]["area_weight"]) == pytest.approx((areas[s] / max(areas)) ** 0.5, rel=1e-6)

    loss = ReconstructionLoss(ssim=1.0, l1=0.5)
    x, y = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    dr, w = torch.ones(3), torch.tensor([1.0, 0.5, 0.25])
    by_hand = sum(float(w[i] * loss(x[i : i + 1], y[i : i + 1], dr[i : i + 1])) for i in range(3)) / 3
    assert float(loss(x, y, dr, weights=w)) == pytest.approx(by_hand, rel=1e-6)
    assert float(loss(x, y, dr, weights=torch.ones(3))) == pytest.approx(float(loss(x, y, dr)), rel=1e-5)
