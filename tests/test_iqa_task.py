"""The iqa task's feature extraction (HDF5 store, commits, resume after a kill, weights in the hash) and MOS
path (pooled features -> regressor chosen on validation -> evaluate against the hidden answers)."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

import podium.api as api
from podium.engine.backbones import create_timm_model
from podium.engine.feature_store import STORE, StoreWriter
from podium.engine.seeding import seeded
from podium.ensemble.predictions import Predictions, load_predictions
from podium.errors import ConfigError, CorruptFileError, DataError
from podium.recipe import load_recipe
from podium.runner import stage_hashes
from podium.store import StageRun
from podium.tasks import get_task
from podium.tasks.iqa.data import IqaLayout, read_answers
from podium.tasks.iqa.models.expansionnet_v2 import ExpansionNetV2E2E

from .conftest import podium_popen

# Swin-L's 12 x 12 token grid at 384 px from one stage of 32-pixel patches in one 12 x 12 window: 53k
# parameters, 144 x 16 tokens, about 30x cheaper than the four-stage patch-4 variant (embed 8, 144 x 64)
TINY_SWIN = {"img_size": 384, "patch_size": 32, "window_size": 12, "embed_dim": 16, "depths": [1], "num_heads": [1]}
SWIN_NAME = "swin_tiny_patch4_window7_224"
TOKENS = (144, 16)


def extract_recipe(num_train: int, num_test: int, weights: Path | str | None = None) -> str:
    pretrained = f", pretrained_file: {weights}" if weights else ""
    return f"""
name: iqa-extract
task: iqa
seed: 0
stages:
  data: {{kind: synth, num_train: {num_train}, num_test: {num_test}, image_size: 48, workers: 1}}
  tokens:
    kind: extract
    dtype: float16
    batch_size: 2
    commit_every: 4
    backbone: {{name: {SWIN_NAME}, kwargs: {json.dumps(TINY_SWIN)}{pretrained}}}
"""


def write(tmp: Path, text: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "recipe.yaml").write_text(text)
    return tmp / "recipe.yaml"


def stage_dir(result: api.RunResult, stage: str) -> Path:
    return next(o.path for o in result.outcomes if o.stage == stage)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> api.RunResult:
    """An uninterrupted extraction of 30 images (train then test), in commits of 4."""
    recipe = write(tmp_path_factory.mktemp("iqa_extract"), extract_recipe(22, 8))
    return api.run(recipe, store=recipe.parent / "runs", report=False)


def test_extract_writes_one_dataset_per_image(extracted: api.RunResult):
    run_dir = stage_dir(extracted, "tokens")
    layout = IqaLayout(stage_dir(extracted, "data") / "data")
    names = [i.name for i in layout.train()] + [i.name for i in layout.test()]
    with h5py.File(run_dir / STORE, "r") as f:
        assert sorted(f) == sorted(f"{n}_features" for n in names)
        first = f[f"{names[0]}_features"]
        assert first.shape == TOKENS and first.dtype == np.float16
        stored = first[()]
    # the stored tokens are the tiny Swin's final-norm tokens of the task's preprocessed image
    with seeded(0):
        swin = create_timm_model(SWIN_NAME, num_classes=0, **TINY_SWIN).eval()
    _, images = get_task("iqa").extract_items(SimpleNamespace(image_size=384), layout.root, "all")
    with torch.inference_mode():
        expected = swin.forward_features(images[0][None]).flatten(1, 2)[0].numpy().astype(np.float16)
    np.testing.assert_array_equal(stored, expected)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [c["end"] for c in manifest["extract"]["commits"]] == [4, 8, 12, 16, 20, 24, 28, 30]
    assert manifest["metrics"] == {"items": 30, "shape": list(TOKENS), "dtype": "float16"}
    assert STORE in manifest["outputs"]


def test_failed_extraction_resumes_after_its_last_commit(extracted: api.RunResult, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    recipe = write(tmp_path, extract_recipe(22, 8))
    written: list[int] = []
    died: list[int] = []
    original = StoreWriter.write

    def dies_in_second_commit(self, index, features):
        if index == 6 and not died:
            died.append(index)
            raise RuntimeError("killed")
        written.append(index)
        return original(self, index, features)

    monkeypatch.setattr(StoreWriter, "write", dies_in_second_commit)
    with pytest.raises(RuntimeError, match="killed"):
        api.run(recipe, store=tmp_path / "runs", report=False)
    written.clear()
    result = api.run(recipe, store=tmp_path / "runs", report=False)
    assert written == list(range(4, 30)), "items 4 and 5 were written but not committed: written again"
    ours, reference = stage_dir(result, "tokens") / STORE, stage_dir(extracted, "tokens") / STORE
    assert ours.read_bytes() == reference.read_bytes()


def test_kill_9_mid_extraction_resumes_byte_identical(extracted: api.RunResult, tmp_path: Path):
    recipe = write(tmp_path, extract_recipe(22, 8))
    store = tmp_path / "runs"
    run_dir = store / "iqa-extract" / "tokens" / stage_hashes(load_recipe(recipe))["tokens"][0]
    proc = podium_popen("run", str(recipe), store=store)
    commits: list = []
    deadline = time.monotonic() + 120
    while not commits and proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):  # not yet written / mid-replace
            commits = json.loads((run_dir / "manifest.json").read_text()).get("extract", {}).get("commits", [])
        time.sleep(0.005)
    proc.kill()
    output = proc.communicate()[0]
    killed = json.loads((run_dir / "manifest.json").read_text())
    assert commits and killed["status"] == "running", f"the kill did not land mid-extraction:\n{output}"
    assert 0 < killed["extract"]["commits"][-1]["end"] < 30
    result = api.run(recipe, store=store, report=False)
    assert (stage_dir(result, "tokens") / STORE).read_bytes() == (stage_dir(extracted, "tokens") / STORE).read_bytes()


def save_weights(path: Path, seed: int) -> Path:
    with seeded(seed):
        torch.save(create_timm_model(SWIN_NAME, num_classes=0, **TINY_SWIN).state_dict(), path)
    return path


def test_new_weights_make_a_new_store_and_the_same_weights_reuse_it(tmp_path: Path):
    weights = save_weights(tmp_path / "swin.pth", seed=1)
    recipe = write(tmp_path, extract_recipe(3, 2, weights))
    first = api.run(recipe, store=tmp_path / "runs", report=False)
    again = api.run(recipe, store=tmp_path / "runs", report=False)
    assert [o.state for o in again.outcomes] == ["skipped", "skipped"]
    assert next(o.hash for o in again.outcomes if o.stage == "tokens") == stage_dir(first, "tokens").name
    save_weights(weights, seed=2)
    assert stage_hashes(load_recipe(recipe))["tokens"][0] != stage_dir(first, "tokens").name
    save_weights(weights, seed=1)  # the same bytes again: the finished store
    assert stage_hashes(load_recipe(recipe))["tokens"][0] == stage_dir(first, "tokens").name


def test_weights_are_known_by_their_digest_not_their_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A recipe names a file shipped next to it as ${recipe_dir:}/...; where the file lies is not hashed,
    so a moved copy or another working directory reuses the store."""
    folder = tmp_path / "recipes"
    (folder / "weights").mkdir(parents=True)
    weights = save_weights(folder / "weights" / "swin.pth", seed=1)
    recipe = write(folder, extract_recipe(3, 2, '"${recipe_dir:}/weights/swin.pth"'))
    monkeypatch.chdir(tmp_path)
    loaded = load_recipe(recipe)
    assert loaded.stages["tokens"].configs[0].backbone.pretrained_file == str(weights)
    moved = shutil.copy(weights, tmp_path / "moved.pth")
    by_path = load_recipe(recipe, overrides=[f"stages.tokens.backbone.pretrained_file={moved}"])
    assert stage_hashes(by_path)["tokens"] == stage_hashes(loaded)["tokens"]
    missing = r"stages\.tokens\.backbone\.pretrained_file: .*recipes/nothing\.pth: no such file"
    with pytest.raises(ConfigError, match=missing):
        load_recipe(recipe, overrides=["stages.tokens.backbone.pretrained_file=${recipe_dir:}/nothing.pth"])


def test_a_pinned_digest_must_match_the_weights(tmp_path: Path):
    weights = save_weights(tmp_path / "swin.pth", seed=1)
    recipe = write(tmp_path, extract_recipe(3, 2, weights))
    with pytest.raises(ConfigError, match=r"stages\.tokens\.backbone: .*swin\.pth has sha256 .*pins deadbeef"):
        load_recipe(recipe, overrides=["stages.tokens.backbone.sha256=deadbeef"])


def test_a_damaged_store_is_detected_and_extracted_again(tmp_path: Path):
    recipe = write(tmp_path, extract_recipe(3, 2))
    first = api.run(recipe, store=tmp_path / "runs", report=False)
    path = stage_dir(first, "tokens") / STORE
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[-100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptFileError, match="checksum mismatch"):
        StageRun(path.parent).output(STORE)
    again = api.run(recipe, store=tmp_path / "runs", report=False)
    assert next(o.state for o in again.outcomes if o.stage == "tokens") == "done"
    assert path.read_bytes() == good


@pytest.mark.parametrize(("change", "message"), [
    ("stages.tokens.tta=hflip", "tta: hflip averages pooled features"),
    ("stages.tokens.model=data@best", "give backbone: .* or model: .*, not both"),
])
def test_extract_config_errors(tmp_path: Path, change: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_recipe(write(tmp_path, extract_recipe(3, 2)), overrides=[change])


def test_model_reference_extracts_the_trained_models_backbone():
    """``model: stage@...`` takes the Swin out of an end-to-end ExpansionNet through the task's hook."""
    e2e = ExpansionNetV2E2E(5, backbone=SWIN_NAME, backbone_kwargs=TINY_SWIN, d_model=8, N_enc=1, N_dec=1, ff=8,
                            num_heads=1, num_exp_enc_list=(2,), num_exp_dec=2)
    from podium.stages.extract import ExtractConfig, frozen_backbone

    cfg = ExtractConfig(model="xe_e2e@last", task="iqa")
    ctx = SimpleNamespace(cfg=cfg, name="feats", seed=0, model=lambda ref: (e2e.train(), None),
                          recipe=SimpleNamespace(stages={"xe_e2e": SimpleNamespace(task="iqa")}))
    backbone = frozen_backbone(ctx)
    assert backbone is e2e.swin_transf and not backbone.training
    assert not any(p.requires_grad for p in backbone.parameters())
    assert cfg.references() == [("model", "xe_e2e@last", ("train", "soup", "collect"))]
    with pytest.raises(ConfigError, match="no image backbone"):
        get_task("iqa").trained_backbone(torch.nn.Linear(2, 2), None)


MOS_RECIPE = """
name: iqa-mos
task: iqa
seed: 0
stages:
  data: {kind: synth, num_train: 120, num_test: 40, image_size: 48, workers: 1}
  pooled: {kind: extract, backbone: {name: test_resnet}, image_size: 48, pool: mean, tta: hflip, batch_size: 32}
  mos_linear: {kind: regress, features: pooled, models: {ridge: {alpha: [1.0, 10.0, 100.0]}}}
  mos_kernel: {kind: regress, features: pooled, models: {svr: {C: [1.0, 3.0]}, kernel_ridge: {alpha: [0.1, 1.0]}}}
  mos_val: {kind: regress, features: pooled, split: val, models: {kernel_ridge: {alpha: [0.1, 1.0]}}}
  mos: {kind: ensemble, inputs: [mos_linear, mos_kernel]}
  score: {kind: evaluate, predictions: [mos_linear, mos_kernel, mos, mos_val]}
"""


@pytest.fixture(scope="module")
def mos_run(tmp_path_factory: pytest.TempPathFactory) -> api.RunResult:
    recipe = write(tmp_path_factory.mktemp("iqa_mos"), MOS_RECIPE)
    return api.run(recipe, store=recipe.parent / "runs", report=False)


def test_mos_regressors_beat_a_constant_predictor(mos_run: api.RunResult):
    scores = mos_run.leaderboard["score"]
    for name in ("mos_linear", "mos_kernel", "mos"):
        assert scores[name]["mos_score"] > 0.3, f"{name}: {scores[name]}"
        assert scores[name]["items"] == 40
    assert scores["mos_val"]["items"] == 12
    selection = json.loads((stage_dir(mos_run, "mos_kernel") / "selection.json").read_text())
    assert [t["model"] for t in selection["trials"]] == ["svr(C=1.0)", "svr(C=3.0)", "kernel_ridge(alpha=0.1)",
                                                         "kernel_ridge(alpha=1.0)"]
    assert selection["chosen"] == max(selection["trials"], key=lambda t: t["val_score"])["model"]
    assert (selection["train_items"], selection["val_items"]) == (108, 12)
    preds = load_predictions(stage_dir(mos_run, "mos") / "predictions.npz")
    parts = [load_predictions(stage_dir(mos_run, s) / "predictions.npz") for s in ("mos_linear", "mos_kernel")]
    assert preds.kind == "values" and preds.split == "test"
    np.testing.assert_allclose(preds.scores, (parts[0].scores + parts[1].scores) / 2, rtol=1e-6)
    constant = Predictions(preds.ids, np.full(len(preds.ids), 5.8), "values", "test")
    data = stage_dir(mos_run, "data") / "data"
    assert get_task("iqa").evaluate(constant, data, None, Path())["mos_score"] == 0.0


def test_evaluate_scores_against_the_hidden_answers(mos_run: api.RunResult, tmp_path: Path):
    data = stage_dir(mos_run, "data") / "data"
    answers = read_answers(data / "answers" / "test_answers.csv")
    ids = np.array(sorted(answers))
    truth = np.array([answers[i].mos for i in ids])
    task = get_task("iqa")
    assert task.evaluate(Predictions(ids, truth, "values", "test"), data, None, tmp_path)["mos_score"] == 1.0
    assert task.evaluate(Predictions(ids, -truth, "values", "test"), data, None, tmp_path)["mos_score"] == 0.0
    csv_rows = (stage_dir(mos_run, "mos") / "predictions.csv").read_text().splitlines()
    assert csv_rows[0] == "img_name,mos" and len(csv_rows) == 41
    hidden = tmp_path / "data"
    shutil.copytree(data, hidden)
    shutil.rmtree(hidden / "answers")
    with pytest.raises(DataError, match="test_answers.csv: not found: the test answers are hidden"):
        task.evaluate(Predictions(ids, truth, "values", "test"), hidden, None, tmp_path)
