"""The mask task end to end (synth -> train -> predict -> evaluate -> submit), its model, loss and schedule."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import podium.api as api
from podium.engine.checkpoint import load_checkpoint, select_checkpoint
from podium.engine.schedules import warmup_cosine
from podium.ensemble.predictions import Predictions
from podium.errors import ConfigError
from podium.stages.predict import load_model
from podium.store import StageRun
from podium.tasks import get_task
from podium.tasks.mask.model import ModelConfig, build_model
from podium.tasks.mask.module import contrastive_loss

RECIPE = """
name: mask-tiny
task: mask
seed: 3
stages:
  data: {kind: synth, num_people: 40, num_eval_people: 6, width: 64, height: 80, workers: 1}
  vit:
    kind: train
    model: {name: test_vit}
    data: {image_size: 32, oversample_old: 1}
    optim: {lr: 1.0e-3, warmup_steps: 2}
    trainer: {max_epochs: 1, batch_size: 32, gradient_clip_val: 1.0}
  pred: {kind: predict, model: vit@best, split: eval, tta: hflip}
  pred_val: {kind: predict, model: vit@best, split: val}
  score: {kind: evaluate, predictions: [pred, pred_val]}
  submission: {kind: submit, predictions: pred}
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> api.RunResult:
    tmp = tmp_path_factory.mktemp("mask_run")
    (tmp / "mask.yaml").write_text(RECIPE)
    return api.run(tmp / "mask.yaml", store=tmp / "runs", report=False)


def _stage_dir(result: api.RunResult, stage: str) -> Path:
    return next(o.path for o in result.outcomes if o.stage == stage)


def test_end_to_end_submission_follows_info_csv(result: api.RunResult):
    data = _stage_dir(result, "data") / "data"
    with open(result.submission, newline="") as f:
        header, *rows = list(csv.reader(f))
    with open(data / "eval" / "info.csv", newline="") as f:
        info = [r[0] for r in list(csv.reader(f))[1:]]
    assert result.submission.name == "info.csv" and header == ["ImageID", "ans"]
    assert [r[0] for r in rows] == info and all(0 <= int(r[1]) < 18 for r in rows)


def test_end_to_end_scores_and_training_metrics(result: api.RunResult):
    scores = result.leaderboard["score"]
    assert list(scores) == ["pred", "pred_val"]
    for name, m in scores.items():
        assert next(iter(m)) == "macro_f1" and 0 <= m["macro_f1"] <= 1
        assert len(m["per_class_f1"]) == 18
        present = [f1 for f1 in m["per_class_f1"].values() if f1 is not None]
        assert m["macro_f1"] == pytest.approx(np.mean(present)), "macro F1: the mean over classes that occur"
        assert (_stage_dir(result, "score") / name / "confusion.png").stat().st_size > 0
    manifest = json.loads((_stage_dir(result, "vit") / "manifest.json").read_text())
    assert manifest["checkpoints"]["best"]["monitor"] == "val_f1"
    assert {"val_f1", "val_acc", "val_loss", "train_loss"} <= set(manifest["metrics"])
    preds = json.loads((_stage_dir(result, "pred") / "manifest.json").read_text())
    assert preds["metrics"] == {"items": 42, "split": "eval"}


def test_heldout_score_matches_the_val_evaluation(result: api.RunResult):
    task = get_task("mask")
    train_cfg = result.recipe.stages["vit"].config
    path = select_checkpoint(StageRun(_stage_dir(result, "vit")), "best")
    model = load_model(task, train_cfg, load_checkpoint(path)["state_dict"])
    score = task.heldout_score(model, train_cfg, _stage_dir(result, "data") / "data")
    assert score == pytest.approx(result.leaderboard["score"]["pred_val"]["macro_f1"])


def test_submit_needs_eval_predictions(result: api.RunResult, tmp_path: Path):
    task, cfg = get_task("mask"), result.recipe.stages["submission"].config
    data = _stage_dir(result, "data") / "data"
    val = Predictions(np.array(["a"]), np.zeros((1, 18), np.float32), "logits", "val")
    with pytest.raises(ConfigError, match="needs a predict stage with split: eval"):
        task.submit(val, data, cfg, tmp_path / "info.csv")


def test_model_takes_any_timm_name_and_the_image_size():
    assert build_model(ModelConfig(name="test_vit"), 32)(torch.zeros(2, 3, 32, 32)).shape == (2, 18)
    assert build_model(ModelConfig(name="test_resnet"), 48)(torch.zeros(1, 3, 48, 48)).shape == (1, 18)
    with pytest.raises(ValidationError, match="'no_such_net' is not a timm model"):
        build_model(ModelConfig(name="no_such_net"), 32)


def _reference_contrastive(z: torch.Tensor, labels: list[int], pos_margin: float, neg_margin: float) -> float:
    z = torch.nn.functional.normalize(z, dim=1)
    pos, neg = [], []
    for i, j in itertools.permutations(range(len(labels)), 2):
        d = float((z[i] - z[j]).norm())
        if labels[i] == labels[j]:
            pos.append(max(0.0, d - pos_margin))
        else:
            neg.append(max(0.0, neg_margin - d))
    return sum(pos) / max(1, sum(x > 0 for x in pos)) + sum(neg) / max(1, sum(x > 0 for x in neg))


def test_contrastive_loss_matches_the_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    z, labels = torch.randn(9, 18, generator=g), [0, 0, 1, 1, 1, 2, 5, 5, 0]
    got = contrastive_loss(z, torch.tensor(labels), 1.0, 1.0)
    assert float(got) == pytest.approx(_reference_contrastive(z, labels, 1.0, 1.0), rel=1e-5)
    assert float(contrastive_loss(z, torch.tensor(labels), 0.2, 1.6)) == pytest.approx(
        _reference_contrastive(z, labels, 0.2, 1.6), rel=1e-5)
    # orthogonal same-class pair: d = sqrt(2), cost sqrt(2) - 1; identical rows keep finite gradients
    same = contrastive_loss(torch.eye(2), torch.tensor([3, 3]))
    assert float(same) == pytest.approx(math.sqrt(2) - 1)
    twins = torch.ones(2, 18, requires_grad=True)
    contrastive_loss(twins, torch.tensor([0, 1])).backward()
    assert torch.isfinite(twins.grad).all()


def test_warmup_then_cosine_per_step():
    assert warmup_cosine(0, 4, 20) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine(4, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(0, 0, 10) == pytest.approx(1.0)


def test_report_shows_the_confusion_matrix_f1_and_misclassified_photos(result: api.RunResult):
    from .test_report import assert_self_contained

    text = api.report(result.recipe, store=result.store).read_text()
    page = assert_self_contained(text)
    assert page.items() == {"heatmap": 1, "bars": 1, "imagegrid": 1}
    scores = result.leaderboard["score"]
    best = max((m["macro_f1"], p) for p, m in scores.items())[1]
    assert f"{best}: the best predictions score scored" in text
    assert 0 < page.tiles() <= 18 and page.tiles() == text.count("class='tile flagged'"), "misclassified photos only"

