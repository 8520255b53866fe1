"""Classification leaderboard metrics: dirty-MNIST multilabel accuracy and mask macro F1.

Scores come back as plain Python numbers and lists so they go straight into ``metrics.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from podium.errors import PodiumError
from podium.store import atomic_path


def multilabel_scores(
    probs_or_binary: ArrayLike, targets: ArrayLike, threshold: float = 0.5
) -> dict[str, Any]:
    """Multilabel scores of ``(items, labels)`` predictions against 0/1 targets.

    A label is predicted when its value is strictly greater than ``threshold`` (the dirty-MNIST seed
    writes ``probs > 0.5``); 0/1 inputs pass through unchanged. ``accuracy`` is the leaderboard
    metric: the fraction of all item-label cells that are right. ``exact_match`` counts items with
    every label right.
    """
    preds = np.asarray(probs_or_binary)
    truth = np.asarray(targets)
    if preds.ndim != 2 or preds.shape != truth.shape:
        raise PodiumError(
            f"multilabel_scores: predictions {preds.shape} and targets {truth.shape}"
            " must be the same (items, labels)"
        )
    if preds.size == 0:
        raise PodiumError("multilabel_scores: no items to score")
    if not np.isin(truth, (0, 1)).all():
        raise PodiumError("multilabel_scores: targets must be 0 or 1")
    if np.isnan(preds.astype(np.float64)).any():
        raise PodiumError("multilabel_scores: predictions contain NaN")
    correct = (preds > threshold) == truth.astype(bool)
    return {
        "accuracy": float(correct.mean()),
        "exact_match": float(correct.all(axis=1).mean()),
        "per_label_accuracy": correct.mean(axis=0).tolist(),
    }


def _class_array(values: ArrayLike, num_classes: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise PodiumError(
            f"multiclass_scores: {what} must be a 1-D integer array, got {array.dtype} {array.shape}"
        )
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        item = int(np.nonzero(bad)[0][0])
        raise PodiumError(
            f"multiclass_scores: {what}[{item}] = {int(array[item])} is outside 0..{num_classes - 1}"
        )
    return array.astype(np.int64)


def confusion_matrix(pred_classes: ArrayLike, targets: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: rows are true classes, columns predicted classes."""
    pred = _class_array(pred_classes, num_classes, "pred_classes")
    true = _class_array(targets, num_classes, "targets")
    if pred.shape != true.shape:
        raise PodiumError(f"multiclass_scores: {pred.size} predictions for {true.size} targets")
    flat = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def multiclass_scores(pred_classes: ArrayLike, targets: ArrayLike, num_classes: int) -> dict[str, Any]:
    """Macro F1 (the mask leaderboard metric), accuracy, per-class F1 and the confusion matrix.

    Macro F1 follows scikit-learn's ``f1_score(average="macro")`` without ``labels=``: it averages
    over the classes present in the targets or the predictions only. A class in that set with no
    true positive has F1 0; a class in neither is left out of the mean and reported as ``None`` in
    ``per_class_f1`` (passing ``labels=range(num_classes)`` to scikit-learn would count it as 0).
    """
    matrix = confusion_matrix(pred_classes, targets, num_classes)
    total = int(matrix.sum())
    if total == 0:
        raise PodiumError("multiclass_scores: no items to score")
    tp = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    denominator = support + predicted
    present = denominator > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros(num_classes), where=present)
    return {
        "macro_f1": float(f1[present].mean()),
        "accuracy": float(tp.sum() / total),
        "per_class_f1": [float(v) if p else None for v, p in zip(f1, present, strict=True)],
        "confusion_matrix": matrix.tolist(),
    }


def save_confusion_png(matrix: ArrayLike, class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Plot a confusion matrix (rows true, columns predicted) with counts in the cells, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix)
    n = len(class_names)
    if counts.shape != (n, n):
        raise PodiumError(f"save_confusion_png: matrix {counts.shape} does not match {n} class names")
    size = max(4.0, 0.45 * n + 2.0)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(n), labels=list(class_names), rotation=90)
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(n):
        for j in range(n):
            colour = "white" if counts[i, j] > threshold else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return Path(path)
