"""podium's own prediction file: per-item arrays that any ensemble or evaluate stage can read.

Every predict and ensemble stage writes ``predictions.npz`` (ids, scores, what the scores are) next to
the competition's own format, so that ensembling never parses a task's CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from podium.errors import DataError
from podium.store import atomic_path

# values: one regression output per item (MOS); captions: one text per item (no ensemble averages them)
SCORE_KINDS = ("probs", "logits", "classes", "values", "captions")


@dataclass
class Predictions:
    ids: np.ndarray
    scores: np.ndarray
    kind: str
    split: str

    def __post_init__(self) -> None:
        if self.kind not in SCORE_KINDS:
            raise ValueError(f"kind must be one of {SCORE_KINDS}, got {self.kind!r}")
        if len(self.ids) != len(self.scores):
            raise ValueError(f"{len(self.ids)} ids but {len(self.scores)} score rows")


def save_predictions(path: Path, preds: Predictions) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, ids=preds.ids, scores=preds.scores, kind=np.array(preds.kind), split=np.array(preds.split))
    return path


def load_predictions(path: Path) -> Predictions:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Predictions(z["ids"], z["scores"], str(z["kind"]), str(z["split"]))
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: not a podium predictions file ({e})") from None
