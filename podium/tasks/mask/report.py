"""The mask task in the run report: the confusion matrix, F1 per class and misclassified photos of the
best predictions each evaluate stage scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from podium.ensemble.predictions import load_predictions
from podium.metrics.classification import confusion_matrix
from podium.report.items import Bars, Heatmap, ImageGrid, ReportItem, RunView, Span, Tile, best_scored
from podium.tasks.mask import evaluation_targets, predicted_classes
from podium.tasks.mask.data import NUM_CLASSES, MaskLayout, class_names

SHOWN = 18  # misclassified photos in the grid: the first ones in prediction order


def _photo(layout: MaskLayout, split: str, image_id: str) -> np.ndarray:
    """Eval ids are file names in eval/images; validation ids are ``<person folder>/<file>``."""
    path = (layout.eval_images if split == "eval" else layout.train_images) / image_id
    with Image.open(Path(path)) as image:
        return np.array(image.convert("RGB"))


def report_items(view: RunView) -> list[ReportItem]:
    if view.data_root is None:
        return []
    layout = MaskLayout(view.data_root)
    items: list[ReportItem] = []
    for scored in best_scored(view, "mask"):
        preds = load_predictions(scored.run.output("predictions.npz"))
        targets, bins = evaluation_targets(preds, layout, view.recipe.stages[scored.evaluate].config)
        classes = predicted_classes(preds)
        names = class_names(bins)
        group = f"{scored.prediction}: the best predictions {scored.evaluate} scored"
        items.append(Heatmap(title=f"confusion matrix ({len(targets)} {preds.split} photos)", group=group,
                             matrix=confusion_matrix(classes, targets, NUM_CLASSES), x_labels=names, y_labels=names,
                             x_title="predicted", y_title="true"))
        f1 = scored.metrics["per_class_f1"]
        items.append(Bars(title="F1 per class", group=group, labels=list(f1), series={"F1": list(f1.values())},
                          axis="F1", lines={"macro F1": scored.metrics["macro_f1"]},
                          note="A class neither in the labels nor in the predictions has no F1 (no bar)."))
        wrong = np.flatnonzero(classes != targets)
        tiles = [Tile(_photo(layout, preds.split, preds.ids[k]),
                      (Span(f"{preds.ids[k]} "), Span(f"true {names[targets[k]]}", "good"),
                       Span(f" predicted {names[classes[k]]}", "bad")), flagged=True) for k in wrong[:SHOWN]]
        items.append(ImageGrid(title=f"{len(tiles)} of {len(wrong)} misclassified {preds.split} photos", group=group,
                               tiles=tiles, tile_px=128))
    return items
