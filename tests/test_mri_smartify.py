"""sMaRtIfy's pipeline: learning-rate schedules, the broker and router, experts on their class only, the
collect stage (same output as the chosen experts, epoch selection by score) and exact resume of experts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from podium.engine.checkpoint import load_checkpoint, select_checkpoint
from podium.engine.seeding import SampleKey
from podium.ensemble.experts import COLLECTED, select_epoch
from podium.errors import ConfigError
from podium.metrics.ssim import leaderboard_ssim
from podium.recipe import Ref, load_recipe
from podium.registry import get_task
from podium.runner import Runner
from podium.store import RunStore, StageRun
from podium.tasks.mri import OptimConfig
from podium.tasks.mri.data import MriReader, scan_snu
from podium.tasks.mri.dataset import masked_kspace
from podium.tasks.mri.experts import ExpertSystem
from podium.tasks.mri.masks import HelperMaskSampler, acceleration_from_mask, fixed_pattern, is_fixed_pattern
from podium.tasks.mri.router import route_volume

from .conftest import kill_when, podium_cli, podium_popen

RECIPE = Path(__file__).parent.parent / "recipes" / "fastmri-smartify.yaml"
MODEL = ("{name: promptmr_plus, num_cascades: 1, n_feat0: 4, feature_dim: [4, 6, 8], prompt_dim: [2, 2, 2], "
         "sens_n_feat0: 2, sens_feature_dim: [2, 4, 4], sens_prompt_dim: [2, 2, 2], prompt_size: [4, 2, 2], "
         "n_enc_cab: [1, 1, 1], n_dec_cab: [1, 1, 1], n_bottleneck_cab: 1, n_history: 2, crop_size: 32}")
TRAINED = ("hacker_baseline", "helper_baseline", "hacker_experts", "hacker_clutch", "helper_experts")
SMALLER = [
    "stages.data.num_train=1", "stages.data.height=64", "stages.data.width=48", "stages.data.target_size=32",
    "stages.data.coils=4", "stages.data.slices=2",
    *(f"stages.{s}.model={MODEL}" for s in TRAINED),
    "stages.hacker_baseline.trainer.max_epochs=1", "stages.helper_baseline.trainer.max_epochs=1",
    "stages.helper_baseline.mask.delay=0", "stages.helper_baseline.mask.max_epochs=1",
    "stages.hacker_experts.init=hacker_baseline@epoch=1", "stages.helper_experts.init=helper_baseline@epoch=1",
    "stages.helper_experts.trainer.max_epochs=1",
    "stages.router.model.name=test_resnet", "stages.router.trainer.max_epochs=1",
]
QUIET = Console(quiet=True)


# ---------------------------------------------------------------- schedules, broker, router


def _torch_lrs(make, epochs: int, step_from: int = 0) -> list[float]:
    """Learning rates of epochs 0.. with torch's own schedulers, stepped per epoch from ``step_from``."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make(opt)
    lrs = []
    for epoch in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if epoch >= step_from:
            sched.step()
    return lrs


def test_baseline_schedule_is_steplr_stepped_from_epoch_5():
    optim = OptimConfig(name="adamw", lr=1.0, lr_step_size=11, lr_gamma=0.3, lr_start_epoch=5)
    ours = [optim.factor(e) for e in range(45)]
    theirs = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 11, 0.3), 45, step_from=5)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert ours[15] == 1.0 and ours[16] == pytest.approx(0.3) and ours[27] == pytest.approx(0.09)


def test_expert_schedule_is_the_teams_sequential_lr():
    optim = OptimConfig(name="adamw", lr=1.0, warmup_epochs=3, warmup_start_factor=0.1, lr_start_epoch=15,
                        lr_step_size=5, lr_gamma=0.3)

    def sequential(opt):
        sched = torch.optim.lr_scheduler
        return sched.SequentialLR(opt, [sched.LinearLR(opt, 0.1, 1.0, total_iters=3),
                                        sched.ConstantLR(opt, 1.0, total_iters=12), sched.StepLR(opt, 5, 0.3)],
                                  milestones=[3, 15])

    np.testing.assert_allclose([optim.factor(e) for e in range(30)], _torch_lrs(sequential, 30), rtol=1e-9)
    assert [round(optim.factor(e), 6) for e in (0, 1, 2, 3, 14, 19, 20, 25)] == [0.1, 0.4, 0.7, 1, 1, 1, 0.3, 0.09]


def test_helper_schedule_is_the_exp_formula():
    sampler = HelperMaskSampler(schedule="exp", delay=15, max_epochs=25, p_max=1.0)
    for t in range(26):
        by_hand = 0.0 if t < 15 else (1 - math.exp(-(t - 15) * 5 / 10)) / (1 - math.exp(-5))
        assert sampler.robust_probability(t) == pytest.approx(by_hand, abs=1e-12), t


def _constant(value: torch.Tensor) -> torch.nn.Module:
    """A 'model' returning ``value`` for every slice, tagged so the test can see who answered."""

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.value = torch.nn.Parameter(value.clone())

        def forward(self, kspace, mask):
            return self.value.expand(len(kspace), *self.value.shape).clone()

    return Constant()


def _system() -> ExpertSystem:
    experts = {f"{g}_{a}_acc{acc}": _constant(torch.full((2, 2), float(i)))
               for i, (g, a, acc) in enumerate((g, a, acc) for g in ("fixed", "robust") for a in ("brain", "knee")
                                               for acc in (4, 8))}
    return ExpertSystem(experts, router=torch.nn.Linear(1, 2))


def test_broker_sends_only_the_exact_fixed_pattern_to_the_fixed_experts():
    system = _system()
    width = 396
    exact = torch.from_numpy(fixed_pattern(width, 8)).reshape(1, 1, -1, 1)
    near = exact.clone()
    near[0, 0, 3, 0] = 1 - near[0, 0, 3, 0]  # one line off: a near miss is no fixed pattern
    other = torch.from_numpy(HelperMaskSampler(p_max=1.0)(width, 3, acceleration=4)).reshape(1, 1, -1, 1)
    assert system.expert_for(exact, "brain") == "fixed_brain_acc8"
    assert system.expert_for(near, "knee") == "robust_knee_acc8"
    assert system.expert_for(other, "knee") == "robust_knee_acc4"
    kspace = torch.zeros(3, 1, 4, width, 2)
    out = system(kspace, torch.cat([exact, near, other]), "knee")
    assert out[:, 0, 0].tolist() == [3.0, 7.0, 6.0]  # fixed_knee_acc8, robust_knee_acc8, robust_knee_acc4


@pytest.mark.parametrize(("lines", "acc"), [(60, 8), (96, 8), (97, 4), (120, 4)])
def test_acceleration_from_density_at_the_024_threshold(lines: int, acc: int):
    mask = np.zeros(400)
    mask[:lines] = 1  # 96 / 400 = 0.24 is not above the threshold; 97 / 400 = 0.2425 is
    assert acceleration_from_mask(mask) == acc


def test_router_decides_a_volume_by_its_summed_logits():
    class PerSlice(torch.nn.Module):
        """Slice i votes knee by 1 except the first, which votes brain by 5."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            votes = torch.tensor([[0.0, 1.0]]).repeat(len(x), 1)
            votes[x[:, 0, 0, 0] == 0] = torch.tensor([5.0, 0.0])
            return votes + self.w

    images = torch.ones(4, 8, 8)
    images[0] = 0
    assert route_volume(PerSlice(), images, batch_size=3) == ("brain", [5.0, 3.0])
    assert route_volume(PerSlice(), images[1:]) == ("knee", [0.0, 3.0])


def test_select_epoch_takes_the_best_score_and_the_earliest_tie():
    scores = {31: 0.91, 32: 0.95, 33: 0.93, 34: 0.95, 35: 0.90}
    assert select_epoch([31, 32, 33, 34, 35], scores.__getitem__) == (32, scores)


def test_member_references_parse_and_are_checked():
    assert Ref.parse("experts[2]@epoch=5", "x") == Ref("experts", "epoch", 5, 2)
    assert str(Ref.parse("experts[1]", "x")) == "experts[1]@best"
    with pytest.raises(ConfigError, match=r"stages.recon.model: 'hacker_experts' has 4 member\(s\); expected an "
                                          r"index 0..3 in 'hacker_experts\[4\]@best'"):
        load_recipe(RECIPE, "tiny", ["stages.recon.model=hacker_experts[4]"])


# ---------------------------------------------------------------- the pipeline at test size


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("smartify")
    podium_cli("run", str(RECIPE), "--profile", "tiny", *SMALLER, store=root, check=True)
    return root


def _runs(store: Path, stage: str) -> list[StageRun]:
    return Runner(load_recipe(RECIPE, "tiny", SMALLER), RunStore(store), QUIET).runs_of(stage)


def test_the_pipeline_runs_end_to_end_and_beats_zero_filled(store: Path):
    (evaluate,) = _runs(store, "leaderboard")
    metrics = json.loads(evaluate.output("metrics.json").read_text())["recon"]
    routing = json.loads(_runs(store, "recon")[0].output("routing.json").read_text())
    served = [next(iter(route["experts"])) for route in routing.values()]
    assert {k: v for k, v in metrics.items() if k.startswith("volumes_")} == {
        f"volumes_{key}": served.count(key) for key in sorted(set(served))}
    assert len(routing) == 8
    data = _runs(store, "data")[0].path / "data" / "leaderboard"
    reader = MriReader()
    for name, route in routing.items():
        (volume,) = [v for v in scan_snu(data / name.split("/")[0]) if v.name == name.split("/")[1]]
        group = "fixed" if is_fixed_pattern(reader.mask(volume)) else "robust"
        assert list(route["experts"]) == [f"{group}_{route['anatomy']}_acc{volume.acceleration}"]
    robust = {name for name, route in routing.items() if next(iter(route["experts"])).startswith("robust")}
    assert robust == {name for name in routing if name.endswith("_test2.h5")}  # the synth's files under another mask
    right = [route["anatomy"] == name.split("/")[1].split("_")[0] for name, route in routing.items()]
    assert metrics["router_accuracy"] == sum(right) / len(right)
    assert metrics["ssim_total"] > metrics["zero_filled_total"]


def test_experts_see_only_their_class(store: Path):
    recipe = load_recipe(RECIPE, "tiny", SMALLER)
    root = _runs(store, "data")[0].path / "data"
    task = get_task("mri")
    for stage in ("hacker_experts", "helper_experts"):
        for cfg, (anatomy, acc) in zip(recipe.stages[stage].configs,
                                       [("brain", 4), ("brain", 8), ("knee", 4), ("knee", 8)], strict=True):
            train, val = task.datasets(cfg, root, 0)
            assert val is None and len(train) == 2 * 2 * 2  # train + val volumes of one anatomy, 2 slices each
            for i in range(len(train)):
                item = train[SampleKey(i, 1000 + i, 1)]
                line = item["mask"].reshape(-1).numpy()
                assert item["anatomy"] == anatomy and item["acceleration"] == acc
                assert is_fixed_pattern(line) == (stage == "hacker_experts")
                assert line.sum() > 4  # the centre block (round(0.08 * 48) = 4 lines) and more
                if stage == "hacker_experts":  # a random robust mask on 48 lines may read back as the other
                    assert acceleration_from_mask(line) == acc


def test_collect_gives_the_chosen_experts_output_slice_by_slice(store: Path):
    (collected,) = _runs(store, "collect")
    manifest = collected.read_manifest()
    ckpt = load_checkpoint(collected.path / manifest["checkpoints"]["best"]["file"])
    parts = ckpt[COLLECTED]["experts"]
    recipe = load_recipe(RECIPE, "tiny", SMALLER)
    ctx = _predict_context(Runner(recipe, RunStore(store), QUIET))
    ctx_model, _ = ctx.model(Ref.parse("collect", "test"))
    root = _runs(store, "data")[0].path / "data" / "leaderboard"
    reader = MriReader()
    task = get_task("mri")
    checked = set()
    for acc in ("acc4", "acc8"):
        for volume in scan_snu(root / acc, with_targets=False):
            anatomy = volume.name.split("_")[0]
            mask = reader.mask(volume)
            group = "fixed" if is_fixed_pattern(mask) else "robust"
            stage = "hacker_clutch" if group == "fixed" else "helper_experts"
            (part,) = [p for p in parts if p["stage"] == stage and p["config"]["data"]["anatomy"] == anatomy
                       and p["config"]["mask"]["accelerations"] == [volume.acceleration]]
            run = _runs(store, stage)[part["member"]]
            cfg = ctx.trained_config(run)
            module = task.module(cfg)
            module.load_state_dict(load_checkpoint(run.path / part["file"])["state_dict"])
            expert = module.model.eval()
            for s in range(volume.num_slices):
                kspace, line = masked_kspace(reader.kspace(volume, s), mask)
                with torch.inference_mode():
                    a = ctx_model(kspace[None], line[None], anatomy)
                    b = expert(kspace[None], line[None])
                assert torch.equal(a, b)
            checked.add((group, anatomy, volume.acceleration))
    assert len(checked) == 8


def _predict_context(runner: Runner):
    from podium.runner import StageContext

    node = runner.recipe.stages["recon"]
    return StageContext(runner.recipe, node, node.config, None, runner.runs_of("recon")[0], runner.store, 0,
                        {d: runner.runs_of(d) for d in node.needs}, QUIET, runner.data_root())


def test_selection_picks_the_epoch_with_the_best_leaderboard_ssim(store: Path):
    (collected,) = _runs(store, "collect")
    manifest = collected.read_manifest()
    selection = manifest["selection"]
    assert [s["expert"] for s in selection] == [f"hacker_clutch[{i}]" for i in range(4)]
    root = _runs(store, "data")[0].path / "data" / "leaderboard"
    ctx = _predict_context(Runner(load_recipe(RECIPE, "tiny", SMALLER), RunStore(store), QUIET))
    reader = MriReader()
    for s in selection:
        member = int(s["expert"].split("[")[1][:-1])
        run = _runs(store, "hacker_clutch")[member]
        cfg = ctx.trained_config(run)
        anatomy, acc = cfg.data.anatomy, cfg.mask.accelerations[0]
        volumes = [v for v in scan_snu(root / f"acc{acc}") if v.anatomy == anatomy and is_fixed_pattern(reader.mask(v))]
        scores = {}
        for epoch in (1, 2):
            module = get_task("mri").module(cfg)
            entry = run.read_manifest()["checkpoints"][f"epoch={epoch}"]
            module.load_state_dict(load_checkpoint(run.path / entry["file"])["state_dict"])
            ssims = []
            for v in volumes:
                for i in range(v.num_slices):  # the leaderboard metric written out: per slice, then the mean
                    kspace, line = masked_kspace(reader.kspace(v, i), reader.mask(v))
                    with torch.inference_mode():
                        out = module.model.eval()(kspace[None], line[None])[0]
                    target = torch.from_numpy(reader.target(v, i))
                    ssims.append(float(leaderboard_ssim(out, target, reader.max_value(v), anatomy)))
            scores[epoch] = sum(ssims) / len(ssims)
        assert {int(k): v for k, v in s["scores"].items()} == pytest.approx(scores, abs=1e-6)
        assert s["epoch"] == max(scores, key=lambda e: (scores[e], -e))
        assert manifest["parts"][member]["file"] == run.read_manifest()["checkpoints"][f"epoch={s['epoch']}"]["file"]


def test_kill_during_experts_then_resume_is_identical(store: Path, tmp_path: Path):
    args = ["run", str(RECIPE), "--profile", "tiny", *SMALLER, "--only", "data", "--only", "hacker_baseline",
            "--only", "hacker_experts"]
    killed = tmp_path / "killed"
    proc = podium_popen(*args, store=killed)
    alive = kill_when(proc, killed, "*/hacker_experts/*/manifest.json",
                      lambda m: "epoch=1" in m.get("checkpoints", {}) and m.get("member") == 1, timeout=900)
    assert alive, "the run ended before the kill"
    out = podium_cli(*args, store=killed, check=True)
    assert "resuming from" in out.stdout
    for a, b in zip(_runs(store, "hacker_experts"), _runs(killed, "hacker_experts"), strict=True):
        sa = load_checkpoint(select_checkpoint(a, "last"))["state_dict"]
        sb = load_checkpoint(select_checkpoint(b, "last"))["state_dict"]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        assert (a.path / "logs" / "metrics.csv").read_text() == (b.path / "logs" / "metrics.csv").read_text()
