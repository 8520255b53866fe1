"""The fine-tuned MOS regressor (task ``iqa_mos``): bound target statistics, flips, the leaderboard score
of its predictions with and without the mirror, and its backbone as an extract stage's."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import podium.api as api
from podium.engine.checkpoint import load_checkpoint, select_checkpoint
from podium.engine.feature_store import STORE, read_features
from podium.ensemble.predictions import Predictions, load_predictions
from podium.errors import ConfigError, DataError
from podium.metrics.regression import mos_score
from podium.stages.predict import load_model
from podium.store import StageRun
from podium.tasks import get_task
from podium.tasks.iqa.data import IqaLayout, load_rgb, read_answers, split_train_val
from podium.tasks.iqa.features import image_transform
from podium.tasks.iqa.mos import MosImages, MosRegressor, MosTrain

RECIPE = """
name: iqa-mos
task: iqa
seed: 3
stages:
  data: {kind: synth, num_train: 40, num_test: 10, image_size: 48, workers: 1}
  finetune:
    kind: train
    task: iqa_mos
    model: {name: test_convnext}
    image_size: 32
    val_fraction: 0.25
    optim: {lr: 1.0e-3, warmup_steps: 2}
    trainer: {max_epochs: 2, batch_size: 8, accelerator: cpu}
  test_mos: {kind: predict, task: iqa_mos, model: finetune@best}
  test_mos_plain: {kind: predict, task: iqa_mos, model: finetune@best, tta: none}
  val_mos: {kind: predict, task: iqa_mos, model: finetune@best, split: val, tta: none}
  pooled: {kind: extract, model: finetune@best, image_size: 32, pool: mean}
  leaderboard: {kind: evaluate, predictions: [test_mos, test_mos_plain]}
"""


def stage_dir(result: api.RunResult, stage: str) -> Path:
    return next(o.path for o in result.outcomes if o.stage == stage)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> api.RunResult:
    tmp = tmp_path_factory.mktemp("iqa_mos")
    (tmp / "recipe.yaml").write_text(RECIPE)
    return api.run(tmp / "recipe.yaml", store=tmp / "runs", report=False)


def trained(run: api.RunResult) -> tuple[MosRegressor, MosTrain]:
    run_dir = stage_dir(run, "finetune")
    cfg = MosTrain.model_validate(json.loads((run_dir / "manifest.json").read_text())["config"])
    state = load_checkpoint(select_checkpoint(StageRun(run_dir), "best"))["state_dict"]
    return load_model(get_task("iqa_mos"), cfg, state), cfg


def test_the_target_statistics_are_the_training_splits(run: api.RunResult):
    _, cfg = trained(run)
    layout = IqaLayout(stage_dir(run, "data") / "data")
    _, val = split_train_val(layout.train(), 0.25, 3)
    held_out = {i.name for i in val}
    with open(layout.root / "train.csv", newline="") as f:  # one row per comment: one MOS per image
        mos = {row["img_name"]: float(row["mos"]) for row in csv.DictReader(f) if row["img_name"] not in held_out}
    values = np.array(list(mos.values()))
    assert len(values) == 30
    assert cfg.target.mean == pytest.approx(values.sum() / 30, abs=1e-12)
    assert cfg.target.std == pytest.approx(np.sqrt(((values - values.mean()) ** 2).sum() / 30), abs=1e-12)


def test_the_regressor_maps_the_networks_output_to_mos(run: api.RunResult):
    model, cfg = trained(run)
    images = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        raw = model.net(images)[:, 0]
        torch.testing.assert_close(model(images), raw * cfg.target.std + cfg.target.mean)


def test_unbound_targets_are_refused():
    with pytest.raises(ConfigError, match="target: unbound"):
        MosRegressor(MosTrain(model={"name": "test_convnext"}))


def test_training_flips_follow_the_items_seed(run: api.RunResult):
    layout = IqaLayout(stage_dir(run, "data") / "data")
    image = layout.train()[0]
    plain = image_transform(32)(load_rgb(image.path))
    flipping = MosImages([image], 32, hflip=True)
    views = [flipping[(0, seed)][0] for seed in range(12)]
    flipped = [bool(torch.equal(v, plain.flip(-1))) for v in views]
    assert all(f or torch.equal(v, plain) for f, v in zip(flipped, views, strict=True))
    assert 0 < sum(flipped) < 12, "some seeds flip, others do not"
    assert [bool(torch.equal(flipping[(0, s)][0], plain.flip(-1))) for s in range(12)] == flipped, "reproducible"
    assert torch.equal(MosImages([image], 32)[(0, 5)][0], plain), "no flip unless asked"


def test_predictions_average_the_image_and_its_mirror_and_score_as_the_leaderboard(run: api.RunResult):
    model, cfg = trained(run)
    layout = IqaLayout(stage_dir(run, "data") / "data")
    test = layout.test()
    images = torch.stack([MosImages(test, 32)[i][0] for i in range(len(test))])
    with torch.inference_mode():
        expected = ((model(images).double() + model(images.flip(-1)).double()) / 2).numpy()
    preds = load_predictions(stage_dir(run, "test_mos") / "predictions.npz")
    assert preds.kind == "values" and preds.ids.tolist() == [i.name for i in test]
    np.testing.assert_allclose(preds.scores, expected, rtol=1e-6)
    assert not np.allclose(preds.scores, load_predictions(stage_dir(run, "test_mos_plain") / "predictions.npz").scores)
    answers = read_answers(layout.answers_csv)
    truth = np.array([answers[i.name].mos for i in test])
    board = json.loads((stage_dir(run, "leaderboard") / "manifest.json").read_text())["metrics"]
    assert board["test_mos"] == pytest.approx(mos_score(preds.scores, truth)["score"], abs=1e-12)
    with open(stage_dir(run, "test_mos") / "predictions.csv", newline="") as f:
        assert [r["img_name"] for r in csv.DictReader(f)] == [i.name for i in test]


def test_the_best_checkpoints_validation_score_is_its_val_predictions(run: api.RunResult):
    run_dir = stage_dir(run, "finetune")
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        best = max(float(r["val_score"]) for r in csv.DictReader(f))
    preds = load_predictions(stage_dir(run, "val_mos") / "predictions.npz")
    layout = IqaLayout(stage_dir(run, "data") / "data")
    _, val = split_train_val(layout.train(), 0.25, 3)
    assert preds.ids.tolist() == [i.name for i in val]
    truth = np.array([i.mos for i in val])
    assert mos_score(preds.scores, truth)["score"] == pytest.approx(best, abs=1e-5)


def test_an_extract_stage_pools_the_fine_tuned_backbone(run: api.RunResult):
    model, _ = trained(run)
    layout = IqaLayout(stage_dir(run, "data") / "data")
    first = layout.train()[0]
    pooled = read_features(stage_dir(run, "pooled") / STORE, [first.name])[0]
    with torch.inference_mode():
        tokens = model.net.forward_features(MosImages([first], 32)[0][0][None])
    np.testing.assert_allclose(pooled, tokens.mean(dim=(-2, -1))[0].numpy(), rtol=1e-5, atol=1e-6)


def test_export_writes_the_backbone_as_timm_weights(run: api.RunResult, tmp_path: Path, podium_main):
    """``podium export`` -> a file that ``pretrained_file`` loads into a headless timm model: the same tokens."""
    from podium.engine.backbones import create_timm_model

    recipe, store = tmp_path / "recipe.yaml", run.store.root
    recipe.write_text(RECIPE)
    out = tmp_path / "convnext_mos.pth"
    code, _, err = podium_main("export", str(recipe), "finetune@best", str(out), store=store)
    assert code == 0 and out.is_file(), err
    model, _ = trained(run)
    loaded = create_timm_model("test_convnext", str(out), num_classes=0).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.forward_features(images), model.net.forward_features(images), rtol=0, atol=0)
    code, _, err = podium_main("export", str(recipe), "test_mos@best", str(tmp_path / "x.pth"), store=store)
    assert code == 2 and "'test_mos' is not a stage with checkpoints" in " ".join(err.split())
    code, _, err = podium_main("export", str(recipe), "finetune@best", str(tmp_path / "y.pth"), store=tmp_path / "e")
    assert code == 2 and "is not done" in " ".join(err.split()) and not (tmp_path / "y.pth").exists()


@pytest.mark.parametrize(("kind", "split", "scores", "message"), [
    ("values", "test", [5.0], "test_answers.csv: no MOS for img_name 'nope' (1 of 1 predictions)"),
    ("captions", "val", ["A photo."], "train.csv: no comments for img_name 'nope' (1 of 1 predictions)"),
])
def test_evaluate_names_the_file_without_truth_for_a_prediction(run: api.RunResult, tmp_path: Path, kind: str,
                                                                 split: str, scores: list, message: str):
    preds = Predictions(np.array(["nope"]), np.array(scores), kind, split)
    with pytest.raises(DataError, match=re.escape(message)):
        get_task("iqa").evaluate(preds, stage_dir(run, "data") / "data", None, tmp_path)
