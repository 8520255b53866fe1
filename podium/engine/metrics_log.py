"""A metrics CSV that survives resumes: one row per epoch, exactly once; and two runs' tables compared.

Lightning's CSVLogger deletes an existing metrics.csv when a run resumes. Here the table is rewritten
atomically after each epoch, and a resume first drops the rows of epochs past the checkpoint it
resumes from (they will be recomputed, identically).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.errors import DataError
from podium.store import atomic_write


class MetricsTable:
    """``writer=False``: a rank other than 0 keeps the rows in memory only."""

    def __init__(self, path: Path, writer: bool = True):
        self.path = path
        self.writer = writer
        self.rows: list[dict[str, Any]] = self._read() if path.is_file() else []

    def _read(self) -> list[dict[str, Any]]:
        with open(self.path, newline="") as f:
            return [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]

    def truncate(self, after_epoch: int) -> None:
        """Keep rows of epochs <= ``after_epoch`` (the epoch the resumed checkpoint completed)."""
        self.rows = [r for r in self.rows if int(r["epoch"]) <= after_epoch]
        self.save()

    def append(self, row: dict[str, Any]) -> None:
        self.rows = [r for r in self.rows if int(r["epoch"]) != int(row["epoch"])] + [row]
        self.save()

    def save(self) -> None:
        if not self.writer:
            return
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path, buf.getvalue())


def _number(text: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def read_epochs(path: Path) -> dict[int, dict[str, float]]:
    """epoch -> {metric: value} of a metrics CSV; a malformed file is a ``DataError`` naming its line."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "epoch" not in reader.fieldnames:
            raise DataError(f"{path}: expected a column 'epoch'; found {reader.fieldnames}")
        out = {}
        for line, row in enumerate(reader, start=2):
            try:
                out[int(float(row["epoch"]))] = {k: float(v) for k, v in row.items() if k != "epoch" and v}
            except ValueError as e:
                raise DataError(f"{path}:{line}: not a number ({e})") from None
        return out


@dataclass
class Comparison:
    metrics: list[str]
    first_difference: dict[str, int | None]
    max_abs_difference: dict[str, float]
    epochs: int
    rows: list[tuple[int, dict[str, float], dict[str, float]]]


def compare_epochs(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> Comparison:
    """Two runs' per-epoch metrics: the first epoch where each metric differs and the max |difference|."""
    epochs = sorted(set(a) & set(b))
    metrics = [m for m in dict.fromkeys(k for e in epochs for k in a[e]) if all(m in b[e] for e in epochs)]
    first: dict[str, int | None] = dict.fromkeys(metrics)
    worst = dict.fromkeys(metrics, 0.0)
    for e in epochs:
        for m in metrics:
            if m not in a[e]:
                continue
            diff = abs(a[e][m] - b[e][m])
            worst[m] = max(worst[m], diff)
            if diff != 0 and first[m] is None:
                first[m] = e
    return Comparison(metrics, first, worst, len(epochs), [(e, a[e], b[e]) for e in epochs])
