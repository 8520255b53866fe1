"""Boostcamp AI Tech mask classification (18 classes): synthesis, data, model, predict, evaluate, submit.

The seed team's pipeline (specs/classification.md section 1): ViT-B/32 fine-tuned with AdamW, warm-up
and cosine, CE or contrastive loss, relabelled data and an oversampled old class, then soups and
ensembles scored by macro F1 and submitted as ``info.csv`` with ``ans`` filled. The validation split
is over people and oversampling draws from the training people only (their two leaks, fixed).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import Field

from podium.ensemble.predictions import Predictions
from podium.ensemble.tta import predict_dataset
from podium.errors import ConfigError, DataError
from podium.metrics.classification import multiclass_scores, save_confusion_png
from podium.registry import Task, register_task
from podium.stages.evaluate import EvaluateConfig
from podium.stages.predict import PredictConfig
from podium.stages.submit import SubmitConfig
from podium.stages.synth import SynthConfig
from podium.stages.train import TrainConfig
from podium.store import atomic_write
from podium.tasks.mask.data import (
    NUM_CLASSES,
    LabelConfig,
    MaskDataConfig,
    MaskDataset,
    MaskLayout,
    build_transform,
    check_relabel,
    class_names,
    eval_dataset,
    label_of_image_id,
    split_photos,
    training_datasets,
)
from podium.tasks.mask.model import ModelConfig
from podium.tasks.mask.module import LossConfig, MaskModule, OptimConfig
from podium.tasks.mask.synth import synthesize_mask

if TYPE_CHECKING:
    from podium.report.items import ReportItem, RunView


class MaskSynth(SynthConfig):
    num_people: int = Field(2700, ge=2)  # training people (7 photos each)
    num_eval_people: int = Field(1800, ge=1)  # 12,600 eval photos, as in the real set
    width: int = Field(384, ge=32)
    height: int = Field(512, ge=32)
    old_fraction: float = Field(0.07, ge=0, lt=1)
    female_fraction: float = Field(0.6, ge=0, le=1)
    workers: int | None = Field(None, ge=1)

    unhashed = ("workers",)


class MaskTrain(TrainConfig):
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    data: MaskDataConfig = MaskDataConfig()


class MaskPredict(PredictConfig):
    split: Literal["val", "eval"] = "eval"
    tta: Literal["none", "hflip"] = "none"


class MaskEvaluate(EvaluateConfig):
    # how *validation* photos are labelled; the leaderboard's definition unless set (eval labels are fixed)
    labels: LabelConfig = LabelConfig()


class MaskSubmit(SubmitConfig):
    filename: str = "info.csv"


def predicted_classes(preds: Predictions) -> np.ndarray:
    return preds.scores.astype(np.int64) if preds.kind == "classes" else np.argmax(preds.scores, axis=1)


def _csv(header: list[str], rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def evaluation_targets(preds: Predictions, layout: MaskLayout,
                       cfg: MaskEvaluate) -> tuple[np.ndarray, tuple[int, int]]:
    """(true classes of the predicted photos, the age bins of their class names): eval photos from
    ``eval/answers.csv`` (synthetic data only), validation photos from labels as ``cfg.labels`` defines them."""
    ids = preds.ids.tolist()
    if preds.split == "eval":
        truth = layout.answers()
        missing = [i for i in ids if i not in truth]
        if missing:
            raise DataError(f"{layout.answers_csv}: no answer for ImageID {missing[0]!r} ({len(missing)} of "
                            f"{len(ids)} predictions unlabelled)")
        return np.array([truth[i] for i in ids], np.int64), LabelConfig().age_bins
    check_relabel(cfg.labels, (p.id for p in layout.people()), "labels")
    return np.array([label_of_image_id(i, cfg.labels) for i in ids], np.int64), cfg.labels.age_bins


@register_task
class MaskTask(Task):
    name = "mask"
    version = "1"
    configs = {"synth": MaskSynth, "train": MaskTrain, "predict": MaskPredict, "evaluate": MaskEvaluate,
               "submit": MaskSubmit}
    monitor = "val_f1"
    monitor_mode = "max"

    def synth(self, cfg: MaskSynth, out_dir: Path, seed: int) -> None:
        synthesize_mask(out_dir, cfg.num_people, cfg.num_eval_people, seed, cfg.width, cfg.height,
                        cfg.old_fraction, cfg.female_fraction, cfg.workers)

    def check_data(self, root: Path) -> list[Path]:
        return MaskLayout(root).data_files()

    def datasets(self, cfg: MaskTrain, data_root: Path, seed: int) -> tuple[MaskDataset, MaskDataset]:
        return training_datasets(MaskLayout(data_root), cfg.data)

    def module(self, cfg: MaskTrain) -> MaskModule:
        return MaskModule(cfg)

    def predict(self, model: torch.nn.Module, train_cfg: MaskTrain, cfg: MaskPredict, data_root: Path,
                out_dir: Path) -> Predictions:
        """Logits of ``eval`` (ids: ImageIDs in info.csv order) or of the training run's validation people
        (ids: ``<person folder>/<file>``); on the GPU when there is one."""
        layout = MaskLayout(data_root)
        if cfg.split == "eval":
            ids = layout.eval_ids()
            paths = [layout.eval_images / i for i in ids]
        else:
            photos = split_photos(layout, train_cfg.data)[1]
            ids, paths = [p.image_id for p in photos], [p.path for p in photos]
        dataset = MaskDataset(paths, [-1] * len(paths), [build_transform(train_cfg.data.image_size, "eval")])
        logits = predict_dataset(model, dataset, cfg.batch_size, cfg.num_workers, cfg.tta)
        return Predictions(np.array(ids), logits, "logits", cfg.split)

    def write_predictions(self, preds: Predictions, cfg: object, out_dir: Path) -> list[Path]:
        """``predictions.csv``: ImageID, predicted class, and the scores when there are any."""
        classes = predicted_classes(preds)
        scores = [] if preds.kind == "classes" else preds.scores.tolist()
        header = ["ImageID", "ans"] + ([f"{preds.kind}_{k}" for k in range(NUM_CLASSES)] if scores else [])
        rows = ([i, c, *(f"{v:.6g}" for v in s)] for i, c, s in
                zip(preds.ids.tolist(), classes.tolist(), scores or [[]] * len(classes), strict=True))
        return [atomic_write(out_dir / "predictions.csv", _csv(header, rows))]

    def evaluate(self, preds: Predictions, data_root: Path, cfg: MaskEvaluate, out_dir: Path) -> dict:
        """Macro F1 (the leaderboard's), accuracy, per-head accuracies, per-class F1; ``confusion.png``.

        Eval photos are scored against ``eval/answers.csv`` (synthetic data only), validation photos
        against labels from ``cfg.labels``: the leaderboard's definition unless the recipe sets it, so
        that a training run's shifted age bins do not flatter its own score.
        """
        targets, bins = evaluation_targets(preds, MaskLayout(data_root), cfg)
        classes = predicted_classes(preds)
        scores = multiclass_scores(classes, targets, NUM_CLASSES)
        names = class_names(bins)
        save_confusion_png(scores["confusion_matrix"], names, out_dir / "confusion.png")
        heads = {f"{head}_acc": float(np.mean(p == t)) for head, p, t in
                 zip(("mask", "gender", "age"), (classes // 6, classes // 3 % 2, classes % 3),
                     (targets // 6, targets // 3 % 2, targets % 3), strict=True)}
        return {"macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"], **heads,
                "per_class_f1": dict(zip(names, scores["per_class_f1"], strict=True))}

    def submit(self, preds: Predictions, data_root: Path, cfg: MaskSubmit, out_path: Path) -> Path:
        """``info.csv`` with ``ans`` filled: header ``ImageID,ans``, rows in eval/info.csv's order."""
        if preds.split != "eval":
            raise ConfigError(f"predictions: {cfg.predictions!r} holds {preds.split!r} predictions; the "
                              "submission needs a predict stage with split: eval")
        layout = MaskLayout(data_root)
        by_id = dict(zip(preds.ids.tolist(), predicted_classes(preds).tolist(), strict=True))
        order = layout.eval_ids()
        missing = [i for i in order if i not in by_id]
        if missing:
            raise DataError(f"{layout.info_csv}: ImageID {missing[0]!r} has no prediction ({len(missing)} of "
                            f"{len(order)} missing)")
        return atomic_write(out_path, _csv(["ImageID", "ans"], ([i, by_id[i]] for i in order)))

    def report_items(self, view: RunView) -> list[ReportItem]:
        """The confusion matrix, F1 per class and misclassified photos of the best scored predictions."""
        from podium.tasks.mask.report import report_items  # the report's imports, only for a report

        return report_items(view)

    def heldout_score(self, model: torch.nn.Module, train_cfg: MaskTrain, data_root: Path) -> float:
        """Macro F1 of a bare model on the training run's validation people (to rank and grow soups)."""
        dataset = eval_dataset(split_photos(MaskLayout(data_root), train_cfg.data)[1], train_cfg.data)
        trainer = train_cfg.trainer
        logits = predict_dataset(model, dataset, trainer.eval_batch_size or trainer.batch_size, trainer.num_workers)
        return float(multiclass_scores(logits.argmax(1), dataset.labels, NUM_CLASSES)["macro_f1"])
