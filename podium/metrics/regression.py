"""The MOS leaderboard metric (Samsung AI Challenge 2023 image quality): mean of clipped PLCC and SRCC."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from podium.errors import PodiumError


def mos_score(predictions: ArrayLike, targets: ArrayLike) -> dict[str, float | bool]:
    """``score = (max(PLCC, 0) + max(SRCC, 0)) / 2``, plain Pearson and Spearman (no logistic fit).

    Constant predictions carry no ranking: both correlations are undefined (0 / 0; scipy returns NaN
    with a warning, and the rules do not say what the leaderboard did). podium scores them 0, the
    value the clipping gives any predictor that is no better than no information, and reports
    ``constant_predictions: true``. Constant targets make every score undefined: an error.
    """
    pred = np.asarray(predictions, dtype=np.float64)
    true = np.asarray(targets, dtype=np.float64)
    if pred.ndim != 1 or pred.shape != true.shape:
        raise PodiumError(f"mos_score: predictions {pred.shape} and targets {true.shape} must be the same 1-D shape")
    if len(pred) < 2:
        raise PodiumError(f"mos_score: correlations need at least 2 images, got {len(pred)}")
    for name, values in (("predictions", pred), ("targets", true)):
        if not np.isfinite(values).all():
            raise PodiumError(f"mos_score: {name}[{int(np.flatnonzero(~np.isfinite(values))[0])}] is not finite")
    if np.ptp(true) == 0:
        raise PodiumError(f"mos_score: all targets equal {true[0]}; PLCC and SRCC are undefined")
    constant = bool(np.ptp(pred) == 0)
    plcc = 0.0 if constant else float(stats.pearsonr(pred, true).statistic)
    srcc = 0.0 if constant else float(stats.spearmanr(pred, true).statistic)
    score = (max(plcc, 0.0) + max(srcc, 0.0)) / 2
    return {"score": score, "plcc": plcc, "srcc": srcc, "constant_predictions": constant}
