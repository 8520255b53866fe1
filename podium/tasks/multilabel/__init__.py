"""Dirty MNIST (Dacon, 26-label multilabel): synthesis, data, model, predict, evaluate, submit.

The Kwangwoon / Dacon 1st-place pipeline: 350k synthesized noisy multi-letter images, timm
EfficientNetV2 with one input channel, 4-rotation TTA, a weighted ensemble, element-wise accuracy.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from podium.engine.seeding import derive_seed, split_keys
from podium.ensemble.predictions import Predictions
from podium.ensemble.tta import predict_dataset
from podium.errors import DataError
from podium.metrics.classification import multilabel_scores
from podium.recipe import Strict
from podium.registry import Task, register_task
from podium.stages.ensemble import EnsembleConfig
from podium.stages.evaluate import EvaluateConfig
from podium.stages.predict import PredictConfig
from podium.stages.submit import SubmitConfig
from podium.stages.synth import SynthConfig
from podium.stages.train import TrainConfig
from podium.store import atomic_write
from podium.tasks.multilabel.data import (
    LETTERS,
    DaconLayout,
    DirtyMnistDataset,
    GlyphDataset,
    build_transforms,
)
from podium.tasks.multilabel.model import ModelConfig
from podium.tasks.multilabel.module import MultilabelModule, OptimConfig
from podium.tasks.multilabel.synth import glyph_banks, synthesize_dacon

if TYPE_CHECKING:
    from podium.report.items import ReportItem, RunView


class MultilabelSynth(SynthConfig):
    num_images: int = Field(350_000, ge=1)
    num_val: int = Field(5_000, ge=0)
    num_test: int = Field(5_000, ge=0)
    canvas_size: int = Field(256, ge=32)
    glyphs_per_letter: int = Field(80, ge=2)
    workers: int | None = Field(None, ge=1)

    unhashed = ("workers",)


class GlyphConfig(Strict):
    """Glyph pretraining images: ``letters`` letters drawn on the fly on a ``canvas_size`` noise canvas."""

    canvas_size: int = Field(64, ge=32)
    letters: tuple[int, int] = (1, 1)
    num_train: int = Field(8_000, ge=1)
    num_val: int = Field(1_000, ge=1)
    held_out_fraction: float = Field(0.15, gt=0, lt=1)

    @field_validator("letters")
    @classmethod
    def _letters(cls, letters: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= letters[0] <= letters[1] <= len(LETTERS):
            raise ValueError(f"expected two counts low, high with 1 <= low <= high <= 26, got {list(letters)}")
        return letters


class DataConfig(Strict):
    image_size: int = Field(384, ge=16)
    augment: bool = True
    val_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0
    # images: the competition's dirty images. glyphs: pretraining on images drawn from mnist_data's
    # glyphs (train.csv and test.csv less the held-out rows that validation and test images use).
    source: Literal["images", "glyphs"] = "images"
    glyphs: GlyphConfig = GlyphConfig()


class MultilabelTrain(TrainConfig):
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()


class Thresholded(Strict):
    output: Literal["probs", "labels"] = "probs"
    threshold: float = Field(0.5, gt=0, lt=1)


class MultilabelPredict(PredictConfig, Thresholded):
    split: Literal["val", "test"] = "test"
    tta: Literal["none", "rot90"] = "none"


class MultilabelEnsemble(EnsembleConfig, Thresholded):
    pass


class MultilabelEvaluate(EvaluateConfig):
    threshold: float = Field(0.5, gt=0, lt=1)


class MultilabelSubmit(SubmitConfig):
    threshold: float = Field(0.5, gt=0, lt=1)


def _split_items(layout: DaconLayout, split: str, data: DataConfig):
    """(paths, labels) of a split. Without a val folder (the real download has none), val is carved
    from train by a seeded split of the sorted indices, the same for every member of a sweep."""
    if split in ("train", "val") and not layout.has_split("val"):
        paths, labels = layout.items("train")
        keys = [f"{i:08d}" for i in sorted(paths)]
        train_keys, val_keys = split_keys(keys, data.val_fraction, data.split_seed)
        chosen = [int(k) for k in (train_keys if split == "train" else val_keys)]
        return {i: paths[i] for i in chosen}, {i: labels[i] for i in chosen}
    return layout.items(split)


def _csv(ids: np.ndarray, values: np.ndarray, fmt: str) -> str:
    frame = pd.DataFrame(values, columns=list(LETTERS))
    frame.insert(0, "index", ids)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format=fmt)
    return buf.getvalue()


@register_task
class MultilabelTask(Task):
    name = "multilabel"
    version = "1"
    configs = {"synth": MultilabelSynth, "train": MultilabelTrain, "predict": MultilabelPredict,
               "ensemble": MultilabelEnsemble, "evaluate": MultilabelEvaluate, "submit": MultilabelSubmit}
    monitor = "val_acc"
    monitor_mode = "max"

    def synth(self, cfg: MultilabelSynth, out_dir: Path, seed: int) -> None:
        synthesize_dacon(out_dir, cfg.num_images, cfg.num_val, cfg.num_test, seed, canvas_size=cfg.canvas_size,
                         glyphs_per_letter=cfg.glyphs_per_letter, workers=cfg.workers)

    def check_data(self, root: Path) -> list[Path]:
        return DaconLayout(root).data_files()

    def datasets(self, cfg: MultilabelTrain, data_root: Path, seed: int):
        layout = DaconLayout(data_root)
        size = cfg.data.image_size
        if cfg.data.source == "glyphs":
            g = cfg.data.glyphs
            train_bank, held_bank = glyph_banks(layout.root / "mnist_data", g.held_out_fraction)
            return (GlyphDataset(train_bank, g.num_train, g.canvas_size, g.letters,
                                 build_transforms(size, train=cfg.data.augment), seed),
                    GlyphDataset(held_bank, g.num_val, g.canvas_size, g.letters,
                                 build_transforms(size, train=False), derive_seed(seed, "glyph-val")))
        out = []
        for split, train in (("train", True), ("val", False)):
            paths, labels = _split_items(layout, split, cfg.data)
            ids = sorted(paths)
            out.append(DirtyMnistDataset([paths[i] for i in ids], np.stack([labels[i] for i in ids]),
                                         build_transforms(size, train=train and cfg.data.augment)))
        return tuple(out)

    def module(self, cfg: MultilabelTrain) -> MultilabelModule:
        return MultilabelModule(cfg)

    def predict(self, model, train_cfg: MultilabelTrain, cfg: MultilabelPredict, data_root: Path, out_dir: Path):
        layout = DaconLayout(data_root)
        paths = _split_items(layout, "val", train_cfg.data)[0] if cfg.split == "val" else layout.images("test")
        ids = sorted(paths)
        ds = DirtyMnistDataset([paths[i] for i in ids], None, build_transforms(train_cfg.data.image_size, train=False))
        probs = predict_dataset(model, ds, cfg.batch_size, cfg.num_workers, cfg.tta, "sigmoid", f"predict {cfg.split}")
        return Predictions(np.array(ids), probs, "probs", cfg.split)

    def write_predictions(self, preds: Predictions, cfg, out_dir: Path) -> list[Path]:
        if cfg.output == "labels":
            text = _csv(preds.ids, (preds.scores > cfg.threshold).astype(np.int64), "%d")
        else:
            text = _csv(preds.ids, preds.scores, "%.6f")
        return [atomic_write(out_dir / "predictions.csv", text)]

    def evaluate(self, preds: Predictions, data_root: Path, cfg: MultilabelEvaluate, out_dir: Path) -> dict:
        layout = DaconLayout(data_root)
        labels = layout.answers(preds.split if layout.has_split(preds.split) else "train")
        missing = [i for i in preds.ids.tolist() if i not in labels]
        if missing:
            raise DataError(f"{data_root}: no {preds.split} labels for index {missing[0]} "
                            f"({len(missing)} of {len(preds.ids)} predictions unlabelled)")
        targets = np.stack([labels[i] for i in preds.ids.tolist()])
        scores = multilabel_scores(preds.scores, targets, threshold=cfg.threshold)
        per_letter = dict(zip(LETTERS, np.asarray(scores["per_label_accuracy"]).tolist(), strict=True))
        return {"accuracy": float(scores["accuracy"]), "exact_match": float(scores["exact_match"]),
                "all_zeros_baseline": float((targets == 0).mean()), "per_letter": per_letter}

    def submit(self, preds: Predictions, data_root: Path, cfg: MultilabelSubmit, out_path: Path) -> Path:
        sample = DaconLayout(data_root).sample_submission()
        by_id = dict(zip(preds.ids.tolist(), range(len(preds.ids)), strict=True))
        missing = [i for i in sample if i not in by_id]
        if missing:
            raise DataError(f"sample_submission.csv lists index {missing[0]} with no prediction "
                            f"({len(missing)} missing; predictions are for split {preds.split!r})")
        rows = preds.scores[[by_id[i] for i in sample]]
        return atomic_write(out_path, _csv(np.array(sample), (rows > cfg.threshold).astype(np.int64), "%d"))

    def report_items(self, view: RunView) -> list[ReportItem]:
        """Leaderboard images with true and predicted letters; accuracy per letter against all zeros."""
        from podium.tasks.multilabel.report import report_items  # the report's imports, only for a report

        return report_items(view)

