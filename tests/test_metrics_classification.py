"""Classification metrics on cases small enough to score by hand."""

from __future__ import annotations

import numpy as np
import pytest

from podium.errors import PodiumError
from podium.metrics.classification import (
    confusion_matrix,
    multiclass_scores,
    multilabel_scores,
    save_confusion_png,
)


def test_multilabel_scores_by_hand():
    probs = np.array([[0.9, 0.2, 0.5], [0.1, 0.7, 0.4]])
    targets = np.array([[1, 0, 1], [0, 0, 0]])
    # Predicted (> 0.5; 0.5 itself is 0): [[1, 0, 0], [0, 1, 0]].
    # Correct cells: [[yes, yes, no], [yes, no, yes]] -> 4 of 6.
    scores = multilabel_scores(probs, targets)
    assert scores["accuracy"] == pytest.approx(4 / 6, abs=1e-15)
    assert scores["exact_match"] == 0.0
    assert scores["per_label_accuracy"] == [1.0, 0.5, 0.5]
    # At threshold 0.45 the 0.5 cell turns to 1 and row 0 is all right: 5 of 6 cells, 1 of 2 rows.
    scores = multilabel_scores(probs, targets, threshold=0.45)
    assert scores["accuracy"] == pytest.approx(5 / 6, abs=1e-15)
    assert scores["exact_match"] == 0.5


def test_multilabel_scores_accepts_binary_predictions():
    scores = multilabel_scores(np.array([[1, 0], [1, 1]]), np.array([[1, 0], [0, 1]]))
    assert scores == {"accuracy": 0.75, "exact_match": 0.5, "per_label_accuracy": [0.5, 1.0]}


def test_multilabel_scores_validates():
    with pytest.raises(PodiumError, match="must be the same"):
        multilabel_scores(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(PodiumError, match="targets must be 0 or 1"):
        multilabel_scores(np.zeros((1, 2)), np.array([[0, 2]]))


def test_multiclass_scores_by_hand_sklearn_macro_semantics():
    targets = np.array([0, 0, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0])
    # F1 = 2TP / (2TP + FP + FN) per class:
    #   class 0: TP 1 (item 0), FP 1 (item 4), FN 1 (item 1) -> 2 / 4 = 0.5
    #   class 1: TP 2 (items 2, 3), FP 1 (item 1), FN 0      -> 4 / 5 = 0.8
    #   class 2: TP 0, FP 0, FN 1 (item 4)                   -> 0
    #   class 3: in neither targets nor predictions -> left out, as sklearn's f1_score(average="macro").
    # macro F1 = (0.5 + 0.8 + 0) / 3 = 0.4333...  (counting class 3 as 0 would give 1.3 / 4 = 0.325)
    scores = multiclass_scores(preds, targets, num_classes=4)
    assert scores["macro_f1"] == pytest.approx(1.3 / 3, abs=1e-15)
    assert scores["accuracy"] == pytest.approx(3 / 5, abs=1e-15)
    assert scores["per_class_f1"] == [0.5, 0.8, 0.0, None]
    assert scores["confusion_matrix"] == [
        [1, 1, 0, 0],  # true 0: predicted 0 once, 1 once
        [0, 2, 0, 0],  # true 1: predicted 1 twice
        [1, 0, 0, 0],  # true 2: predicted 0
        [0, 0, 0, 0],
    ]


def test_multiclass_predicted_but_never_true_class_counts_as_zero():
    # class 0: TP 1, FN 1 -> 2 / 3; class 1: FP 1, TP 0 -> 0 (it is in y_pred, so it is averaged).
    scores = multiclass_scores(np.array([0, 1]), np.array([0, 0]), num_classes=3)
    assert scores["macro_f1"] == pytest.approx(1 / 3, abs=1e-15)
    assert scores["per_class_f1"] == [pytest.approx(2 / 3, abs=1e-15), 0.0, None]


def test_multiclass_perfect_and_validation():
    scores = multiclass_scores(np.array([4, 2, 4]), np.array([4, 2, 4]), num_classes=18)
    assert scores["macro_f1"] == 1.0 and scores["accuracy"] == 1.0
    with pytest.raises(PodiumError, match=r"targets\[1\] = 18 is outside 0..17"):
        multiclass_scores(np.array([0, 0]), np.array([0, 18]), num_classes=18)
    with pytest.raises(PodiumError, match="2 predictions for 3 targets"):
        multiclass_scores(np.array([0, 0]), np.array([0, 0, 0]), num_classes=2)
    with pytest.raises(PodiumError, match="no items"):
        multiclass_scores(np.array([], dtype=int), np.array([], dtype=int), num_classes=2)


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(np.array([2, 2, 0]), np.array([0, 1, 0]), num_classes=3)
    assert matrix.tolist() == [[1, 0, 1], [0, 0, 1], [0, 0, 0]]


def test_save_confusion_png_writes_a_png_atomically(tmp_path):
    path = tmp_path / "plots" / "confusion.png"
    out = save_confusion_png(np.array([[3, 1], [0, 2]]), ["wear", "not wear"], path)
    assert out == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]
    with pytest.raises(PodiumError, match="does not match 3 class names"):
        save_confusion_png(np.zeros((2, 2)), ["a", "b", "c"], tmp_path / "bad.png")
