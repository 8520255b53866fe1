"""Image-quality assessment with captions (Samsung AI Challenge 2023, Dacon): data, features and MOS.

The seed team's system (specs/iqa-captioning.md, iqa-verified.md): Swin-L tokens in HDF5 for an
ExpansionNet v2 captioner (``extract`` stages; the captioner's training lives in ``captioning``, its
stages' inputs, predictions, score and the submission in ``caption_task``), and a
MOS from frozen pooled features of several backbones on the image and its mirror, one regressor per
feature set chosen on the validation split by the leaderboard's (PLCC + SRCC) / 2, averaged
(``extract`` with ``pool`` and ``tta: hflip``, one ``regress`` stage per set, an ``ensemble``).
Test answers exist only in podium's synthetic data (``answers/``), which no stage reads but ``evaluate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from podium.ensemble.predictions import Predictions
from podium.errors import ConfigError
from podium.metrics.regression import mos_score
from podium.registry import Task, register_task
from podium.report.items import ReportItem, RunView
from podium.stages.extract import ExtractConfig
from podium.stages.regress import RegressConfig, RegressionData
from podium.stages.synth import SynthConfig
from podium.tasks.iqa import caption_task
from podium.tasks.iqa.caption_task import CaptionPredict
from podium.tasks.iqa.captioning import CaptionModule, CaptionTrain, datasets
from podium.tasks.iqa.data import IqaLayout, Vocabulary, split_train_val, write_mos_csv
from podium.tasks.iqa.features import ImageFiles, split_images
from podium.tasks.iqa.models.expansionnet_v2 import ExpansionNetV2E2E
from podium.tasks.iqa.synth import synthesize_iqa


class IqaSynth(SynthConfig):
    num_train: int = Field(54_662, ge=2)  # the real set's unique training images
    num_test: int = Field(13_012, ge=1)
    image_size: int = Field(96, ge=32)  # long side in pixels (the models resize to 384 anyway)
    max_comments: int = Field(3, ge=1)
    workers: int | None = Field(None, ge=1)

    unhashed = ("workers",)


class IqaExtract(ExtractConfig):
    split: Literal["train", "test", "all"] = "all"  # train.csv's images, test.csv's, or both


class IqaRegress(RegressConfig):
    split: Literal["val", "test"] = "test"  # val: the held-out train.csv images the regressor is chosen on


def mos_truth(layout: IqaLayout, split: str) -> dict[str, float]:
    """MOS by img_name: the hidden answers for test images (synthetic data only), train.csv for others."""
    if split == "test":
        return {name: answer.mos for name, answer in layout.test_answers().items()}
    return {image.name: image.mos for image in layout.train()}


@register_task
class IqaTask(Task):
    name = "iqa"
    version = "1"
    configs = {"synth": IqaSynth, "extract": IqaExtract, "regress": IqaRegress, "train": CaptionTrain,
               "predict": CaptionPredict}
    monitor = "val_cider"  # CIDEr-D of the validation split's beam-search captions
    monitor_mode = "max"

    def synth(self, cfg: IqaSynth, out_dir: Path, seed: int) -> None:
        synthesize_iqa(out_dir, cfg.num_train, cfg.num_test, seed, cfg.image_size, cfg.max_comments, cfg.workers)

    def check_data(self, root: Path) -> list[Path]:
        return IqaLayout(root).data_files()

    def extract_items(self, cfg: IqaExtract, data_root: Path, split: str) -> tuple[list[str], ImageFiles]:
        """img_names and their images (RGB, ``cfg.image_size`` square, ImageNet-normalised)."""
        names, paths = split_images(IqaLayout(data_root), split)
        return names, ImageFiles(paths, cfg.image_size)

    def bind(self, cfg: object, data_root: Path | None, seed: int, inputs: dict) -> object:
        """Caption stages: the features store, the backbone's and the ensemble's checkpoints they name, and
        (train) the training split's vocabulary, recorded in the manifest's config."""
        if isinstance(cfg, CaptionTrain):
            return caption_task.bind_train(cfg, data_root, seed, inputs)
        return caption_task.bind_predict(cfg, seed, inputs)

    def module(self, cfg: CaptionTrain) -> CaptionModule:
        if cfg.vocabulary.words is None:
            raise ConfigError("vocabulary.words: unbound; a train stage records its vocabulary when it starts "
                              "(build a caption module from a trained stage's manifest config)")
        return CaptionModule(cfg, Vocabulary(cfg.vocabulary.words))

    def datasets(self, cfg: CaptionTrain, data_root: Path, seed: int) -> tuple:
        """train.csv's images split by sorted name and ``seed``: per caption (XE) or image (SCST), and the
        held-out images for validation."""
        train, val = split_train_val(IqaLayout(data_root).train(), cfg.val_fraction, seed)
        return datasets(cfg, cfg.features_path, train, val, Vocabulary(cfg.vocabulary.words))

    def predict(self, model: torch.nn.Module, train_cfg: CaptionTrain, cfg: CaptionPredict, data_root: Path,
                out_dir: Path) -> Predictions:
        return caption_task.predict_captions(model, train_cfg, cfg, data_root)

    def trained_backbone(self, model: torch.nn.Module, train_cfg: object) -> torch.nn.Module:
        """The Swin of an end-to-end ExpansionNet v2 (the seed's stage 4 re-extracts features with it)."""
        if not isinstance(model, ExpansionNetV2E2E):
            raise ConfigError(f"model: a {type(model).__name__} has no image backbone; extract features from an "
                              "end-to-end (expansionnet_v2_e2e) stage")
        return model.swin_transf

    def regression_data(self, cfg: IqaRegress, data_root: Path, seed: int) -> RegressionData:
        """train.csv's images split by sorted name and ``seed`` (``data.split_train_val``); predicts
        test.csv's images in its order, or the validation images."""
        layout = IqaLayout(data_root)
        train, val = split_train_val(layout.train(), cfg.val_fraction, seed)
        predict = [i.name for i in val] if cfg.split == "val" else [i.name for i in layout.test()]
        return RegressionData({i.name: i.mos for i in train}, {i.name: i.mos for i in val}, predict, cfg.split)

    def regression_score(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        return float(mos_score(predictions, targets)["score"])

    def write_predictions(self, preds: Predictions, cfg: object, out_dir: Path) -> list[Path]:
        """Captions as ``captions.csv`` (img_name,comments); MOS predictions as ``predictions.csv``: img_name,mos."""
        if preds.kind == "captions":
            return [caption_task.write_captions(preds, out_dir)]
        return [write_mos_csv(preds.ids.tolist(), preds.scores.tolist(), out_dir)]

    def evaluate(self, preds: Predictions, data_root: Path, cfg: object, out_dir: Path) -> dict:
        """MOS predictions scored as the leaderboard does: (max(PLCC, 0) + max(SRCC, 0)) / 2; captions by
        the caption leaderboard's formula (``caption_task.evaluate_captions``, Java for METEOR and PTB).

        Test images against ``answers/test_answers.csv`` (synthetic data only: the real answers are
        hidden), other images against train.csv. The baseline is 0: a constant predictor (the mean MOS,
        say) carries no ranking, and podium scores its undefined correlations 0.
        """
        if preds.kind == "captions":
            return caption_task.evaluate_captions(preds, data_root)
        if preds.kind != "values":
            raise ConfigError(f"iqa evaluates MOS predictions (values) or captions; these hold {preds.kind}")
        layout = IqaLayout(data_root)
        ids = preds.ids.tolist()
        truth = layout.truth_of(ids, preds.split, mos_truth(layout, preds.split), "MOS")
        scores = mos_score(preds.scores, np.array(truth))
        return {"mos_score": scores["score"], "plcc": scores["plcc"], "srcc": scores["srcc"], "items": len(ids)}

    def report_items(self, view: RunView) -> list[ReportItem]:
        """The best captions under their images, and predicted against true MOS for every MOS prediction."""
        from podium.tasks.iqa.report import report_items  # the report's imports, only for a report

        return report_items(view)

    def leaderboard_notes(self, scores: dict[str, dict]) -> list[str]:
        return caption_task.ranking_notes(scores)

    def submit(self, preds: list[Predictions] | Predictions, data_root: Path, cfg: object, out_path: Path) -> Path:
        """``img_name,mos,comments`` in sample_submission.csv's order: ``predictions: [mos, captions]``."""
        return caption_task.write_submission(preds if isinstance(preds, list) else [preds], data_root, out_path)
