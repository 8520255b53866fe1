"""A metrics CSV that survives resumes: one row per epoch, exactly once.

Lightning's CSVLogger deletes an existing metrics.csv when a run resumes. Here the table is rewritten
atomically after each epoch, and a resume first drops the rows of epochs past the checkpoint it
resumes from (they will be recomputed, identically).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

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
