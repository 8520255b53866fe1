"""The HTML run report: stage table, leaderboard tables and training curves, one file per recipe."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from podium.store import atomic_path, atomic_write  # noqa: E402


def _curves(name: str, csv_paths: list[Path], out: Path) -> Path | None:
    """One panel per metric, one line per sweep member."""
    tables = []
    for p in csv_paths:
        with open(p, newline="") as f:
            tables.append(list(csv.DictReader(f)))
    metrics = [m for m in dict.fromkeys(k for t in tables for r in t for k in r) if m not in ("epoch", "step")]
    if not metrics or not any(tables):
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 2.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, rows in enumerate(tables):
            pts = [(int(r["epoch"]), float(r[metric])) for r in rows if r.get(metric)]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=f"member {i}" if len(tables) > 1 else None)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if len(tables) > 1:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(name, fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(recipe, root: Path, rows, runs: dict) -> Path:
    """``root/report.html`` for ``recipe``: ``rows`` are the stage status rows, ``runs`` each stage's
    ``StageRun``s (the caller has both; the report imports neither the API nor the runner)."""
    from podium.stages.evaluate import scalar_columns

    parts = [f"<h1>{html.escape(recipe.name)}</h1>",
             f"<p>profile: {html.escape(str(recipe.profile))} &middot; seed {recipe.seed}</p><h2>Stages</h2>"]
    parts.append(_table(["stage", "kind", "state", "hash", "key metric", "path"],
                        [[r.stage, r.kind, r.state, r.hash, r.metric, r.path] for r in rows]))
    for name in recipe.order:
        node = recipe.stages[name]
        if node.kind == "evaluate" and runs[name][0].status == "done":
            scores = json.loads(runs[name][0].output("metrics.json").read_text())
            cols = scalar_columns(scores)
            parts.append(f"<h2>Leaderboard: {html.escape(name)}</h2>")
            parts.append(_table(["predictions", *cols], [[p, *(f"{m[c]:.4f}" if isinstance(m.get(c), float)
                                                               else m.get(c, "") for c in cols)]
                                                          for p, m in scores.items()]))
        if node.kind == "train":
            csvs = [r.path / "logs" / "metrics.csv" for r in runs[name] if (r.path / "logs" / "metrics.csv").is_file()]
            png = _curves(name, csvs, root / "report" / f"{name}.png") if csvs else None
            if png:
                parts.append(f"<h2>Training: {html.escape(name)}</h2><img src='report/{png.name}'>")
    style = ("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}</style>")
    return atomic_write(root / "report.html", f"<html><head><meta charset='utf-8'>{style}</head><body>"
                                              + "".join(parts) + "</body></html>")
