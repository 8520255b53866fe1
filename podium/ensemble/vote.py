"""Ensembles of per-item predictions: weighted mean, soft vote, hard vote, split vote.

Every rule works on arrays with one row per item (numpy arrays or anything ``np.asarray`` takes,
torch CPU tensors included), computes in float64 in a fixed order, and returns numpy arrays, so the
same inputs always give the same bits.

Hard-vote tie rule (used everywhere in this module): among the classes with the most votes, the
winner is the one voted by the earliest model in the list. List models best first and a tie goes
to the best model's opinion, instead of systematically to class 0 (which for the mask task would
mean "wearing a mask, male, young").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from podium.errors import PodiumError

MASK_CLASSES = 18


def _stack(arrays: Sequence[ArrayLike], what: str, ndim: int | None = None) -> np.ndarray:
    if len(arrays) == 0:
        raise PodiumError(f"{what}: no inputs given")
    stacked = [np.asarray(a) for a in arrays]
    shape = stacked[0].shape
    for i, a in enumerate(stacked):
        if a.shape != shape:
            raise PodiumError(f"{what}: input {i} has shape {a.shape}, input 0 has {shape}")
        if ndim is not None and a.ndim != ndim:
            raise PodiumError(f"{what}: input {i} has {a.ndim} dimensions, expected {ndim}")
    return np.stack(stacked)


def _weights(weights: Sequence[float] | None, count: int, what: str) -> np.ndarray:
    if weights is None:
        return np.full(count, 1.0 / count)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (count,):
        raise PodiumError(f"{what}: {w.size} weights for {count} inputs")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise PodiumError(f"{what}: weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    return w / w.sum()


def weighted_mean(arrays: Sequence[ArrayLike], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of same-shaped prediction arrays (weights normalised to sum to 1).

    The dirty-MNIST ensemble: probabilities of five models with weights 1.5, 1, 1, 1, 1.
    """
    stacked = _stack(arrays, "weighted_mean").astype(np.float64)
    w = _weights(weights, len(stacked), "weighted_mean")
    out = np.zeros(stacked.shape[1:], dtype=np.float64)
    for wi, a in zip(w, stacked, strict=True):
        out += wi * a
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _minmax(logits: np.ndarray) -> np.ndarray:
    """Per-row min-max scaling to [0, 1]; a constant row becomes all zeros (it expresses no preference)."""
    low = logits.min(axis=-1, keepdims=True)
    span = logits.max(axis=-1, keepdims=True) - low
    return np.divide(logits - low, span, out=np.zeros_like(logits), where=span > 0)


def soft_vote(logits_list: Sequence[ArrayLike], method: str = "softmax") -> np.ndarray:
    """Class scores ``(items, classes)`` from several models' logits; argmax them for the class.

    ``softmax``: mean of the models' softmax probabilities. ``minmax`` (the mask seed's soft vote):
    each model's logits min-max scaled per item to [0, 1], then summed over models.
    """
    stacked = _stack(logits_list, "soft_vote", ndim=2).astype(np.float64)
    if method == "softmax":
        return _softmax(stacked).mean(axis=0)
    if method == "minmax":
        return _minmax(stacked).sum(axis=0)
    raise PodiumError(f"soft_vote: unknown method {method!r}, expected 'softmax' or 'minmax'")


def _check_classes(classes: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    if not np.issubdtype(classes.dtype, np.integer):
        raise PodiumError(f"{what}: predicted classes must be integers, got dtype {classes.dtype}")
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        model, item = (int(i[0]) for i in np.nonzero(bad))
        raise PodiumError(
            f"{what}: input {model} item {item} has class {int(classes[model, item])},"
            f" outside 0..{num_classes - 1}"
        )
    return classes.astype(np.int64)


def _mode(votes: np.ndarray, num_classes: int) -> np.ndarray:
    """Row-wise mode of ``votes`` (models, items); ties go to the earliest model's class."""
    models, items = votes.shape
    counts = np.zeros((items, num_classes), dtype=np.int64)
    rows = np.arange(items)
    for model_votes in votes:
        counts[rows, model_votes] += 1
    top = counts.max(axis=1)
    is_top = counts[rows, votes] == top
    first_model = is_top.argmax(axis=0)
    return votes[first_model, rows]


def hard_vote(class_lists: Sequence[ArrayLike], num_classes: int) -> np.ndarray:
    """Row-wise mode of several models' predicted classes; ties go to the earliest model's class."""
    votes = _check_classes(_stack(class_lists, "hard_vote", ndim=1), num_classes, "hard_vote")
    return _mode(votes, num_classes)


def split_vote(class_lists: Sequence[ArrayLike]) -> np.ndarray:
    """Hard vote of 18-class mask predictions, mask / gender / age voted separately and recombined.

    class = mask * 6 + gender * 3 + age; each head uses the module's tie rule on its own, so the
    result can be a class no single model predicted.
    """
    votes = _check_classes(_stack(class_lists, "split_vote", ndim=1), MASK_CLASSES, "split_vote")
    mask = _mode(votes // 6, 3)
    gender = _mode((votes // 3) % 2, 2)
    age = _mode(votes % 3, 3)
    return mask * 6 + gender * 3 + age


def age_weighted(logits18: ArrayLike, age_logits3: ArrayLike) -> np.ndarray:
    """The mask seed's weighted ensemble: class c's logit times ``1 + age[c % 3] / sum(age)``.

    ``age_logits3`` comes from a separate age model. This reproduces the seed as written: raw logits
    can sum to about 0 and flip or blow up the weights, so a zero sum is refused rather than
    turned into inf.
    """
    logits = np.asarray(logits18, dtype=np.float64)
    age = np.asarray(age_logits3, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != MASK_CLASSES:
        raise PodiumError(f"age_weighted: logits18 must be (items, 18), got {logits.shape}")
    if age.shape != (logits.shape[0], 3):
        raise PodiumError(f"age_weighted: age_logits3 must be ({logits.shape[0]}, 3), got {age.shape}")
    total = age.sum(axis=1, keepdims=True)
    if np.any(total == 0):
        item = int(np.nonzero(total[:, 0] == 0)[0][0])
        raise PodiumError(f"age_weighted: item {item} has age logits summing to 0; the weight is undefined")
    factors = 1.0 + age / total
    return logits * factors[:, np.arange(MASK_CLASSES) % 3]
